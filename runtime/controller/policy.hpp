// Growth policies (docs/design.md §7): from the population view, what to do next, and why.
//
// Every decision is a selection over one layer (controller/view.hpp) and a target state. Per layer
// and per tick, in this order:
//   reset    CULLED / CANCELLED / ROLLED_BACK → DORMANT: free the slot for a fresh seed;
//   cull     a seed that cannot pass its guard within `patience` steps past its minimum
//            (TRAINING: the shadow loss does not beat the chunk loss; EVALUATING / FINE_TUNING: no
//            improvement over the chunk's loss before the seed);
//   advance  a seed whose minimum steps are met and whose guard passes as far as telemetry shows
//            (TRAINING → GRAFTING: shadow gain ≥ margin; GRAFTING → STABILIZATION: α reached 1;
//            EVALUATING → FINE_TUNING: health ≥ stability and improvement > 0; FINE_TUNING →
//            FOSSILIZED: health and improvement above the fossilizing bars). The rank checks the
//            guards again with its own numbers: a refusal is not a failure, the seed is tried again
//            after `retry_after` steps;
//   wake     DORMANT → GERMINATED where the chunk underperforms (its loss ≥ wake_ratio × the
//            layer's median chunk loss), worst first, while fewer than max_growing_fraction of the
//            layer's seeds are growing (GERMINATED or TRAINING: a shadow pass each), never a chunk whose seed
//            already failed more than max_failures times.
// Emergency stop: when more than stop_failure_rate of the last `failure_window` outcomes of growth
// were failures (an outcome: a seed fossilized, or culled, or a command that got no result), the
// policy asks for one EmergencyStop and decides nothing more.
// Presets: aggressive grows every chunk at once and culls early; conservative grows a quarter at a
// time with stricter bars and stops at a lower failure rate; balanced is in between.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "controller/view.hpp"

namespace esper::controller {

struct PolicyConfig {
  std::string name = "balanced";
  double max_growing_fraction = 0.5;
  double wake_ratio = 0.9;
  // Steps in state before the policy tries to leave it (the ranks' minimums, docs/design.md §4).
  std::uint32_t min_training = 100, min_grafting = 50, min_stabilization = 20, min_evaluating = 30,
                min_fine_tuning = 50;
  double shadow_margin = 0.02;
  double evaluate_stability = 0.8;
  double fossilize_stability = 0.95;
  double fossilize_improvement = 0.01;
  std::uint32_t patience = 200;
  std::uint32_t max_failures = 2;
  double stop_failure_rate = 0.5;
  std::size_t failure_window = 20;
  std::size_t failure_min = 10;
  std::uint32_t retry_after = 10;
};

// "aggressive", "balanced" or "conservative"; nothing for another name.
[[nodiscard]] std::optional<PolicyConfig> preset(const std::string& name);
[[nodiscard]] const std::vector<std::string>& preset_names();

struct Decision {
  wire::DecisionAction action = wire::DecisionAction::ADVANCE;
  std::uint32_t layer = 0;
  wire::SeedState target = wire::SeedState::DORMANT;
  std::vector<std::uint32_t> seeds;
  std::string reason;
};

class Policy {
 public:
  explicit Policy(PolicyConfig config) : config_(std::move(config)) {}

  // Seeds with a command in flight, (layer, seed) -> the state it moves them to: they are left
  // alone, and count as growing when that state is.
  using InFlight = std::map<std::pair<std::uint32_t, std::uint32_t>, wire::SeedState>;
  // What to do now.
  [[nodiscard]] std::vector<Decision> decide(const PopulationView& view, const InFlight& busy = {});

  // Outcomes, fed back by the controller.
  void refused(std::uint32_t layer, std::uint32_t seed, std::uint64_t step);  // a rank said not yet
  // An outcome of growth: false for a seed fossilized; true for a cull or a command without a result.
  void outcome(bool failure);

  [[nodiscard]] bool stopped() const noexcept { return stopped_; }
  [[nodiscard]] double failure_rate() const;
  [[nodiscard]] const PolicyConfig& config() const noexcept { return config_; }

 private:
  PolicyConfig config_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> refused_at_;
  std::deque<bool> outcomes_;
  bool stopped_ = false;
};

}  // namespace esper::controller
