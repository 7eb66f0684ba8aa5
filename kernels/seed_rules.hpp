// The per-state rule of DESIGN.md §5, shared by the CPU reference and the CUDA kernels:
//   DORMANT, GERMINATED, CULLED, CANCELLED, ROLLED_BACK  α = 0, f_c not evaluated, nothing trains
//   TRAINING                                            α = 0 in the output; f_c evaluated and trained
//                                                       in the shadow as if blended at α = 1
//   GRAFTING                                            α = the caller's ramp value; f_c trains
//   STABILIZATION, EVALUATING, FOSSILIZED               α = 1, f_c frozen
//   FINE_TUNING                                         α = 1, f_c trains
// A training seed's parameter gradient is the gradient of the loss at the blend it trains for:
// scale 1 in TRAINING (shadow, α = 1) and FINE_TUNING, α in GRAFTING (the true gradient).
#pragma once

#include "kernels/host_device.hpp"
#include "kernels/seed_state.hpp"

namespace esper::kernels {

// Whether f_c(x) is computed at all in this state.
constexpr bool seed_evaluated(SeedState s) {
  return s >= SeedState::TRAINING && s <= SeedState::FOSSILIZED;
}

// Whether the seed's parameters receive gradients and optimizer steps.
constexpr bool seed_trains(SeedState s) {
  return s == SeedState::TRAINING || s == SeedState::GRAFTING || s == SeedState::FINE_TUNING;
}

// The α that blends f_c into the output; `requested` is the caller's value, used only in GRAFTING.
constexpr float effective_alpha(SeedState s, float requested) {
  if (s == SeedState::GRAFTING) return requested;
  return (s >= SeedState::STABILIZATION && s <= SeedState::FOSSILIZED) ? 1.0f : 0.0f;
}

// The factor on the upstream gradient of the chunk for the seed's parameter gradients (0: none).
constexpr float seed_gradient_scale(SeedState s, float requested) {
  if (s == SeedState::TRAINING) return 1.0f;
  return seed_trains(s) ? effective_alpha(s, requested) : 0.0f;
}

}  // namespace esper::kernels
