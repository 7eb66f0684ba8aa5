// The state a late joiner catches up on (Clone pattern, docs/design.md §3): every seed's lifecycle
// state as told by StateTransition events, with the broker sequence of the last event applied.
// The broker keeps one and answers snapshot requests from it; a Subscriber keeps one from a
// snapshot plus the events after it. Two JobStates that applied the same events are equal.
// Values are checked before they are kept (wire/validate.hpp): an event with a value out of range
// still takes its sequence number but changes no seed, and a snapshot's out-of-range entries are
// skipped; both say what was wrong, for the caller to count.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "fbs/envelope_generated.h"
#include "wire/validate.hpp"

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

  // Applies an event that carries broker sequence `sequence` (> sequence()). An event with a value
  // out of `bounds` (or a source rank that is not a rank id) only advances sequence(); the problem
  // is returned.
  wire::Problem apply(const wire::Event& event, std::int32_t source_rank, std::uint64_t sequence,
                      const wire::Bounds& bounds = {});
  // Takes broker sequence `sequence` (> sequence()) without applying its event: one the receiver
  // rejected, so that the next event is not taken for one after a gap.
  void skip(std::uint64_t sequence) noexcept { sequence_ = sequence; }
  // A restarted broker (a new epoch) counts its sequence from 1 again: the seeds are kept, the
  // sequence starts over.
  void new_epoch() noexcept { sequence_ = 0; }
  // What load() skipped: layers and seeds out of `bounds` (the first problem, and how many).
  struct Skipped {
    std::size_t entries = 0;
    wire::Problem first;
  };
  // Replaces everything with a snapshot; sequence() becomes its snapshot_sequence. Entries out of
  // `bounds` (a layer, a seed, a state or a rank) are skipped and reported.
  Skipped load(const wire::StateSnapshot& snapshot, const wire::Bounds& bounds = {});
  [[nodiscard]] wire::StateSnapshotT snapshot() const;

  [[nodiscard]] std::uint64_t sequence() const noexcept { return sequence_; }
  [[nodiscard]] const std::map<Key, Seed>& seeds() const noexcept { return seeds_; }
  bool operator==(const JobState&) const = default;

 private:
  std::map<Key, Seed> seeds_;
  std::uint64_t sequence_ = 0;
};

}  // namespace esper::fabric
