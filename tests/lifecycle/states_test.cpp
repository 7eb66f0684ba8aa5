// The transition table, checked for every (state, target) pair against docs/design.md §4 written out
// independently here, and a seed's α by the kernels' per-state rule (docs/design.md §5), which
// tests/kernels checks state by state.
#include "lifecycle/states.hpp"

#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "lifecycle_helpers.hpp"

namespace esper::lifecycle {
namespace {

using S = State;

const std::set<std::pair<S, S>>& design_table() {
  static const std::set<std::pair<S, S>> table = {
      {S::DORMANT, S::GERMINATED},        {S::GERMINATED, S::TRAINING},    {S::GERMINATED, S::CANCELLED},
      {S::TRAINING, S::GRAFTING},         {S::TRAINING, S::CULLED},        {S::TRAINING, S::CANCELLED},
      {S::GRAFTING, S::STABILIZATION},    {S::GRAFTING, S::ROLLED_BACK},   {S::STABILIZATION, S::EVALUATING},
      {S::STABILIZATION, S::ROLLED_BACK}, {S::EVALUATING, S::FINE_TUNING}, {S::EVALUATING, S::CULLED},
      {S::EVALUATING, S::ROLLED_BACK},    {S::FINE_TUNING, S::FOSSILIZED}, {S::FINE_TUNING, S::CULLED},
      {S::FINE_TUNING, S::ROLLED_BACK},   {S::CULLED, S::DORMANT},         {S::CANCELLED, S::DORMANT},
      {S::ROLLED_BACK, S::DORMANT},
  };
  return table;
}

TEST(StatesTest, WireValuesMatchTheDesign) {
  for (std::size_t i = 0; i < kStateCount; ++i) EXPECT_EQ(index_of(kAllStates[i]), i);
  EXPECT_EQ(static_cast<int>(S::ROLLED_BACK), 10);
  EXPECT_FALSE(is_valid(static_cast<S>(11)));
  EXPECT_EQ(name(S::FINE_TUNING), "FINE_TUNING");
  EXPECT_EQ(name(static_cast<S>(200)), "UNKNOWN");
}

TEST(StatesTest, TerminalStatesAreSevenToTen) {
  for (const S s : kAllStates) EXPECT_EQ(is_terminal(s), index_of(s) >= 7) << name(s);
}

TEST(StatesTest, TableMatchesDesignForEveryPair) {
  int allowed = 0;
  for (const S from : kAllStates) {
    for (const S to : kAllStates) {
      const bool expected = design_table().count({from, to}) == 1;
      EXPECT_EQ(is_transition(from, to), expected) << name(from) << " -> " << name(to);
      allowed += expected ? 1 : 0;
    }
  }
  EXPECT_EQ(allowed, 19);
}

// The rules with every other obstacle removed (many steps in state, passing metrics, complete
// ramp): exactly the table decides.
TEST(StatesTest, CheckTransitionAcceptsExactlyTheTable) {
  const LifecycleConfig config;
  const SeedMetrics metrics = testing::passing_metrics();
  GraftingProgress done;
  done.alpha = 1.0;
  for (const S from : kAllStates) {
    for (const S to : kAllStates) {
      const auto verdict = check_transition(config, from, 1'000'000, done, to, false, &metrics);
      if (design_table().count({from, to}) == 1) {
        ASSERT_TRUE(verdict.has_value()) << verdict.error().message();
        EXPECT_EQ(*verdict, to);
      } else {
        ASSERT_FALSE(verdict.has_value()) << name(from) << " -> " << name(to);
        EXPECT_EQ(verdict.error().rule, Rule::table);
        EXPECT_EQ(verdict.error().message(),
                  "table: " + std::string(name(from)) + " -> " + std::string(name(to)) + " is not a transition");
      }
    }
  }
}

// The same through real seeds driven into each state; force never overrides the table.
TEST(StatesTest, SeedTransitionsFollowTheTableEvenWhenForced) {
  const SeedMetrics metrics = testing::passing_metrics();
  for (const S from : kAllStates) {
    const Seed start = testing::seed_in(from);
    for (const S to : kAllStates) {
      Seed seed = start;
      testing::tick(seed, 200);  // past every minimum (and the ramp, when in GRAFTING)
      const auto verdict = seed.transition(to, "table test", /*force=*/true, &metrics, 7);
      const bool expected = design_table().count({from, to}) == 1;
      EXPECT_EQ(verdict.has_value(), expected) << name(from) << " -> " << name(to);
      EXPECT_EQ(seed.state(), expected ? to : from);
      if (!expected) {
        EXPECT_EQ(verdict.error().rule, Rule::table);
      }
    }
  }
}

TEST(StatesTest, UnknownStateValueIsRejectedByItsOwnRule) {
  const SeedMetrics metrics = testing::passing_metrics();
  Seed seed;
  const auto verdict = seed.transition(static_cast<S>(42), "bad wire value", true, &metrics, 0);
  ASSERT_FALSE(verdict.has_value());
  EXPECT_EQ(verdict.error().rule, Rule::unknown_state);
  EXPECT_EQ(verdict.error().message(), "unknown_state: state 42 is not one of DORMANT..ROLLED_BACK");
  EXPECT_EQ(seed, Seed());
}

TEST(StatesTest, IndicesOfStatesOutOfRangeReachNoTable) {
  for (std::size_t i = 0; i < kStateCount; ++i) EXPECT_EQ(index_of_checked(kAllStates[i]), i);
  for (const int v : {11, 42, 200, 255}) EXPECT_EQ(index_of_checked(static_cast<S>(v)), kStateCount) << v;
  MinimumSteps minimum;
  const auto before = minimum;
  minimum.set(static_cast<S>(200), 7);  // ignored
  EXPECT_EQ(minimum, before);
  EXPECT_EQ(minimum.in(static_cast<S>(200)), 0u);
  EXPECT_EQ(minimum.in(S::TRAINING), 100u);
}

TEST(StatesTest, ResetIsTheOnlyWayBackToDormant) {
  for (const S from : kAllStates) {
    EXPECT_EQ(is_reset(from, S::DORMANT), from == S::CULLED || from == S::CANCELLED || from == S::ROLLED_BACK)
        << name(from);
  }
  EXPECT_FALSE(is_transition(S::FOSSILIZED, S::DORMANT));
}

// The per-state rule itself is the kernels' (kernels/seed_rules.hpp, tested in tests/kernels); a
// seed's α is that rule applied to its state and ramp.
TEST(StatesTest, SeedAlphaFollowsTheKernelsRule) {
  for (const S s : kAllStates) {
    const Seed seed = testing::seed_in(s);
    EXPECT_EQ(seed.alpha(), kernels::effective_alpha(s, 0.0F)) << name(s);
  }
}

static_assert(is_transition(S::DORMANT, S::GERMINATED) && !is_transition(S::DORMANT, S::DORMANT));
static_assert(kernels::effective_alpha(S::FOSSILIZED, 0.0F) == 1.0F && !kernels::seed_trains(S::FOSSILIZED));

}  // namespace
}  // namespace esper::lifecycle
