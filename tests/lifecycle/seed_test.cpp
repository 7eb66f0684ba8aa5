// One seed: minimum steps, guards at their boundaries, force, the reset, the record a transition
// leaves, and that a rejected transition changes nothing.
#include "lifecycle/seed.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lifecycle_helpers.hpp"

namespace esper::lifecycle {
namespace {

using S = State;
using testing::passing_metrics;
using testing::seed_in;
using testing::tick;

// Minimum-steps cases use targets without guards (or a complete ramp) so that only the minimum decides.
struct MinimumCase {
  S from;
  S to;
  std::uint32_t minimum;
};

LifecycleConfig short_ramp() {
  LifecycleConfig config;
  config.grafting.ramp_steps = 1;  // the ramp is complete after one step, long before GRAFTING's minimum
  return config;
}

const MinimumCase kMinimums[] = {
    {S::TRAINING, S::CULLED, 100},         {S::TRAINING, S::CANCELLED, 100}, {S::GRAFTING, S::STABILIZATION, 50},
    {S::STABILIZATION, S::EVALUATING, 20}, {S::EVALUATING, S::CULLED, 30},   {S::FINE_TUNING, S::CULLED, 50},
};

TEST(SeedTest, MinimumStepsRejectEarlyExit) {
  const SeedMetrics m = passing_metrics();
  for (const MinimumCase& c : kMinimums) {
    Seed seed = seed_in(c.from, short_ramp());
    tick(seed, c.minimum - 1);
    const Seed before = seed;
    const auto verdict = seed.transition(c.to, "too early", false, &m, 0);
    ASSERT_FALSE(verdict.has_value()) << name(c.from);
    EXPECT_EQ(verdict.error().rule, Rule::min_steps);
    EXPECT_EQ(verdict.error().message(), "min_steps: " + std::string(name(c.from)) + " needs " +
                                             std::to_string(c.minimum) + " steps in state, has " +
                                             std::to_string(c.minimum - 1));
    EXPECT_EQ(seed, before);
  }
}

TEST(SeedTest, MinimumStepsAcceptExitAtTheMinimum) {
  const SeedMetrics m = passing_metrics();
  for (const MinimumCase& c : kMinimums) {
    Seed seed = seed_in(c.from, short_ramp());
    tick(seed, c.minimum);
    const auto verdict = seed.transition(c.to, "on time", false, &m, 0);
    ASSERT_TRUE(verdict.has_value()) << verdict.error().message();
    EXPECT_EQ(seed.state(), c.to);
  }
}

TEST(SeedTest, ForceOverridesMinimumSteps) {
  const SeedMetrics m = passing_metrics();
  for (const MinimumCase& c : kMinimums) {
    Seed seed = seed_in(c.from, short_ramp());
    if (c.from == S::GRAFTING) tick(seed, 1);  // the ramp guard still applies under force
    const auto verdict = seed.transition(c.to, "forced", true, &m, 0);
    ASSERT_TRUE(verdict.has_value()) << verdict.error().message();
    EXPECT_EQ(seed.state(), c.to);
  }
}

TEST(SeedTest, RollbackIsExemptFromMinimumSteps) {
  for (const S from : {S::GRAFTING, S::STABILIZATION, S::EVALUATING, S::FINE_TUNING}) {
    Seed seed = seed_in(from);
    ASSERT_EQ(seed.steps_in_state(), 0U);
    const auto verdict = seed.transition(S::ROLLED_BACK, "regression", false, nullptr, 0);
    ASSERT_TRUE(verdict.has_value()) << verdict.error().message();
    EXPECT_EQ(seed.alpha(), 0.0F);
  }
}

TEST(SeedTest, MinimumStepsAreConfigurable) {
  LifecycleConfig config;
  config.minimum_steps.set(S::TRAINING, 3);
  config.minimum_steps.set(S::GERMINATED, 2);
  Seed seed = seed_in(S::GERMINATED, config);
  tick(seed, 1);
  EXPECT_EQ(seed.transition(S::TRAINING, "", false, nullptr, 0).error().rule, Rule::min_steps);
  tick(seed, 1);
  ASSERT_TRUE(seed.transition(S::TRAINING, "", false, nullptr, 0).has_value());
  tick(seed, 3);
  EXPECT_TRUE(seed.transition(S::CULLED, "", false, nullptr, 0).has_value());
}

TEST(SeedTest, ForceNeverOverridesGuards) {
  Seed seed = seed_in(S::TRAINING);
  SeedMetrics m = passing_metrics();
  m.shadow_loss = 2.0;
  const auto verdict = seed.transition(S::GRAFTING, "", true, &m, 0);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::guard_shadow_loss);
}

// --- guards, each at its boundary. Seeds have spent long enough in their state.

Expected<State, Rejection> attempt(S from, S to, const SeedMetrics& m, LifecycleConfig config = {}) {
  Seed seed = seed_in(from, config);
  tick(seed, 1000);
  return seed.transition(to, "guard test", false, &m, 0);
}

TEST(SeedTest, ShadowLossGuardNeedsTheMarginBelowChunkLoss) {
  LifecycleConfig config;
  config.guards.shadow_loss_margin = 0.25;  // exact in binary: the boundary is exactly 0.75
  SeedMetrics m = passing_metrics();
  m.chunk_loss = 1.0;
  m.shadow_loss = 0.75;
  EXPECT_TRUE(attempt(S::TRAINING, S::GRAFTING, m, config).has_value());
  m.shadow_loss = std::nextafter(0.75, 1.0);
  const auto verdict = attempt(S::TRAINING, S::GRAFTING, m, config);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::guard_shadow_loss);
}

