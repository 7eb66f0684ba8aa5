// Grafting strategies. α is always derived from an accumulated progress (α = progress / R), never
// accumulated itself, so LINEAR reaches exactly 1.0 after R steps and ADAPTIVE with a flat loss is
// bit-identical to LINEAR.
#include "lifecycle/grafting.hpp"

#include <algorithm>
#include <cmath>

namespace esper::lifecycle {

std::optional<std::string> check_config(const GraftingConfig& config) {
  if (config.strategy != GraftingStrategy::LINEAR && config.strategy != GraftingStrategy::DRIFT_CONTROLLED &&
      config.strategy != GraftingStrategy::ADAPTIVE)
    return "grafting strategy " + std::to_string(static_cast<int>(config.strategy)) + " is unknown";
  if (config.ramp_steps == 0) return "grafting ramp_steps must be > 0";
  if (!(config.drift_threshold >= 0.0)) return "grafting drift_threshold must be >= 0";
  if (!(config.loss_tolerance >= 0.0)) return "grafting loss_tolerance must be >= 0";
  if (!(config.gain_min > 0.0) || !(config.gain_max >= config.gain_min) || !std::isfinite(config.gain_max))
    return "grafting gains need 0 < gain_min <= gain_max < inf";
  if (!(config.gain_up >= 1.0) || !std::isfinite(config.gain_up)) return "grafting gain_up must be >= 1";
  if (!(config.gain_down > 0.0 && config.gain_down <= 1.0)) return "grafting gain_down must be in (0, 1]";
  return std::nullopt;
}

namespace {

double adapted_gain(const GraftingConfig& config, const GraftingProgress& progress, double loss) {
  if (!progress.last_loss || !std::isfinite(loss)) return progress.gain;
  const double previous = *progress.last_loss;
  const double response = (loss - previous) / std::max(std::abs(previous), 1e-12);
  if (response > config.loss_tolerance) return std::max(config.gain_min, progress.gain * config.gain_down);
  if (response < -config.loss_tolerance) return std::min(config.gain_max, progress.gain * config.gain_up);
  return progress.gain;
}

}  // namespace

GraftingProgress advance(const GraftingConfig& config, const GraftingProgress& progress,
                         const GraftingInput& input) noexcept {
  GraftingProgress next = progress;
  const double ramp = static_cast<double>(config.ramp_steps);
  double step = 1.0;
  switch (config.strategy) {
    case GraftingStrategy::LINEAR:
      break;
    case GraftingStrategy::DRIFT_CONTROLLED:
      if (!(input.weight_drift <= config.drift_threshold)) {
        step = 0.0;
        ++next.held_steps;
      }
      break;
    case GraftingStrategy::ADAPTIVE:
      next.gain = adapted_gain(config, progress, input.chunk_loss);
      if (std::isfinite(input.chunk_loss)) next.last_loss = input.chunk_loss;
      step = next.gain;
      break;
  }
  next.progress = std::min(ramp, progress.progress + step);
  next.alpha = next.progress >= ramp ? 1.0 : next.progress / ramp;
  return next;
}

}  // namespace esper::lifecycle
