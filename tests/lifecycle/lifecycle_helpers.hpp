// Shared helpers for the lifecycle tests: metrics that pass every guard and a way to put a seed
// in any state through legal transitions.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "lifecycle/seed.hpp"

namespace esper::lifecycle::testing {

inline SeedMetrics passing_metrics() {
  SeedMetrics m;
  m.chunk_loss = 1.0;
  m.shadow_loss = 0.5;
  m.performance_delta = 0.1;
  m.stability = 1.0;
  m.improvement = 0.5;
  m.weight_drift = 0.0;
  return m;
}

// The legal path from DORMANT to `target`.
inline std::vector<State> path_to(State target) {
  using S = State;
  switch (target) {
    case S::DORMANT:
      return {};
    case S::GERMINATED:
      return {S::GERMINATED};
    case S::TRAINING:
      return {S::GERMINATED, S::TRAINING};
    case S::GRAFTING:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING};
    case S::STABILIZATION:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING, S::STABILIZATION};
    case S::EVALUATING:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING, S::STABILIZATION, S::EVALUATING};
    case S::FINE_TUNING:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING, S::STABILIZATION, S::EVALUATING, S::FINE_TUNING};
    case S::FOSSILIZED:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING, S::STABILIZATION, S::EVALUATING, S::FINE_TUNING, S::FOSSILIZED};
    case S::CULLED:
      return {S::GERMINATED, S::TRAINING, S::CULLED};
    case S::CANCELLED:
      return {S::GERMINATED, S::CANCELLED};
    case S::ROLLED_BACK:
      return {S::GERMINATED, S::TRAINING, S::GRAFTING, S::ROLLED_BACK};
  }
  return {};
}

// Walks `seed` from DORMANT to `target` (forced past minimums, completing the grafting ramp).
// The seed arrives with 0 steps in `target`.
inline void drive(Seed& seed, State target) {
  const SeedMetrics m = passing_metrics();
  for (const State next : path_to(target)) {
    if (next == State::STABILIZATION)
      for (std::uint32_t i = 0; i < seed.grafting().ramp_steps; ++i) seed.tick(&m);
    const auto r = seed.transition(next, "drive", /*force=*/true, &m, 0);
    ASSERT_TRUE(r.has_value()) << r.error().message();
  }
  ASSERT_EQ(seed.state(), target);
}

inline Seed seed_in(State target, const LifecycleConfig& config = {}) {
  Seed seed(config);
  drive(seed, target);
  return seed;
}

inline void tick(Seed& seed, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) seed.tick();
}

}  // namespace esper::lifecycle::testing
