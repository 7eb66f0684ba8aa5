// Lifecycle <-> wire: seed sets, outcomes, command status, snapshot records, blueprint grafting.
#include "lifecycle/wire_convert.hpp"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>

#include <memory>

#include "lifecycle_helpers.hpp"

namespace esper::lifecycle {
namespace {

using S = State;

TEST(WireConvertTest, SeedSetBecomesSelection) {
  wire::SeedSetT set;
  set.ids = {4, 0};
  set.ranges = {wire::SeedRange(6, 8)};
  EXPECT_EQ(selection_from_wire(set).resolve(10), (std::vector<std::uint32_t>{0, 4, 6, 7, 8}));

  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(wire::SeedSet::Pack(fbb, &set));
  const auto* table = flatbuffers::GetRoot<wire::SeedSet>(fbb.GetBufferPointer());
  EXPECT_EQ(selection_from_wire(table).resolve(10), (std::vector<std::uint32_t>{0, 4, 6, 7, 8}));

  wire::SeedSetT all;
  all.all = true;
  EXPECT_TRUE(selection_from_wire(all).selects_all());
  EXPECT_TRUE(selection_from_wire(nullptr).resolve(10).empty());
}

TEST(WireConvertTest, OutcomesCarryStatusAndRuleMessage) {
  Population p(3);
  (void)p.transition(Selection::ids({0}), S::GERMINATED, "", false);
  const TransitionReport report = p.transition(Selection::all(), S::TRAINING, "", false);
  const auto outcomes = to_wire(report);
  ASSERT_EQ(outcomes.size(), 3U);
  EXPECT_EQ(outcomes[0].seed, 0U);
  EXPECT_EQ(outcomes[0].status, wire::Status::OK);
  EXPECT_EQ(outcomes[0].from, S::GERMINATED);
  EXPECT_EQ(outcomes[0].to, S::TRAINING);
  EXPECT_TRUE(outcomes[0].error.empty());
  EXPECT_EQ(outcomes[1].status, wire::Status::REJECTED);
  EXPECT_EQ(outcomes[1].from, S::DORMANT);
  EXPECT_EQ(outcomes[1].error, "table: DORMANT -> TRAINING is not a transition");
  EXPECT_EQ(command_status(report), wire::Status::OK);
}

TEST(WireConvertTest, CommandIsRejectedWhenNoSeedMoved) {
  Population p(2);
  EXPECT_EQ(command_status(p.transition(Selection::all(), S::FOSSILIZED, "", true)), wire::Status::REJECTED);
  EXPECT_EQ(command_status(p.transition(Selection::ids({5}), S::GERMINATED, "", false)), wire::Status::REJECTED);
  EXPECT_EQ(command_status(p.transition(Selection{}, S::GERMINATED, "", false)), wire::Status::REJECTED);
}

TEST(WireConvertTest, SnapshotRecordMirrorsTheSeed) {
  LifecycleConfig config;
  config.grafting.ramp_steps = 4;
  Seed seed = testing::seed_in(S::GRAFTING, config);
  testing::tick(seed, 3);
  seed.record_error();
  const wire::SeedStatus status = to_wire_status(5, seed);
  EXPECT_EQ(status.seed(), 5U);
  EXPECT_EQ(status.state(), S::GRAFTING);
  EXPECT_EQ(status.parent_state(), S::TRAINING);
  EXPECT_EQ(status.steps_in_state(), 3U);
  EXPECT_EQ(status.error_count(), 1U);
  EXPECT_EQ(status.alpha(), 0.75F);
}

TEST(WireConvertTest, BlueprintGraftingOverridesTheBase) {
  wire::SetBlueprintT blueprint;
  blueprint.grafting = wire::GraftingStrategy::ADAPTIVE;
  blueprint.ramp_steps = 0;  // not set: keep the base
  blueprint.drift_threshold = 0.25F;
  auto param = std::make_unique<wire::ParamT>();
  param->name = "gain_max";
  param->value = 8.0;
  blueprint.params.push_back(std::move(param));
  GraftingConfig base;
  base.ramp_steps = 30;
  const GraftingConfig c = grafting_from_wire(blueprint, base);
  EXPECT_EQ(c.strategy, GraftingStrategy::ADAPTIVE);
  EXPECT_EQ(c.ramp_steps, 30U);
  EXPECT_EQ(c.drift_threshold, 0.25);
  EXPECT_EQ(c.gain_max, 8.0);
  EXPECT_EQ(c.gain_min, base.gain_min);
  EXPECT_FALSE(check_config(c).has_value());
}

}  // namespace
}  // namespace esper::lifecycle
