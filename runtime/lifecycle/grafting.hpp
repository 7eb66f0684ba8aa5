// Grafting strategies: how α rises from 0 to 1 while a seed is in GRAFTING (docs/lifecycle.md,
// "Grafting strategies"). Pure and deterministic: the same config, progress and input give the
// same next progress on every replica.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "fbs/command_generated.h"

namespace esper::lifecycle {

// LINEAR, DRIFT_CONTROLLED, ADAPTIVE: the wire enum, so that SetBlueprint maps one to one.
using GraftingStrategy = wire::GraftingStrategy;

struct GraftingConfig {
  GraftingStrategy strategy = GraftingStrategy::LINEAR;
  std::uint32_t ramp_steps = 50;  // R: α = progress / R, so a linear ramp reaches 1 after R steps
  double drift_threshold = 0.01;  // DRIFT_CONTROLLED: hold α while relative weight drift > this
  // ADAPTIVE: progress advances by `gain` per step; the gain shrinks when the chunk loss rose by
  // more than `loss_tolerance` (relative) since the previous step, grows when it fell by more.
  double loss_tolerance = 1e-3;
  double gain_min = 0.25;  // > 0: the ramp always completes, within ceil(R / gain_min) steps
  double gain_max = 4.0;
  double gain_up = 1.25;
  double gain_down = 0.5;

  friend bool operator==(const GraftingConfig&, const GraftingConfig&) = default;
};

// What is wrong with `config`, or nothing when it is usable.
[[nodiscard]] std::optional<std::string> check_config(const GraftingConfig& config);

// Where a seed is on its ramp. Starts at {} when the seed enters GRAFTING.
struct GraftingProgress {
  double progress = 0.0;            // ramp steps done (fractional for ADAPTIVE), capped at R
  double alpha = 0.0;               // min(1, progress / R)
  std::uint32_t held_steps = 0;     // DRIFT_CONTROLLED: steps held because of drift
  double gain = 1.0;                // ADAPTIVE
  std::optional<double> last_loss;  // ADAPTIVE: chunk loss at the previous step

  friend bool operator==(const GraftingProgress&, const GraftingProgress&) = default;
};

// What the step that just ended measured for this seed.
struct GraftingInput {
  double weight_drift = 0.0;  // ‖θ_t − θ_{t−1}‖ / ‖θ_{t−1}‖ of the seed's parameters
  double chunk_loss = 0.0;    // the chunk's task loss at the current α (non-finite: unknown)
};

// The progress after one more step in GRAFTING. Precondition: check_config(config) is empty.
//   LINEAR:           progress += 1
//   DRIFT_CONTROLLED: progress += 1 if weight_drift <= drift_threshold, else hold (NaN holds)
//   ADAPTIVE:         r = (loss − last_loss) / max(|last_loss|, 1e-12);
//                     gain ← max(gain_min, gain·gain_down) if r > loss_tolerance,
//                            min(gain_max, gain·gain_up)  if r < −loss_tolerance, else unchanged;
//                     progress += gain
// then α = min(1, progress / R).
[[nodiscard]] GraftingProgress advance(const GraftingConfig& config, const GraftingProgress& progress,
                                       const GraftingInput& input) noexcept;

}  // namespace esper::lifecycle
