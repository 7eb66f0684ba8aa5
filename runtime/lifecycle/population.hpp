// The seeds of one seed layer and the population commands applied to them (docs/lifecycle.md,
// "Populations"). A population is a copyable value: an all-or-none batch can be applied to a copy
// and committed by assignment.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "lifecycle/seed.hpp"

namespace esper::lifecycle {

// Which seeds a command names: all of them, or the union of ids and inclusive ranges.
class Selection {
 public:
  [[nodiscard]] static Selection all();
  [[nodiscard]] static Selection ids(std::vector<std::uint32_t> ids);
  [[nodiscard]] static Selection range(std::uint32_t first, std::uint32_t last);  // inclusive; empty if first > last
  Selection& add_id(std::uint32_t id);
  Selection& add_range(std::uint32_t first, std::uint32_t last);

  [[nodiscard]] bool selects_all() const noexcept { return all_; }
  [[nodiscard]] bool contains(std::uint32_t id) const noexcept;

  // The seeds named, for a population of `size`: sorted, each once. Explicit ids >= size are kept
  // (a command reports them as no_such_seed); ranges are clipped to the population.
  [[nodiscard]] std::vector<std::uint32_t> resolve(std::uint32_t size) const;

 private:
  bool all_ = false;
  std::vector<std::uint32_t> ids_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges_;
};

// What one population command did to one seed. For a rejection, `to` is the requested target
// and the seed is still in `from`.
struct SeedOutcome {
  std::uint32_t seed = 0;
  State from = State::DORMANT;
  State to = State::DORMANT;
  std::optional<Rejection> rejection;

  [[nodiscard]] bool applied() const noexcept { return !rejection.has_value(); }
  friend bool operator==(const SeedOutcome&, const SeedOutcome&) = default;
};

struct TransitionReport {
  std::vector<SeedOutcome> outcomes;  // one per selected seed, by ascending seed id

  [[nodiscard]] std::size_t applied_count() const noexcept;
  [[nodiscard]] std::size_t rejected_count() const noexcept { return outcomes.size() - applied_count(); }
  [[nodiscard]] bool all_applied() const noexcept { return applied_count() == outcomes.size(); }
};

class Population {
 public:
  // `size` seeds, all DORMANT, at training step `start_step`. Throws Error on an invalid config.
  explicit Population(std::uint32_t size, LifecycleConfig config = {}, std::uint64_t start_step = 0);

  [[nodiscard]] std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(seeds_.size()); }
  [[nodiscard]] std::uint64_t step() const noexcept { return step_; }  // recorded in transition history
  [[nodiscard]] const LifecycleConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::span<const Seed> seeds() const noexcept { return seeds_; }
  [[nodiscard]] const Seed& seed(std::uint32_t id) const;  // throws Error when id >= size()
  [[nodiscard]] Seed& seed(std::uint32_t id);

  // Moves every selected seed for which `target` is valid now, and reports every selected seed.
  // `metrics` is indexed by seed id: empty (nothing measured: guarded transitions are rejected)
  // or exactly size() entries (else Error). Each seed's outcome is independent of the others.
  TransitionReport transition(const Selection& selection, State target, std::string_view reason, bool force,
                              std::span<const SeedMetrics> metrics = {});

  // The same report without applying anything.
  [[nodiscard]] TransitionReport check(const Selection& selection, State target, bool force,
                                       std::span<const SeedMetrics> metrics = {}) const;

  // The end of one training step: every seed ticks (GRAFTING seeds advance their ramp with their
  // metrics), then step() + 1. `metrics`: empty or size() entries, as for transition.
  void tick(std::span<const SeedMetrics> metrics = {});

  [[nodiscard]] std::array<std::uint32_t, kStateCount> count_by_state() const noexcept;

  // A 64-bit FNV-1a hash of step(), and each seed's state, steps in state and α bits, in seed
  // order. Equal on replicas that applied the same commands at the same steps.
  [[nodiscard]] std::uint64_t digest() const noexcept;

 private:
  void check_id(std::uint32_t id) const;
  const SeedMetrics* metrics_for(std::span<const SeedMetrics> metrics, std::uint32_t id) const;

  LifecycleConfig config_;
  std::uint64_t step_;
  std::vector<Seed> seeds_;
};

}  // namespace esper::lifecycle
