// The state a late joiner catches up on (Clone pattern, DESIGN.md §3): every seed's lifecycle
// state as told by StateTransition events, with the broker sequence of the last event applied.
// The broker keeps one and answers snapshot requests from it; a Subscriber keeps one from a
// snapshot plus the events after it. Two JobStates that applied the same events are equal.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "fbs/envelope_generated.h"

namespace esper::fabric {

class JobState {
 public:
  struct Seed {
    std::int32_t rank = -1;
    wire::SeedState state = wire::SeedState::DORMANT;
    wire::SeedState parent = wire::SeedState::DORMANT;
    bool operator==(const Seed&) const = default;
  };
  using Key = std::pair<std::uint32_t, std::uint32_t>;  // (layer, seed)

  // Applies an event that carries broker sequence `sequence` (> sequence()).
  void apply(const wire::Event& event, std::int32_t source_rank, std::uint64_t sequence);
  // Replaces everything with a snapshot; sequence() becomes its snapshot_sequence.
  void load(const wire::StateSnapshot& snapshot);
  [[nodiscard]] wire::StateSnapshotT snapshot() const;

  [[nodiscard]] std::uint64_t sequence() const noexcept { return sequence_; }
  [[nodiscard]] const std::map<Key, Seed>& seeds() const noexcept { return seeds_; }
  bool operator==(const JobState&) const = default;

 private:
  std::map<Key, Seed> seeds_;
  std::uint64_t sequence_ = 0;
};

}  // namespace esper::fabric