TEST(SeedTest, ShadowLossGuardDefaultsToOnePercent) {
  SeedMetrics m = passing_metrics();
  m.chunk_loss = 0.96;
  m.shadow_loss = 0.95;  // the limit is 0.96 - 1% of 0.96 = 0.9504
  EXPECT_TRUE(attempt(S::TRAINING, S::GRAFTING, m).has_value());
  m.shadow_loss = 0.951;  // 0.94% below
  const auto verdict = attempt(S::TRAINING, S::GRAFTING, m);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().message(), "guard_shadow_loss: 0.951 is not 1% below chunk loss 0.96");
  m.shadow_loss = 0.96;
  EXPECT_FALSE(attempt(S::TRAINING, S::GRAFTING, m).has_value());
}

TEST(SeedTest, GuardsFailOnMissingOrNaNMetrics) {
  Seed seed = seed_in(S::TRAINING);
  tick(seed, 100);
  const auto none = seed.transition(S::GRAFTING, "", false, nullptr, 0);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message(), "guard_shadow_loss: TRAINING -> GRAFTING needs metrics, none were supplied");
  SeedMetrics unmeasured;  // NaN everywhere
  EXPECT_EQ(seed.transition(S::GRAFTING, "", false, &unmeasured, 0).error().rule, Rule::guard_shadow_loss);
  SeedMetrics nan_shadow = passing_metrics();
  nan_shadow.shadow_loss = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(seed.transition(S::GRAFTING, "", false, &nan_shadow, 0).has_value());
  EXPECT_FALSE(attempt(S::EVALUATING, S::FINE_TUNING, unmeasured).has_value());
  EXPECT_FALSE(attempt(S::FINE_TUNING, S::FOSSILIZED, unmeasured).has_value());
  EXPECT_EQ(seed.state(), S::TRAINING);
}

TEST(SeedTest, PerformanceGuardNeedsPositiveDelta) {
  SeedMetrics m = passing_metrics();
  m.stability = 0.8;
  m.performance_delta = 0.0;
  const auto zero = attempt(S::EVALUATING, S::FINE_TUNING, m);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().message(), "guard_performance_delta: 0 is not > 0");
  m.performance_delta = std::numeric_limits<double>::denorm_min();
  EXPECT_TRUE(attempt(S::EVALUATING, S::FINE_TUNING, m).has_value());
}

