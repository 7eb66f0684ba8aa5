// Determinism, shared by the CPU and CUDA driver tests: two drivers from one config step in
// lockstep with bit-equal losses and states, and end with equal digests and final losses.
#pragma once

#include <gtest/gtest.h>

#include "morphogenesis/morphogenesis.hpp"

namespace esper::morphogenesis::testing {

// Returns the first driver's summary, for further checks.
inline Summary expect_identical_runs(const Config& config) {
  Driver first(config), second(config);
  for (std::uint64_t s = 0; s < config.steps; ++s) {
    const StepReport a = first.step(), b = second.step();
    EXPECT_EQ(a.loss, b.loss) << "step " << s;
    EXPECT_EQ(a.states, b.states) << "step " << s;
    if (a.loss != b.loss || a.states != b.states) break;
  }
  EXPECT_EQ(first.digest(), second.digest());
  EXPECT_EQ(first.population().digest(), second.population().digest());
  const Summary a = first.summary(), b = second.summary();
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(a.final_loss, b.final_loss);
  return a;
}

}  // namespace esper::morphogenesis::testing
