// Grafting strategies: the ramp's shape, the drift hold, the adaptive gain, and that a seed in
// GRAFTING follows its strategy tick by tick.
#include "lifecycle/grafting.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lifecycle/seed.hpp"
#include "lifecycle_helpers.hpp"

namespace esper::lifecycle {
namespace {

GraftingConfig config_for(GraftingStrategy strategy, std::uint32_t ramp) {
  GraftingConfig c;
  c.strategy = strategy;
  c.ramp_steps = ramp;
  return c;
}

// α after each of `inputs.size()` steps.
std::vector<double> run(const GraftingConfig& config, const std::vector<GraftingInput>& inputs) {
  std::vector<double> alphas;
  GraftingProgress p;
  for (const GraftingInput& in : inputs) {
    p = advance(config, p, in);
    alphas.push_back(p.alpha);
  }
  return alphas;
}

std::vector<GraftingInput> steady(std::size_t n, double loss = 1.0) {
  return std::vector<GraftingInput>(n, {0.0, loss});
}

TEST(GraftingTest, LinearReachesExactlyOneAfterRampSteps) {
  for (const std::uint32_t ramp : {1U, 3U, 7U, 50U, 1000U}) {
    const auto alphas = run(config_for(GraftingStrategy::LINEAR, ramp), steady(ramp + 5));
    for (std::uint32_t k = 1; k < ramp; ++k) {
      EXPECT_LT(alphas[k - 1], 1.0) << "R=" << ramp << " k=" << k;
      EXPECT_EQ(alphas[k - 1], static_cast<double>(k) / ramp);
    }
    EXPECT_EQ(alphas[ramp - 1], 1.0) << "R=" << ramp;
    for (std::size_t k = ramp; k < alphas.size(); ++k) EXPECT_EQ(alphas[k], 1.0);
  }
}

TEST(GraftingTest, LinearIsStrictlyMonotoneUntilOne) {
  const auto alphas = run(config_for(GraftingStrategy::LINEAR, 37), steady(37));
  double previous = 0.0;
  for (const double a : alphas) {
    EXPECT_GT(a, previous);
    previous = a;
  }
}

TEST(GraftingTest, LinearIgnoresDriftAndLoss) {
  std::vector<GraftingInput> noisy;
  for (int i = 0; i < 10; ++i) noisy.push_back({i % 2 ? 1.0 : 0.0, i * 3.0});
  EXPECT_EQ(run(config_for(GraftingStrategy::LINEAR, 10), noisy),
            run(config_for(GraftingStrategy::LINEAR, 10), steady(10)));
}

TEST(GraftingTest, DriftControlledHoldsWhileDriftExceedsThreshold) {
  GraftingConfig c = config_for(GraftingStrategy::DRIFT_CONTROLLED, 4);
  c.drift_threshold = 0.5;
  GraftingProgress p;
  p = advance(c, p, {0.1, 1.0});
  EXPECT_EQ(p.alpha, 0.25);
  p = advance(c, p, {0.75, 1.0});  // above: hold
  EXPECT_EQ(p.alpha, 0.25);
  p = advance(c, p, {std::numeric_limits<double>::quiet_NaN(), 1.0});  // unknown drift: hold
  EXPECT_EQ(p.alpha, 0.25);
  EXPECT_EQ(p.held_steps, 2U);
  p = advance(c, p, {0.5, 1.0});  // at the threshold: advance
  EXPECT_EQ(p.alpha, 0.5);
  p = advance(c, p, {0.0, 1.0});
  p = advance(c, p, {0.0, 1.0});
  EXPECT_EQ(p.alpha, 1.0);
  EXPECT_EQ(p.held_steps, 2U);
}

TEST(GraftingTest, DriftControlledWithoutDriftIsLinear) {
  EXPECT_EQ(run(config_for(GraftingStrategy::DRIFT_CONTROLLED, 9), steady(12)),
            run(config_for(GraftingStrategy::LINEAR, 9), steady(12)));
}

TEST(GraftingTest, AdaptiveWithFlatLossIsLinear) {
  EXPECT_EQ(run(config_for(GraftingStrategy::ADAPTIVE, 20), steady(25, 0.7)),
            run(config_for(GraftingStrategy::LINEAR, 20), steady(25)));
}

TEST(GraftingTest, AdaptiveSpeedsUpWhileLossFalls) {
  const GraftingConfig c = config_for(GraftingStrategy::ADAPTIVE, 40);
  std::vector<GraftingInput> falling;
  for (int i = 0; i < 40; ++i) falling.push_back({0.0, 1.0 - 0.01 * i});
  const auto alphas = run(c, falling);
  const auto done = std::find(alphas.begin(), alphas.end(), 1.0);
  ASSERT_NE(done, alphas.end());
  EXPECT_LT(done - alphas.begin() + 1, 40);  // sooner than the linear ramp
  for (std::size_t k = 1; k < alphas.size(); ++k) EXPECT_GE(alphas[k], alphas[k - 1]);

  GraftingProgress p;
  for (const auto& in : falling) p = advance(c, p, in);
  EXPECT_EQ(p.gain, c.gain_max);
}

TEST(GraftingTest, AdaptiveSlowsDownWhileLossRisesButStillCompletes) {
  const GraftingConfig c = config_for(GraftingStrategy::ADAPTIVE, 10);
  std::vector<GraftingInput> rising;
  for (int i = 0; i < 100; ++i) rising.push_back({0.0, 1.0 + 0.1 * i});
  const auto alphas = run(c, rising);
  const auto linear = run(config_for(GraftingStrategy::LINEAR, 10), steady(100));
  for (std::size_t k = 1; k < alphas.size(); ++k) {
    EXPECT_GE(alphas[k], alphas[k - 1]);
    EXPECT_LE(alphas[k], linear[k]);
  }
  EXPECT_LT(alphas[9], 1.0);
  // the gain floors at gain_min = 0.25, so the ramp completes within ceil(R / gain_min) = 40 steps
  EXPECT_EQ(alphas[39], 1.0);
}

TEST(GraftingTest, AdaptiveKeepsItsGainWhenLossIsUnknown) {
  const GraftingConfig c = config_for(GraftingStrategy::ADAPTIVE, 10);
  GraftingProgress p;
  p = advance(c, p, {0.0, 1.0});
  p = advance(c, p, {0.0, 0.5});
  EXPECT_EQ(p.gain, c.gain_up);
  const GraftingProgress before = p;
  p = advance(c, p, {0.0, std::numeric_limits<double>::quiet_NaN()});
  EXPECT_EQ(p.gain, before.gain);
  EXPECT_EQ(p.last_loss, before.last_loss);
  EXPECT_EQ(p.progress, before.progress + before.gain);
}

TEST(GraftingTest, StrategiesAreDeterministic) {
  std::vector<GraftingInput> inputs;
  double loss = 1.0;
  for (int i = 0; i < 60; ++i) {
    loss *= (i % 3 == 0) ? 1.02 : 0.97;
    inputs.push_back({(i % 5) * 0.004, loss});
  }
  for (const auto s : {GraftingStrategy::LINEAR, GraftingStrategy::DRIFT_CONTROLLED, GraftingStrategy::ADAPTIVE}) {
    EXPECT_EQ(run(config_for(s, 30), inputs), run(config_for(s, 30), inputs));
  }
}

TEST(GraftingTest, InvalidConfigsAreNamed) {
  GraftingConfig c;
  EXPECT_FALSE(check_config(c).has_value());
  c.ramp_steps = 0;
  EXPECT_EQ(check_config(c).value_or(""), "grafting ramp_steps must be > 0");
  c = {};
  c.gain_min = 0.0;
  EXPECT_TRUE(check_config(c).has_value());
  c = {};
  c.strategy = static_cast<GraftingStrategy>(9);
  EXPECT_TRUE(check_config(c).has_value());
  c = {};
  c.drift_threshold = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(check_config(c).has_value());
  Seed seed;
  EXPECT_THROW(seed.set_grafting(GraftingConfig{GraftingStrategy::LINEAR, 0}), Error);
}

TEST(GraftingTest, SeedRampsOnlyInGrafting) {
  LifecycleConfig config;
  config.grafting = config_for(GraftingStrategy::LINEAR, 4);
  Seed seed = testing::seed_in(State::TRAINING, config);
  testing::tick(seed, 3);
  EXPECT_EQ(seed.alpha(), 0.0F);
  EXPECT_EQ(seed.grafting_progress().progress, 0.0);
  const SeedMetrics m = testing::passing_metrics();
  ASSERT_TRUE(seed.transition(State::GRAFTING, "", true, &m, 0).has_value());
  const float expected[] = {0.25F, 0.5F, 0.75F, 1.0F, 1.0F};
  for (const float a : expected) {
    seed.tick(&m);
    EXPECT_EQ(seed.alpha(), a);
  }
}

TEST(GraftingTest, SeedUsesItsBlueprintStrategy) {
  Seed seed = testing::seed_in(State::GRAFTING);
  GraftingConfig drift = config_for(GraftingStrategy::DRIFT_CONTROLLED, 2);
  drift.drift_threshold = 0.1;
  seed.set_grafting(drift);
  SeedMetrics m = testing::passing_metrics();
  m.weight_drift = 0.2;
  seed.tick(&m);
  EXPECT_EQ(seed.alpha(), 0.0F);
  m.weight_drift = 0.05;
  seed.tick(&m);
  EXPECT_EQ(seed.alpha(), 0.5F);
  seed.tick(nullptr);  // nothing measured: no drift
  EXPECT_EQ(seed.alpha(), 1.0F);
}

}  // namespace
}  // namespace esper::lifecycle
