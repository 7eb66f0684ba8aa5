// The seed lifecycle state (docs/design.md §4) as the kernels see it: esper::wire::SeedState, generated
// from fbs/common.fbs. The standalone kernels build (kernels/CMakeLists.txt used as a top-level
// project, for GPU machines without FlatBuffers) declares the same enum here instead; the full build
// checks that both agree (kernels/seed_layer.cpp).
#pragma once

#include <cstdint>

#if defined(ESPER_KERNELS_STANDALONE)
namespace esper::wire {
enum class SeedState : std::uint8_t {
  DORMANT = 0, GERMINATED = 1, TRAINING = 2, GRAFTING = 3, STABILIZATION = 4, EVALUATING = 5,
  FINE_TUNING = 6, FOSSILIZED = 7, CULLED = 8, CANCELLED = 9, ROLLED_BACK = 10, MIN = DORMANT, MAX = ROLLED_BACK
};
}  // namespace esper::wire
#else
#include "fbs/common_generated.h"
#endif

namespace esper::kernels {
using SeedState = wire::SeedState;
inline constexpr int kSeedStateCount = 11;
}  // namespace esper::kernels
