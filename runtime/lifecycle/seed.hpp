// One seed's lifecycle: its record (state, steps in state, error count, parent state, a bounded
// history of transitions, grafting progress) and the rules a transition must pass
// (docs/lifecycle.md). A transition either applies entirely or is rejected with the rule that
// failed and changes nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "lifecycle/grafting.hpp"
#include "lifecycle/states.hpp"

namespace esper::lifecycle {

// Steps a seed must spend in a state before it may leave it (indexed by state). Leaving to
// ROLLED_BACK is exempt; `force` overrides the minimum.
struct MinimumSteps {
  std::array<std::uint32_t, kStateCount> steps{0, 0, 100, 50, 20, 30, 50, 0, 0, 0, 0};

  // 0 for a state out of range (and set() ignores one): see index_of_checked.
  [[nodiscard]] std::uint32_t in(State s) const noexcept {
    const auto i = index_of_checked(s);
    return i < kStateCount ? steps[i] : 0;
  }
  void set(State s, std::uint32_t n) noexcept {
    if (const auto i = index_of_checked(s); i < kStateCount) steps[i] = n;
  }
  friend bool operator==(const MinimumSteps&, const MinimumSteps&) = default;
};

struct GuardThresholds {
  // TRAINING -> GRAFTING: shadow_loss <= chunk_loss − margin·|chunk_loss|.
  double shadow_loss_margin = 0.01;
  // EVALUATING -> FINE_TUNING: performance_delta > min_performance_delta and stability >= this.
  double min_performance_delta = 0.0;
  double evaluating_min_stability = 0.8;
  // FINE_TUNING -> FOSSILIZED: improvement >= min_improvement and stability >= this.
  double min_improvement = 0.01;
  double fossilizing_min_stability = 0.95;
  // GRAFTING -> STABILIZATION: the ramp has reached α = 1 (so α never jumps).
  bool require_complete_ramp = true;

  friend bool operator==(const GuardThresholds&, const GuardThresholds&) = default;
};

struct LifecycleConfig {
  MinimumSteps minimum_steps;
  GuardThresholds guards;
  GraftingConfig grafting;            // a seed's strategy until set_grafting, and again after a reset
  std::size_t history_capacity = 16;  // transitions kept per seed, oldest dropped first

  friend bool operator==(const LifecycleConfig&, const LifecycleConfig&) = default;
};

// What is wrong with `config`, or nothing when it is usable.
[[nodiscard]] std::optional<std::string> check_config(const LifecycleConfig& config);

// Per-seed measurements that the caller supplies: guards read them on a transition, grafting on
// a tick. Guard inputs default to NaN, which fails every guard: a guard never passes on a value
// nobody measured.
struct SeedMetrics {
  double chunk_loss = std::numeric_limits<double>::quiet_NaN();         // chunk task loss now
  double shadow_loss = std::numeric_limits<double>::quiet_NaN();        // chunk loss at α = 1 (TRAINING)
  double performance_delta = std::numeric_limits<double>::quiet_NaN();  // loss without seed − with; > 0 helps
  double stability = std::numeric_limits<double>::quiet_NaN();          // 0 (unstable) .. 1
  double improvement = std::numeric_limits<double>::quiet_NaN();        // task-loss improvement due to the seed
  double weight_drift = 0.0;  // relative change of the seed's parameters over the last step (grafting)
};

// The rule a rejected transition failed. Codes (rule_code) are stable: they lead every message.
enum class Rule : std::uint8_t {
  unknown_state,            // a state value outside DORMANT..ROLLED_BACK
  table,                    // from -> to is not in the transition table
  min_steps,                // too few steps in the current state
  guard_shadow_loss,        // TRAINING -> GRAFTING
  guard_ramp,               // GRAFTING -> STABILIZATION
  guard_performance_delta,  // EVALUATING -> FINE_TUNING
  guard_stability,          // EVALUATING -> FINE_TUNING, FINE_TUNING -> FOSSILIZED
  guard_improvement,        // FINE_TUNING -> FOSSILIZED
  no_such_seed,             // a population selection named a seed id it does not have
};

[[nodiscard]] std::string_view rule_code(Rule rule) noexcept;

struct Rejection {
  Rule rule;
  std::string detail;  // e.g. "TRAINING needs 100 steps in state, has 12"

