// Seed lifecycle rules and the per-seed record. Rules are checked in a fixed order — valid state,
// table, minimum steps (unless forced; leaving to ROLLED_BACK is exempt), guards — and the first
// that fails is reported. A transition builds everything that can fail or allocate before it
// touches the record, then applies without failing, so a rejection or an exception changes nothing.
#include "lifecycle/seed.hpp"

#include <charconv>
#include <cmath>
#include <system_error>
#include <utility>

namespace esper::lifecycle {

namespace {

// Shortest text that reads back as the same double, so a boundary case never prints as equal.
std::string number(double v) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return ec == std::errc() ? std::string(buffer, end) : std::string("?");
}

std::string arrow(State from, State to) { return std::string(name(from)) + " -> " + std::string(name(to)); }

Unexpected<Rejection> reject(Rule rule, std::string detail) { return unexpected(Rejection{rule, std::move(detail)}); }

Rejection no_metrics(Rule rule, State from, State to) {
  return {rule, arrow(from, to) + " needs metrics, none were supplied"};
}

std::optional<Rejection> check_guards(const GuardThresholds& g, State from, State to, const GraftingProgress& progress,
                                      const SeedMetrics* m) {
  // Comparisons are written so that NaN fails them.
  if (from == State::TRAINING && to == State::GRAFTING) {
    if (m == nullptr) return no_metrics(Rule::guard_shadow_loss, from, to);
    const double limit = m->chunk_loss - g.shadow_loss_margin * std::abs(m->chunk_loss);
    if (!(m->shadow_loss <= limit))
      return Rejection{Rule::guard_shadow_loss, number(m->shadow_loss) + " is not " +
                                                    number(g.shadow_loss_margin * 100.0) + "% below chunk loss " +
                                                    number(m->chunk_loss)};
  } else if (from == State::GRAFTING && to == State::STABILIZATION) {
    if (g.require_complete_ramp && !(progress.alpha >= 1.0))
      return Rejection{Rule::guard_ramp, "alpha " + number(progress.alpha) + " has not reached 1"};
  } else if (from == State::EVALUATING && to == State::FINE_TUNING) {
    if (m == nullptr) return no_metrics(Rule::guard_performance_delta, from, to);
    if (!(m->performance_delta > g.min_performance_delta))
      return Rejection{Rule::guard_performance_delta,
                       number(m->performance_delta) + " is not > " + number(g.min_performance_delta)};
    if (!(m->stability >= g.evaluating_min_stability))
      return Rejection{Rule::guard_stability, number(m->stability) + " is not >= " +
                                                  number(g.evaluating_min_stability) + " (" + arrow(from, to) + ")"};
  } else if (from == State::FINE_TUNING && to == State::FOSSILIZED) {
    if (m == nullptr) return no_metrics(Rule::guard_improvement, from, to);
    if (!(m->improvement >= g.min_improvement))
      return Rejection{Rule::guard_improvement, number(m->improvement) + " is not >= " + number(g.min_improvement)};
    if (!(m->stability >= g.fossilizing_min_stability))
      return Rejection{Rule::guard_stability, number(m->stability) + " is not >= " +
                                                  number(g.fossilizing_min_stability) + " (" + arrow(from, to) + ")"};
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_config(const LifecycleConfig& config) {
  if (config.history_capacity == 0) return "history_capacity must be > 0";
  const GuardThresholds& g = config.guards;
  if (!(g.shadow_loss_margin >= 0.0 && g.shadow_loss_margin < 1.0)) return "shadow_loss_margin must be in [0, 1)";
  if (!std::isfinite(g.min_performance_delta) || !std::isfinite(g.min_improvement))
    return "guard thresholds must be finite";
  if (!(g.evaluating_min_stability >= 0.0 && g.evaluating_min_stability <= 1.0) ||
      !(g.fossilizing_min_stability >= 0.0 && g.fossilizing_min_stability <= 1.0))
    return "stability thresholds must be in [0, 1]";
  return check_config(config.grafting);
}

std::string_view rule_code(Rule rule) noexcept {
  switch (rule) {
    case Rule::unknown_state:
      return "unknown_state";
    case Rule::table:
      return "table";
    case Rule::min_steps:
      return "min_steps";
    case Rule::guard_shadow_loss:
      return "guard_shadow_loss";
    case Rule::guard_ramp:
      return "guard_ramp";
    case Rule::guard_performance_delta:
      return "guard_performance_delta";
    case Rule::guard_stability:
      return "guard_stability";
    case Rule::guard_improvement:
      return "guard_improvement";
    case Rule::no_such_seed:
      return "no_such_seed";
  }
  return "unknown_rule";
}

std::string Rejection::message() const { return std::string(rule_code(rule)) + ": " + detail; }

Expected<State, Rejection> check_transition(const LifecycleConfig& config, State from, std::uint32_t steps_in_state,
                                            const GraftingProgress& progress, State to, bool force,
                                            const SeedMetrics* metrics) {
  if (!is_valid(from) || !is_valid(to))
    return reject(Rule::unknown_state, "state " + std::to_string(static_cast<int>(is_valid(from) ? to : from)) +
                                           " is not one of DORMANT..ROLLED_BACK");
  if (!is_transition(from, to)) return reject(Rule::table, arrow(from, to) + " is not a transition");
  const std::uint32_t minimum = config.minimum_steps.in(from);
  if (!force && to != State::ROLLED_BACK && steps_in_state < minimum)
    return reject(Rule::min_steps, std::string(name(from)) + " needs " + std::to_string(minimum) +
                                       " steps in state, has " + std::to_string(steps_in_state));
  if (auto failed = check_guards(config.guards, from, to, progress, metrics)) return unexpected(std::move(*failed));
  return to;
}

HistoryRing::HistoryRing(std::size_t capacity) : slots_(capacity) {
  if (capacity == 0) throw Error("HistoryRing capacity must be > 0");
}

const TransitionRecord& HistoryRing::operator[](std::size_t i) const {
  if (i >= size_) throw Error("HistoryRing index " + std::to_string(i) + " >= size " + std::to_string(size_));
  return slots_[(head_ + i) % slots_.size()];
}

const TransitionRecord& HistoryRing::back() const {
  if (size_ == 0) throw Error("HistoryRing is empty");
  return (*this)[size_ - 1];
}

std::vector<TransitionRecord> HistoryRing::records() const {
  std::vector<TransitionRecord> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.push_back((*this)[i]);
  return out;
}

void HistoryRing::push(TransitionRecord record) noexcept {
  const std::size_t slot = (head_ + size_) % slots_.size();
  slots_[slot] = std::move(record);
  if (size_ < slots_.size()) {
    ++size_;
  } else {
    head_ = (head_ + 1) % slots_.size();
  }
  ++total_;
}

namespace {
const LifecycleConfig& checked(const LifecycleConfig& config) {
  if (auto problem = check_config(config)) throw Error("invalid LifecycleConfig: " + *problem);
  return config;
}
}  // namespace

Seed::Seed(LifecycleConfig config)
    : config_(checked(config)), grafting_(config_.grafting), history_(config_.history_capacity) {}

float Seed::alpha() const noexcept { return kernels::effective_alpha(state_, static_cast<float>(progress_.alpha)); }

Expected<State, Rejection> Seed::check(State to, bool force, const SeedMetrics* metrics) const {
  return check_transition(config_, state_, steps_in_state_, progress_, to, force, metrics);
}

Expected<State, Rejection> Seed::transition(State to, std::string_view reason, bool force, const SeedMetrics* metrics,
                                            std::uint64_t step) {
  auto verdict = check(to, force, metrics);
  if (!verdict) return verdict;
  TransitionRecord record{state_, to, step, std::string(reason)};

  history_.push(std::move(record));
  parent_ = state_;
  state_ = to;
  steps_in_state_ = 0;
  if (to == State::GRAFTING) progress_ = GraftingProgress{};
  if (to == State::DORMANT) {
    error_count_ = 0;
    grafting_ = config_.grafting;
    progress_ = GraftingProgress{};
  }
  return verdict;
}

void Seed::tick(const SeedMetrics* metrics) noexcept {
  if (steps_in_state_ < std::numeric_limits<std::uint32_t>::max()) ++steps_in_state_;
  if (state_ == State::GRAFTING) {
    const GraftingInput input = metrics != nullptr ? GraftingInput{metrics->weight_drift, metrics->chunk_loss}
                                                   : GraftingInput{0.0, std::numeric_limits<double>::quiet_NaN()};
    progress_ = advance(grafting_, progress_, input);
  }
}

void Seed::record_error() noexcept {
  if (error_count_ < std::numeric_limits<std::uint32_t>::max()) ++error_count_;
}

void Seed::set_grafting(const GraftingConfig& grafting) {
  if (auto problem = check_config(grafting)) throw Error("invalid GraftingConfig: " + *problem);
  grafting_ = grafting;
}

}  // namespace esper::lifecycle