TEST(SeedTest, EvaluatingStabilityGuardIsInclusiveAtPointEight) {
  SeedMetrics m = passing_metrics();
  m.stability = 0.8;
  EXPECT_TRUE(attempt(S::EVALUATING, S::FINE_TUNING, m).has_value());
  m.stability = std::nextafter(0.8, 0.0);
  const auto verdict = attempt(S::EVALUATING, S::FINE_TUNING, m);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::guard_stability);
  EXPECT_EQ(verdict.error().message(), "guard_stability: 0.7999999999999999 is not >= 0.8 (EVALUATING -> FINE_TUNING)");
}

TEST(SeedTest, ImprovementGuardIsInclusiveAtOnePercent) {
  SeedMetrics m = passing_metrics();
  m.improvement = 0.01;
  EXPECT_TRUE(attempt(S::FINE_TUNING, S::FOSSILIZED, m).has_value());
  m.improvement = std::nextafter(0.01, 0.0);
  const auto verdict = attempt(S::FINE_TUNING, S::FOSSILIZED, m);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::guard_improvement);
}

TEST(SeedTest, FossilizingStabilityGuardIsInclusiveAtPointNineFive) {
  SeedMetrics m = passing_metrics();
  m.stability = 0.95;
  EXPECT_TRUE(attempt(S::FINE_TUNING, S::FOSSILIZED, m).has_value());
  m.stability = std::nextafter(0.95, 0.0);
  const auto verdict = attempt(S::FINE_TUNING, S::FOSSILIZED, m);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::guard_stability);
}

TEST(SeedTest, GuardThresholdsAreConfigurable) {
  LifecycleConfig config;
  config.guards.min_improvement = 0.2;
  config.guards.fossilizing_min_stability = 0.5;
  config.guards.min_performance_delta = 0.05;
  config.guards.evaluating_min_stability = 0.25;
  SeedMetrics m = passing_metrics();
  m.improvement = 0.1;
  m.stability = 0.6;
  EXPECT_EQ(attempt(S::FINE_TUNING, S::FOSSILIZED, m, config).error().rule, Rule::guard_improvement);
  m.improvement = 0.2;
  EXPECT_TRUE(attempt(S::FINE_TUNING, S::FOSSILIZED, m, config).has_value());
  m.performance_delta = 0.05;
  m.stability = 0.3;
  EXPECT_EQ(attempt(S::EVALUATING, S::FINE_TUNING, m, config).error().rule, Rule::guard_performance_delta);
  m.performance_delta = 0.06;
  EXPECT_TRUE(attempt(S::EVALUATING, S::FINE_TUNING, m, config).has_value());
}

TEST(SeedTest, UnguardedTransitionsNeedNoMetrics) {
  Seed seed;
  ASSERT_TRUE(seed.transition(S::GERMINATED, "", false, nullptr, 0).has_value());
  ASSERT_TRUE(seed.transition(S::CANCELLED, "", false, nullptr, 0).has_value());
  EXPECT_TRUE(seed.transition(S::DORMANT, "", false, nullptr, 0).has_value());
}

TEST(SeedTest, GraftingCannotEndBeforeTheRampCompletes) {
  LifecycleConfig config;
  config.grafting.ramp_steps = 80;  // longer than GRAFTING's minimum of 50
  Seed seed = seed_in(S::GRAFTING, config);
  tick(seed, 79);
  const auto early = seed.transition(S::STABILIZATION, "", true, nullptr, 0);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().message(), "guard_ramp: alpha 0.9875 has not reached 1");
  tick(seed, 1);
  EXPECT_EQ(seed.alpha(), 1.0F);
  EXPECT_TRUE(seed.transition(S::STABILIZATION, "", false, nullptr, 0).has_value());

  config.guards.require_complete_ramp = false;
  Seed lenient = seed_in(S::GRAFTING, config);
  tick(lenient, 50);
  EXPECT_TRUE(lenient.transition(S::STABILIZATION, "", false, nullptr, 0).has_value());
  EXPECT_EQ(lenient.alpha(), 1.0F);
}

// --- the record