  // "<rule code>: <detail>", e.g. "min_steps: TRAINING needs 100 steps in state, has 12".
  [[nodiscard]] std::string message() const;
  friend bool operator==(const Rejection&, const Rejection&) = default;
};

// The rules alone, for a seed in `from` that has spent `steps_in_state` steps there. `metrics`
// may be null (no measurements: a guarded transition is rejected). `progress` is the seed's
// grafting progress (read by the ramp guard).
[[nodiscard]] Expected<State, Rejection> check_transition(const LifecycleConfig& config, State from,
                                                          std::uint32_t steps_in_state,
                                                          const GraftingProgress& progress, State to, bool force,
                                                          const SeedMetrics* metrics);

struct TransitionRecord {
  State from = State::DORMANT;
  State to = State::DORMANT;
  std::uint64_t step = 0;
  std::string reason;
  friend bool operator==(const TransitionRecord&, const TransitionRecord&) = default;
};

// The last `capacity` transitions of a seed; [0] is the oldest kept.
class HistoryRing {
 public:
  explicit HistoryRing(std::size_t capacity);

  [[nodiscard]] std::size_t capacity() const noexcept { return slots_.size(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }   // ever recorded, kept or not
  [[nodiscard]] const TransitionRecord& operator[](std::size_t i) const;  // throws Error when i >= size()
  [[nodiscard]] const TransitionRecord& back() const;                     // the newest
  [[nodiscard]] std::vector<TransitionRecord> records() const;            // oldest first

  void push(TransitionRecord record) noexcept;  // never allocates: the slots exist from the start

  friend bool operator==(const HistoryRing&, const HistoryRing&) = default;

 private:
  std::vector<TransitionRecord> slots_;
  std::size_t head_ = 0;  // slot of the oldest record
  std::size_t size_ = 0;
  std::uint64_t total_ = 0;
};

class Seed {
 public:
  // Throws Error when check_config(config) finds a problem.
  explicit Seed(LifecycleConfig config = {});

  [[nodiscard]] State state() const noexcept { return state_; }
  [[nodiscard]] State parent_state() const noexcept { return parent_; }  // before the last transition
  [[nodiscard]] std::uint32_t steps_in_state() const noexcept { return steps_in_state_; }
  [[nodiscard]] std::uint32_t error_count() const noexcept { return error_count_; }
  [[nodiscard]] float alpha() const noexcept;  // kernels::effective_alpha(state, grafting ramp)
  [[nodiscard]] const HistoryRing& history() const noexcept { return history_; }
  [[nodiscard]] const GraftingConfig& grafting() const noexcept { return grafting_; }
  [[nodiscard]] const GraftingProgress& grafting_progress() const noexcept { return progress_; }
  [[nodiscard]] const LifecycleConfig& config() const noexcept { return config_; }

  // Whether `to` would be accepted now; changes nothing.
  [[nodiscard]] Expected<State, Rejection> check(State to, bool force, const SeedMetrics* metrics) const;

  // Applies `to` and returns it, or returns the rejection and changes nothing. Applying sets the
  // parent state, zeroes the steps in state, records (from, to, step, reason) in the history,
  // restarts the ramp on entering GRAFTING, and on the reset to DORMANT also clears the error
  // count and restores the default grafting config (the slot is free for a new blueprint).
  [[nodiscard]] Expected<State, Rejection> transition(State to, std::string_view reason, bool force,
                                                      const SeedMetrics* metrics, std::uint64_t step);

  // The end of one training step: steps in state + 1 (saturating); in GRAFTING the ramp advances
  // with the step's weight drift and chunk loss (`metrics` may be null: no drift, unknown loss).
  void tick(const SeedMetrics* metrics = nullptr) noexcept;

  // A fault seen in this seed's computation (NaN, kernel error); saturating.
  void record_error() noexcept;

  // The blueprint's grafting strategy (SetBlueprint). Throws Error when check_config finds a problem.
  void set_grafting(const GraftingConfig& grafting);

  friend bool operator==(const Seed&, const Seed&) = default;

 private:
  LifecycleConfig config_;
  State state_ = State::DORMANT;
  State parent_ = State::DORMANT;
  std::uint32_t steps_in_state_ = 0;
  std::uint32_t error_count_ = 0;
  GraftingConfig grafting_;
  GraftingProgress progress_;
  HistoryRing history_;
};

}  // namespace esper::lifecycle
