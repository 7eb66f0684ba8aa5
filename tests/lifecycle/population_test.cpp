// Population commands: selection, mixed outcomes reported seed by seed, no partial application
// on a fault, ticks, and the replica digest.
#include "lifecycle/population.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "lifecycle_helpers.hpp"

namespace esper::lifecycle {
namespace {

using S = State;
using testing::passing_metrics;

std::vector<SeedMetrics> all_passing(std::uint32_t n) { return std::vector<SeedMetrics>(n, passing_metrics()); }

void tick(Population& p, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) p.tick();
}

TEST(SelectionTest, ResolvesSortedUniqueAndClipsRanges) {
  Selection s = Selection::ids({5, 1, 5, 12});
  s.add_range(3, 6).add_range(9, 4'000'000'000U).add_range(7, 2);
  EXPECT_EQ(s.resolve(10), (std::vector<std::uint32_t>{1, 3, 4, 5, 6, 9, 12}));
  EXPECT_TRUE(s.contains(12));
  EXPECT_FALSE(s.contains(2));
  EXPECT_EQ(Selection::all().resolve(3), (std::vector<std::uint32_t>{0, 1, 2}));
  EXPECT_TRUE(Selection{}.resolve(3).empty());
  EXPECT_TRUE(Selection::range(5, 9).resolve(5).empty());
}

TEST(PopulationTest, StartsDormantAtTheStartStep) {
  const Population p(6, {}, 1000);
  EXPECT_EQ(p.size(), 6U);
  EXPECT_EQ(p.step(), 1000U);
  EXPECT_EQ(p.count_by_state()[index_of(S::DORMANT)], 6U);
  EXPECT_THROW((void)p.seed(6), Error);
}

TEST(PopulationTest, TransitionAppliesToEveryValidSeedAndReportsTheOthers) {
  Population p(6);
  // seeds 0..3 germinated; 1..3 training; 3 culled
  ASSERT_TRUE(p.transition(Selection::range(0, 3), S::GERMINATED, "wake", false).all_applied());
  ASSERT_TRUE(p.transition(Selection::range(1, 3), S::TRAINING, "train", false).all_applied());
  tick(p, 100);
  ASSERT_TRUE(p.transition(Selection::ids({3}), S::CULLED, "cull", false).all_applied());

  auto metrics = all_passing(6);
  metrics[2].shadow_loss = 1.0;  // not below chunk loss
  const TransitionReport report = p.transition(Selection::all().add_id(9), S::GRAFTING, "graft", false, metrics);

  ASSERT_EQ(report.outcomes.size(), 6U);  // `all` resolves to the population; the extra id is absorbed
  EXPECT_EQ(report.applied_count(), 1U);
  EXPECT_EQ(report.rejected_count(), 5U);
  const auto rule_of = [&](std::uint32_t seed) { return report.outcomes[seed].rejection->rule; };
  EXPECT_EQ(rule_of(0), Rule::table);  // GERMINATED
  EXPECT_TRUE(report.outcomes[1].applied());
  EXPECT_EQ(report.outcomes[1], (SeedOutcome{1, S::TRAINING, S::GRAFTING, std::nullopt}));
  EXPECT_EQ(rule_of(2), Rule::guard_shadow_loss);
  EXPECT_EQ(rule_of(3), Rule::table);  // CULLED
  EXPECT_EQ(rule_of(4), Rule::table);  // DORMANT
  EXPECT_EQ(report.outcomes[2].from, S::TRAINING);
  EXPECT_EQ(report.outcomes[2].to, S::GRAFTING);

  EXPECT_EQ(p.seed(1).state(), S::GRAFTING);
  EXPECT_EQ(p.seed(2).state(), S::TRAINING);
  EXPECT_EQ(p.seed(1).history().back(), (TransitionRecord{S::TRAINING, S::GRAFTING, 100, "graft"}));
}

TEST(PopulationTest, UnknownSeedIdsAreReportedIndividually) {
  Population p(4);
  const TransitionReport report = p.transition(Selection::ids({1, 7}), S::GERMINATED, "", false);
  ASSERT_EQ(report.outcomes.size(), 2U);
  EXPECT_TRUE(report.outcomes[0].applied());
  EXPECT_EQ(report.outcomes[1].seed, 7U);
  EXPECT_EQ(report.outcomes[1].rejection->message(), "no_such_seed: seed 7 is not in a population of 4");
  EXPECT_EQ(p.seed(1).state(), S::GERMINATED);
}

TEST(PopulationTest, MinimumsAndForceApplyPerSeed) {
  Population p(3);
  ASSERT_TRUE(p.transition(Selection::all(), S::GERMINATED, "", false).all_applied());
  ASSERT_TRUE(p.transition(Selection::ids({0}), S::TRAINING, "", false).all_applied());
  tick(p, 60);
  ASSERT_TRUE(p.transition(Selection::ids({1}), S::TRAINING, "", false).all_applied());
  tick(p, 40);  // seed 0: 100 steps in TRAINING, seed 1: 40
  const auto early = p.transition(Selection::range(0, 1), S::CULLED, "", false);
  EXPECT_TRUE(early.outcomes[0].applied());
  EXPECT_EQ(early.outcomes[1].rejection->message(), "min_steps: TRAINING needs 100 steps in state, has 40");
  EXPECT_TRUE(p.transition(Selection::ids({1}), S::CULLED, "", true).all_applied());
}

TEST(PopulationTest, RejectedSeedsAreUnchanged) {
  Population p(4);
  ASSERT_TRUE(p.transition(Selection::ids({0, 1}), S::GERMINATED, "", false).all_applied());
  tick(p, 3);
  const Population before = p;
  const auto report = p.transition(Selection::all(), S::TRAINING, "", false);
  EXPECT_EQ(report.applied_count(), 2U);
  for (const std::uint32_t id : {2U, 3U}) EXPECT_EQ(p.seed(id), before.seed(id));
}

TEST(PopulationTest, GuardedTransitionWithoutMetricsIsRejected) {
  Population p(2);
  ASSERT_TRUE(p.transition(Selection::all(), S::GERMINATED, "", false).all_applied());
  ASSERT_TRUE(p.transition(Selection::all(), S::TRAINING, "", false).all_applied());
  tick(p, 100);
  const auto report = p.transition(Selection::all(), S::GRAFTING, "", false);
  EXPECT_EQ(report.applied_count(), 0U);
  EXPECT_EQ(report.outcomes[0].rejection->rule, Rule::guard_shadow_loss);
}

TEST(PopulationTest, MetricsOfTheWrongSizeAreAFaultAndChangeNothing) {
  Population p(3);
  const Population before = p;
  const auto metrics = all_passing(2);
  EXPECT_THROW((void)p.transition(Selection::all(), S::GERMINATED, "", false, metrics), Error);
  EXPECT_THROW(p.tick(metrics), Error);
  EXPECT_EQ(p.digest(), before.digest());
  for (std::uint32_t id = 0; id < 3; ++id) EXPECT_EQ(p.seed(id), before.seed(id));
}

TEST(PopulationTest, CheckReportsWithoutApplying) {
  Population p(3);
  const auto report = p.check(Selection::all(), S::GERMINATED, false);
  EXPECT_TRUE(report.all_applied());
  EXPECT_EQ(p.count_by_state()[index_of(S::DORMANT)], 3U);
}

TEST(PopulationTest, TickAdvancesStepsAndGraftingRamps) {
  LifecycleConfig config;
  config.grafting.ramp_steps = 4;
  Population p(2, config);
  ASSERT_TRUE(p.transition(Selection::all(), S::GERMINATED, "", false).all_applied());
  ASSERT_TRUE(p.transition(Selection::all(), S::TRAINING, "", false).all_applied());
  const auto metrics = all_passing(2);
  ASSERT_TRUE(p.transition(Selection::ids({0}), S::GRAFTING, "", true, metrics).all_applied());
  p.tick(metrics);
  p.tick();
  EXPECT_EQ(p.step(), 2U);
  EXPECT_EQ(p.seed(0).steps_in_state(), 2U);
  EXPECT_EQ(p.seed(0).alpha(), 0.5F);
  EXPECT_EQ(p.seed(1).alpha(), 0.0F);
  const auto counts = p.count_by_state();
  EXPECT_EQ(counts[index_of(S::GRAFTING)], 1U);
  EXPECT_EQ(counts[index_of(S::TRAINING)], 1U);
}

// Two replicas that apply the same commands at the same steps agree; any difference shows.
TEST(PopulationTest, DigestIsEqualOnReplicasAndSensitiveToDifferences) {
  const auto script = [](Population& p, bool variant) {
    (void)p.transition(Selection::range(0, 5), S::GERMINATED, "", false);
    (void)p.transition(Selection::range(0, 3), S::TRAINING, "", false);
    for (int i = 0; i < 100; ++i) p.tick();
    (void)p.transition(Selection::ids({1, 2}), S::GRAFTING, "", false, all_passing(p.size()));
    for (int i = 0; i < (variant ? 11 : 10); ++i) p.tick();
  };
  Population a(8);
  Population b(8);
  script(a, false);
  script(b, false);
  EXPECT_EQ(a.digest(), b.digest());

  Population c(8);
  script(c, true);  // one more step
  EXPECT_NE(a.digest(), c.digest());

  Population d = a;
  (void)d.transition(Selection::ids({0}), S::CULLED, "", false);
  EXPECT_NE(a.digest(), d.digest());

  Population f(8);  // same step and states as g, but seed 0 entered GERMINATED one step later
  Population g(8);
  (void)f.transition(Selection::ids({0}), S::GERMINATED, "", false);
  f.tick();
  f.tick();
  g.tick();
  (void)g.transition(Selection::ids({0}), S::GERMINATED, "", false);
  g.tick();
  ASSERT_EQ(f.step(), g.step());
  EXPECT_NE(f.digest(), g.digest());

  LifecycleConfig slower;
  slower.grafting.ramp_steps = 60;  // same states and steps, different α
  Population e(8, slower);
  script(e, false);
  EXPECT_NE(a.digest(), e.digest());
}

}  // namespace
}  // namespace esper::lifecycle