TEST(SeedTest, TransitionRecordsParentHistoryAndResetsStepsInState) {
  Seed seed = seed_in(S::GERMINATED);
  tick(seed, 5);
  ASSERT_TRUE(seed.transition(S::TRAINING, "wake chunk 3", false, nullptr, 42).has_value());
  EXPECT_EQ(seed.state(), S::TRAINING);
  EXPECT_EQ(seed.parent_state(), S::GERMINATED);
  EXPECT_EQ(seed.steps_in_state(), 0U);
  EXPECT_EQ(seed.history().back(), (TransitionRecord{S::GERMINATED, S::TRAINING, 42, "wake chunk 3"}));
  EXPECT_EQ(seed.history().total(), 2U);
  tick(seed, 3);
  EXPECT_EQ(seed.steps_in_state(), 3U);
}

TEST(SeedTest, RejectedTransitionChangesNothing) {
  SeedMetrics failing = passing_metrics();
  failing.shadow_loss = 5.0;
  failing.performance_delta = -1.0;
  failing.improvement = 0.0;
  struct Case {
    S from;
    S to;
    std::uint32_t ticks;
    Rule rule;
  };
  const Case cases[] = {
      {S::DORMANT, S::GRAFTING, 0, Rule::table},
      {S::FOSSILIZED, S::DORMANT, 10, Rule::table},
      {S::TRAINING, S::CULLED, 12, Rule::min_steps},
      {S::TRAINING, S::GRAFTING, 100, Rule::guard_shadow_loss},
      {S::GRAFTING, S::STABILIZATION, 10, Rule::min_steps},
      {S::EVALUATING, S::FINE_TUNING, 30, Rule::guard_performance_delta},
      {S::FINE_TUNING, S::FOSSILIZED, 50, Rule::guard_improvement},
  };
  for (const Case& c : cases) {
    Seed seed = seed_in(c.from);
    tick(seed, c.ticks);
    seed.record_error();
    const Seed before = seed;
    const auto verdict = seed.transition(c.to, "should not stick", false, &failing, 99);
    ASSERT_FALSE(verdict.has_value()) << name(c.from) << " -> " << name(c.to);
    EXPECT_EQ(verdict.error().rule, c.rule) << verdict.error().message();
    EXPECT_EQ(seed, before) << name(c.from) << " -> " << name(c.to);
    EXPECT_EQ(seed.history().total(), before.history().total());
    EXPECT_EQ(seed.steps_in_state(), c.ticks);
    EXPECT_EQ(seed.error_count(), 1U);
  }
}

TEST(SeedTest, CheckDoesNotApply) {
  Seed seed = seed_in(S::TRAINING);
  tick(seed, 100);
  const SeedMetrics m = passing_metrics();
  const Seed before = seed;
  EXPECT_TRUE(seed.check(S::GRAFTING, false, &m).has_value());
  EXPECT_EQ(seed, before);
}

TEST(SeedTest, ResetFreesTheSlot) {
  for (const S from : {S::CULLED, S::CANCELLED, S::ROLLED_BACK}) {
    Seed seed = seed_in(from);
    GraftingConfig blueprint;
    blueprint.strategy = GraftingStrategy::ADAPTIVE;
    blueprint.ramp_steps = 7;
    seed.set_grafting(blueprint);
    seed.record_error();
    seed.record_error();
    tick(seed, 4);
    const auto total = seed.history().total();
    ASSERT_TRUE(seed.transition(S::DORMANT, "free slot", false, nullptr, 11).has_value()) << name(from);
    EXPECT_EQ(seed.state(), S::DORMANT);
    EXPECT_EQ(seed.parent_state(), from);
    EXPECT_EQ(seed.steps_in_state(), 0U);
    EXPECT_EQ(seed.error_count(), 0U);
    EXPECT_EQ(seed.grafting(), GraftingConfig{});
    EXPECT_EQ(seed.grafting_progress(), GraftingProgress{});
    EXPECT_EQ(seed.alpha(), 0.0F);
    EXPECT_EQ(seed.history().total(), total + 1);
    EXPECT_EQ(seed.history().back(), (TransitionRecord{from, S::DORMANT, 11, "free slot"}));
    // and the slot can start a new life
    EXPECT_TRUE(seed.transition(S::GERMINATED, "", false, nullptr, 12).has_value());
  }
}

