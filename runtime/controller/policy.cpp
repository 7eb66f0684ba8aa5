#include "controller/policy.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace esper::controller {

using wire::DecisionAction;
using wire::SeedState;

std::optional<PolicyConfig> preset(const std::string& name) {
  PolicyConfig c;
  c.name = name;
  if (name == "balanced") return c;
  if (name == "aggressive") {
    c.max_growing_fraction = 1.0;
    c.wake_ratio = 0.0;
    c.shadow_margin = 0.01;
    c.patience = 100;
    c.max_failures = 3;
    c.stop_failure_rate = 0.8;
    c.retry_after = 5;
    return c;
  }
  if (name == "conservative") {
    c.max_growing_fraction = 0.25;
    c.wake_ratio = 1.0;
    c.shadow_margin = 0.05;
    c.evaluate_stability = 0.9;
    c.fossilize_stability = 0.97;
    c.fossilize_improvement = 0.02;
    c.patience = 300;
    c.max_failures = 1;
    c.stop_failure_rate = 0.3;
    c.retry_after = 20;
    return c;
  }
  return std::nullopt;
}

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names{"aggressive", "balanced", "conservative"};
  return names;
}

void Policy::refused(std::uint32_t layer, std::uint32_t seed, std::uint64_t step) { refused_at_[{layer, seed}] = step; }

void Policy::outcome(bool failure) {
  outcomes_.push_back(failure);
  while (outcomes_.size() > config_.failure_window) outcomes_.pop_front();
}

double Policy::failure_rate() const {
  if (outcomes_.empty()) return 0.0;
  return static_cast<double>(std::count(outcomes_.begin(), outcomes_.end(), true)) /
         static_cast<double>(outcomes_.size());
}

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// "seeds 1 (12.0%), 4 (3.1%)" for the first few seeds of a decision, with the metric that decided.
std::string values(const LayerView& layer, const std::vector<std::uint32_t>& seeds, Metric m, bool percent) {
  std::string out;
  std::size_t shown = 0;
  for (const auto id : seeds) {
    if (shown++ == 6) {
      out += ", ...";
      break;
    }
    const double v = metric_value(layer.seeds.at(id), m);
    out += fmt::format("{}{} ({})", out.empty() ? "" : ", ", id,
                       percent ? fmt::format("{:.1f}%", 100.0 * v) : fmt::format("{:.4g}", v));
  }
  return out;
}

}  // namespace

