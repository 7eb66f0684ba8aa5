// The per-state rule of docs/design.md §5, shared by the CPU reference, the CUDA kernels and the seed
// lifecycle (runtime/lifecycle includes this header; it is the rule's only definition):
//   DORMANT, GERMINATED, CULLED, CANCELLED, ROLLED_BACK  α = 0, f_c not evaluated, nothing trains
//   TRAINING                                            α = 0 in the output; f_c evaluated and trained
//                                                       in the shadow as if blended at α = 1
//   GRAFTING                                            α = the caller's ramp value; f_c trains
//   STABILIZATION, EVALUATING, FOSSILIZED               α = 1, f_c frozen
//   FINE_TUNING                                         α = 1, f_c trains
// A training seed's parameter gradient is the gradient of the loss at the blend it trains for:
// scale 1 in TRAINING (shadow, α = 1) and FINE_TUNING, α in GRAFTING (the true gradient).
// Everything here is constexpr and needs only kernels/seed_state.hpp, so the standalone kernels
// build and the lifecycle library use it without linking each other. A value outside
// DORMANT..ROLLED_BACK (a bad wire value) is never evaluated and never trains.
#pragma once

#include "kernels/seed_state.hpp"

namespace esper::kernels {

// Whether f_c(x) is computed at all in this state: TRAINING (in the shadow) through FOSSILIZED.
[[nodiscard]] constexpr bool seed_evaluated(SeedState s) noexcept {
  return s >= SeedState::TRAINING && s <= SeedState::FOSSILIZED;
}

// Whether the seed's parameters receive gradients and optimizer steps: TRAINING, GRAFTING, FINE_TUNING.
[[nodiscard]] constexpr bool seed_trains(SeedState s) noexcept {
  return s == SeedState::TRAINING || s == SeedState::GRAFTING || s == SeedState::FINE_TUNING;
}

// TRAINING: the output is the base's (α = 0, bit-identical) while f_c trains on the chunk's upstream
// gradient as if it were blended in at α = 1; its shadow loss is the chunk loss at α = 1.
[[nodiscard]] constexpr bool seed_trains_in_shadow(SeedState s) noexcept { return s == SeedState::TRAINING; }

// The α that blends f_c into o_c = y_c + α f_c(x); `requested` (the grafting ramp) is used only in
// GRAFTING: 1 in STABILIZATION, EVALUATING, FINE_TUNING, FOSSILIZED, otherwise 0.
[[nodiscard]] constexpr float effective_alpha(SeedState s, float requested) noexcept {
  if (s == SeedState::GRAFTING) return requested;
  return (s >= SeedState::STABILIZATION && s <= SeedState::FOSSILIZED) ? 1.0f : 0.0f;
}

// The factor on the upstream gradient of the chunk for the seed's parameter gradients (0: none).
[[nodiscard]] constexpr float seed_gradient_scale(SeedState s, float requested) noexcept {
  if (seed_trains_in_shadow(s)) return 1.0f;
  return seed_trains(s) ? effective_alpha(s, requested) : 0.0f;
}

}  // namespace esper::kernels