TEST(SeedTest, FossilizedIsForever) {
  Seed seed = seed_in(S::FOSSILIZED);
  tick(seed, 10'000);
  const SeedMetrics m = passing_metrics();
  for (const S to : kAllStates) EXPECT_FALSE(seed.transition(to, "", true, &m, 0).has_value()) << name(to);
  EXPECT_EQ(seed.alpha(), 1.0F);
}

TEST(SeedTest, EnteringGraftingRestartsTheRamp) {
  Seed seed = seed_in(S::GRAFTING);
  tick(seed, 10);
  EXPECT_GT(seed.alpha(), 0.0F);
  ASSERT_TRUE(seed.transition(S::ROLLED_BACK, "", false, nullptr, 0).has_value());
  ASSERT_TRUE(seed.transition(S::DORMANT, "", false, nullptr, 0).has_value());
  testing::drive(seed, S::GRAFTING);
  EXPECT_EQ(seed.alpha(), 0.0F);
  EXPECT_EQ(seed.grafting_progress().progress, 0.0);
}

TEST(SeedTest, HistoryRingKeepsTheNewestTransitions) {
  LifecycleConfig config;
  config.history_capacity = 4;
  Seed seed(config);
  // DORMANT -> GERMINATED -> CANCELLED -> DORMANT, three times: nine transitions.
  std::uint64_t step = 0;
  for (int round = 0; round < 3; ++round)
    for (const S to : {S::GERMINATED, S::CANCELLED, S::DORMANT})
      ASSERT_TRUE(seed.transition(to, "r" + std::to_string(round), false, nullptr, step++).has_value());
  const HistoryRing& h = seed.history();
  EXPECT_EQ(h.capacity(), 4U);
  EXPECT_EQ(h.size(), 4U);
  EXPECT_EQ(h.total(), 9U);
  const auto records = h.records();
  ASSERT_EQ(records.size(), 4U);
  EXPECT_EQ(records[0], (TransitionRecord{S::CANCELLED, S::DORMANT, 5, "r1"}));
  EXPECT_EQ(records[1], (TransitionRecord{S::DORMANT, S::GERMINATED, 6, "r2"}));
  EXPECT_EQ(records[3], (TransitionRecord{S::CANCELLED, S::DORMANT, 8, "r2"}));
  EXPECT_EQ(h.back(), records[3]);
  EXPECT_THROW((void)h[4], Error);
}

TEST(SeedTest, HistoryRingBelowCapacityKeepsEverything) {
  HistoryRing ring(3);
  EXPECT_TRUE(ring.empty());
  EXPECT_THROW((void)ring.back(), Error);
  ring.push({S::DORMANT, S::GERMINATED, 1, "a"});
  ring.push({S::GERMINATED, S::TRAINING, 2, "b"});
  EXPECT_EQ(ring.size(), 2U);
  EXPECT_EQ(ring[0].reason, "a");
  EXPECT_EQ(ring[1].reason, "b");
  ring.push({S::TRAINING, S::CULLED, 3, "c"});
  ring.push({S::CULLED, S::DORMANT, 4, "d"});
  EXPECT_EQ(ring.size(), 3U);
  EXPECT_EQ(ring[0].reason, "b");
  EXPECT_EQ(ring.back().reason, "d");
  EXPECT_THROW((void)HistoryRing(0), Error);
}

TEST(SeedTest, InvalidConfigIsAFault) {
  LifecycleConfig config;
  config.history_capacity = 0;
  EXPECT_THROW((void)Seed{config}, Error);
  config = {};
  config.guards.shadow_loss_margin = 1.5;
  EXPECT_TRUE(check_config(config).has_value());
  EXPECT_THROW((void)Seed{config}, Error);
  config = {};
  config.grafting.ramp_steps = 0;
  EXPECT_THROW((void)Seed{config}, Error);
  EXPECT_FALSE(check_config(LifecycleConfig{}).has_value());
}

}  // namespace
}  // namespace esper::lifecycle