std::vector<Decision> Policy::decide(const PopulationView& view, const InFlight& busy) {
  std::vector<Decision> out;
  if (stopped_) return out;
  if (outcomes_.size() >= config_.failure_min && failure_rate() > config_.stop_failure_rate) {
    stopped_ = true;
    Decision d;
    d.action = DecisionAction::EMERGENCY_STOP;
    d.reason = fmt::format("{:.0f}% of the last {} outcomes failed (limit {:.0f}%)", 100.0 * failure_rate(),
                           outcomes_.size(), 100.0 * config_.stop_failure_rate);
    out.push_back(std::move(d));
    return out;
  }
  const auto& c = config_;
  for (const auto& [layer_id, layer] : view.layers()) {
    std::set<std::uint32_t> taken;  // seeds already decided on this tick, or in flight
    std::size_t growing_in_flight = 0;  // seeds a command in flight moves into a growing state
    for (const auto& [key, target] : busy) {
      if (key.first != layer_id) continue;
      taken.insert(key.second);
      const auto it = layer.seeds.find(key.second);
      if (growing(target) && (it == layer.seeds.end() || !growing(it->second.state))) ++growing_in_flight;
    }
    for (const auto& [key, at] : refused_at_) {
      if (key.first == layer_id && view.step() < at + c.retry_after) taken.insert(key.second);
    }
    auto add = [&](DecisionAction action, SeedState target, Selection sel, std::string reason,
                   std::optional<std::pair<Metric, bool>> shown = std::nullopt) {
      sel.exclude = taken;
      auto seeds = view.select(layer_id, sel);
      if (seeds.empty()) return;
      for (const auto s : seeds) taken.insert(s);
      if (shown) reason += ": seeds " + values(layer, seeds, shown->first, shown->second);
      out.push_back(Decision{action, layer_id, target, std::move(seeds), std::move(reason)});
    };
    // A record's steps_in_state is counted before the step's own tick reaches the rank's guard:
    // one step of slack keeps the policy from asking a step too early.
    auto steps = [](std::uint32_t n) { return Bound{Metric::StepsInState, static_cast<double>(n) + 1.0, inf}; };

    add(DecisionAction::RESET, SeedState::DORMANT,
        {.from = {SeedState::CULLED, SeedState::CANCELLED, SeedState::ROLLED_BACK}}, "free the slot for a fresh seed");

    add(DecisionAction::CULL, SeedState::CULLED,
        {.from = {SeedState::TRAINING},
         .bounds = {steps(c.min_training + c.patience), {Metric::ShadowGain, -inf, c.shadow_margin}}},
        fmt::format("shadow loss not {:.1f}% below the chunk loss after {} steps", 100.0 * c.shadow_margin,
                    c.min_training + c.patience),
        std::pair{Metric::ShadowGain, true});
    add(DecisionAction::CULL, SeedState::CULLED,
        {.from = {SeedState::EVALUATING},
         .bounds = {steps(c.min_evaluating + c.patience), {Metric::Improvement, -inf, 0.0}}},
        fmt::format("no improvement over the chunk's loss after {} steps evaluating", c.min_evaluating + c.patience),
        std::pair{Metric::Improvement, true});
    add(DecisionAction::CULL, SeedState::CULLED,
        {.from = {SeedState::FINE_TUNING},
         .bounds = {steps(c.min_fine_tuning + c.patience), {Metric::Improvement, -inf, 0.0}}},
        fmt::format("fine-tuning brought no improvement after {} steps", c.min_fine_tuning + c.patience),
        std::pair{Metric::Improvement, true});

    add(DecisionAction::ADVANCE, SeedState::TRAINING, {.from = {SeedState::GERMINATED}}, "train in the shadow");
    add(DecisionAction::ADVANCE, SeedState::GRAFTING,
        {.from = {SeedState::TRAINING}, .bounds = {steps(c.min_training), {Metric::ShadowGain, c.shadow_margin, inf}}},
        fmt::format("shadow loss at least {:.1f}% below the chunk loss", 100.0 * c.shadow_margin),
        std::pair{Metric::ShadowGain, true});
    add(DecisionAction::ADVANCE, SeedState::STABILIZATION,
        {.from = {SeedState::GRAFTING}, .bounds = {steps(c.min_grafting), {Metric::Alpha, 1.0, inf}}},
        "blending ramp complete (alpha = 1)");
    add(DecisionAction::ADVANCE, SeedState::EVALUATING,
        {.from = {SeedState::STABILIZATION}, .bounds = {steps(c.min_stabilization)}},
        fmt::format("stable for {} steps", c.min_stabilization));
    add(DecisionAction::ADVANCE, SeedState::FINE_TUNING,
        {.from = {SeedState::EVALUATING},
         .bounds = {steps(c.min_evaluating), {Metric::Health, c.evaluate_stability, inf},
                    {Metric::Improvement, 1e-12, inf}}},
        fmt::format("improves on the chunk's loss and health >= {}", c.evaluate_stability),
        std::pair{Metric::Improvement, true});
    add(DecisionAction::ADVANCE, SeedState::FOSSILIZED,
        {.from = {SeedState::FINE_TUNING},
         .bounds = {steps(c.min_fine_tuning), {Metric::Health, c.fossilize_stability, inf},
                    {Metric::Improvement, c.fossilize_improvement, inf}}},
        fmt::format("improvement >= {:.1f}% and health >= {}", 100.0 * c.fossilize_improvement,
                    c.fossilize_stability),
        std::pair{Metric::Improvement, true});

    // Wake: capacity left for growing seeds, worst chunks first.
    const auto counts = layer.counts();
    std::size_t growing_now = growing_in_flight;
    for (std::size_t s = 0; s < counts.size(); ++s) {
      if (growing(static_cast<SeedState>(s))) growing_now += counts[s];
    }
    const auto cap = std::max<std::size_t>(
        1, static_cast<std::size_t>(std::floor(c.max_growing_fraction * static_cast<double>(layer.seeds.size()))));
    const double median = layer.median_task_loss();
    if (growing_now < cap && std::isfinite(median)) {
      add(DecisionAction::WAKE, SeedState::GERMINATED,
          {.from = {SeedState::DORMANT},
           .bounds = {{Metric::TaskLoss, c.wake_ratio * median, inf}},
           .max_failures = c.max_failures,
           .limit = cap - growing_now},
          fmt::format("chunk loss at least {:.2f}x the layer median {:.4g}", c.wake_ratio, median),
          std::pair{Metric::TaskLoss, false});
    }
  }
  return out;
}

}  // namespace esper::controller
