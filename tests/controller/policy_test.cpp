// The population view and the growth policies on synthetic telemetry: each preset's decisions on
// one fixed scenario, the emergency stop, retries after a refusal, seeds in flight left alone, and
// the view's rules for stale telemetry, replicas' copies and the improvement baseline.
#include <gtest/gtest.h>

#include <algorithm>

#include "controller/policy.hpp"
#include "controller/view.hpp"
#include "wire/builders.hpp"

namespace esper::controller {
namespace {

using wire::DecisionAction;
using wire::SeedState;

struct Rec {
  std::uint32_t seed;
  SeedState state;
  std::uint32_t steps_in_state = 0;
  float loss = 0.3f, shadow = 0.3f, alpha = 0.0f, health = 1.0f;
};

// Feeds one telemetry batch (as a rank publishes it) into the view.
std::size_t feed(PopulationView& view, std::uint32_t layer, std::uint64_t step, const std::vector<Rec>& recs,
                 std::int32_t rank = 0) {
  wire::TelemetryBatchT t;
  t.layer = layer;
  t.rank = rank;
  for (const auto& r : recs) {
    t.seeds.emplace_back(step, r.seed, r.steps_in_state, 0.0f, 0.0f, 0.0f, r.loss, r.shadow, 0.01f, r.alpha, r.health,
                         r.state, 0, 0);
  }
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(wire::TelemetryBatch::Pack(fbb, &t));
  return view.on_telemetry(*flatbuffers::GetRoot<wire::TelemetryBatch>(fbb.GetBufferPointer()));
}

void event(PopulationView& view, const wire::EventT& e, std::int32_t rank = 0) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(wire::Event::Pack(fbb, &e));
  view.on_event(*flatbuffers::GetRoot<wire::Event>(fbb.GetBufferPointer()), rank);
}

// Layer 0, step 1000, eight seeds that exercise every rule:
//   0 DORMANT, worst chunk loss       4 TRAINING 120 steps, shadow 3% better
//   1 DORMANT, good chunk loss        5 TRAINING 350 steps, shadow no better
//   2 GERMINATED                      6 GRAFTING 60 steps, α = 1
//   3 TRAINING 120 steps, 10% better  7 CULLED
PopulationView scenario() {
  PopulationView v;
  feed(v, 0, 1000,
       {{0, SeedState::DORMANT, 900, 0.50f, 0.50f},
        {1, SeedState::DORMANT, 900, 0.20f, 0.20f},
        {2, SeedState::GERMINATED, 1, 0.30f, 0.30f},
        {3, SeedState::TRAINING, 120, 0.30f, 0.27f},
        {4, SeedState::TRAINING, 120, 0.30f, 0.291f},
        {5, SeedState::TRAINING, 350, 0.30f, 0.30f},
        {6, SeedState::GRAFTING, 60, 0.20f, 0.20f, 1.0f},
        {7, SeedState::CULLED, 3, 0.30f, 0.30f}});
  return v;
}

// "ACTION TARGET seeds" per decision, sorted, for comparing whole decision sets.
std::vector<std::string> summary(const std::vector<Decision>& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) {
    std::string s = std::string(wire::EnumNameDecisionAction(d.action)) + " " + wire::EnumNameSeedState(d.target);
    auto seeds = d.seeds;
    std::sort(seeds.begin(), seeds.end());
    for (const auto id : seeds) s += " " + std::to_string(id);
    out.push_back(s);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Policy, PresetsAreNamedAndDiffer) {
  for (const auto& name : preset_names()) {
    const auto p = preset(name);
    ASSERT_TRUE(p) << name;
    EXPECT_EQ(p->name, name);
  }
  EXPECT_FALSE(preset("reckless"));
  EXPECT_GT(preset("aggressive")->max_growing_fraction, preset("balanced")->max_growing_fraction);
  EXPECT_GT(preset("balanced")->max_growing_fraction, preset("conservative")->max_growing_fraction);
  EXPECT_LT(preset("aggressive")->shadow_margin, preset("conservative")->shadow_margin);
}

TEST(Policy, AggressiveOnTheFixedScenario) {
  Policy p(*preset("aggressive"));
  // Cull after 100 + 100 steps; margin 1%; every chunk may grow (cap 8, 4 growing): wake both dormant.
  EXPECT_EQ(summary(p.decide(scenario())),
            (std::vector<std::string>{"ADVANCE GRAFTING 3 4", "ADVANCE STABILIZATION 6", "ADVANCE TRAINING 2",
                                      "CULL CULLED 5", "RESET DORMANT 7", "WAKE GERMINATED 0 1"}));
}

TEST(Policy, BalancedOnTheFixedScenario) {
  Policy p(*preset("balanced"));
  // Cull after 100 + 200 steps; margin 2%; cap 4 growing, and 4 are (2, 3, 4, 5): no wake.
  EXPECT_EQ(summary(p.decide(scenario())),
            (std::vector<std::string>{"ADVANCE GRAFTING 3 4", "ADVANCE STABILIZATION 6", "ADVANCE TRAINING 2",
                                      "CULL CULLED 5", "RESET DORMANT 7"}));
}

TEST(Policy, ConservativeOnTheFixedScenario) {
  Policy p(*preset("conservative"));
  // Patience 300: seed 5 is kept; margin 5%: only seed 3 grafts; cap 2: no wake.
  EXPECT_EQ(summary(p.decide(scenario())),
            (std::vector<std::string>{"ADVANCE GRAFTING 3", "ADVANCE STABILIZATION 6", "ADVANCE TRAINING 2",
                                      "RESET DORMANT 7"}));
}

TEST(Policy, WakesTheWorstChunksFirstWithinTheCap) {
  PopulationView v;
  std::vector<Rec> recs;
  for (std::uint32_t s = 0; s < 8; ++s) recs.push_back({s, SeedState::DORMANT, 10, 0.1f + 0.05f * static_cast<float>(s)});
  feed(v, 0, 10, recs);
  Policy balanced(*preset("balanced"));
  const auto ds = balanced.decide(v);
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].action, DecisionAction::WAKE);
  // Cap 4, worst first; only chunks at >= 0.9x the median loss qualify.
  EXPECT_EQ(ds[0].seeds, (std::vector<std::uint32_t>{7, 6, 5, 4}));
  EXPECT_NE(ds[0].reason.find("median"), std::string::npos) << ds[0].reason;
  Policy conservative(*preset("conservative"));
  EXPECT_EQ(conservative.decide(v).at(0).seeds, (std::vector<std::uint32_t>{7, 6}));
}

TEST(Policy, ReasonsCarryTheNumbersThatDecided) {
  Policy p(*preset("balanced"));
  for (const auto& d : p.decide(scenario())) {
    EXPECT_FALSE(d.reason.empty());
    if (d.target == SeedState::GRAFTING) {
      EXPECT_NE(d.reason.find("3 (10.0%)"), std::string::npos) << d.reason;
    }
  }
}

TEST(Policy, SeedsInFlightAreLeftAlone) {
  Policy p(*preset("balanced"));
  const auto ds = p.decide(scenario(), {{{0, 3}, SeedState::GRAFTING},
                                        {{0, 6}, SeedState::STABILIZATION},
                                        {{0, 7}, SeedState::DORMANT}});
  EXPECT_EQ(summary(ds), (std::vector<std::string>{"ADVANCE GRAFTING 4", "ADVANCE TRAINING 2", "CULL CULLED 5"}));
}

TEST(Policy, WakesInFlightCountAgainstTheCap) {
  PopulationView v;
  std::vector<Rec> recs;
  for (std::uint32_t s = 0; s < 8; ++s) recs.push_back({s, SeedState::DORMANT, 10, 0.5f});
  feed(v, 0, 10, recs);
  Policy p(*preset("balanced"));  // cap 4
  const auto first = p.decide(v);
  ASSERT_EQ(first.at(0).seeds.size(), 4u);
  Policy::InFlight busy;
  for (const auto s : first.at(0).seeds) busy[{0, s}] = SeedState::GERMINATED;
  EXPECT_TRUE(p.decide(v, busy).empty()) << "the four wakes in flight fill the cap";
  busy.erase(busy.begin());
  const auto again = p.decide(v, busy);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].seeds.size(), 1u);
}

TEST(Policy, ARefusedSeedIsRetriedAfterItsWait) {
  Policy p(*preset("balanced"));  // retry_after 10 steps
  p.refused(0, 3, 995);
  auto ds = summary(p.decide(scenario()));  // view step 1000 < 995 + 10
  EXPECT_EQ(std::count(ds.begin(), ds.end(), "ADVANCE GRAFTING 4"), 1) << "seed 3 waits";
  p.refused(0, 3, 990);
  ds = summary(p.decide(scenario()));
  EXPECT_EQ(std::count(ds.begin(), ds.end(), "ADVANCE GRAFTING 3 4"), 1) << "seed 3 is tried again";
}

TEST(Policy, EmergencyStopAboveTheFailureRateThenNothing) {
  Policy p(*preset("balanced"));  // stop above 50% of the last 20, from 10 outcomes on
  for (int i = 0; i < 4; ++i) p.outcome(false);
  for (int i = 0; i < 5; ++i) p.outcome(true);
  EXPECT_NE(p.decide(scenario()).front().action, DecisionAction::EMERGENCY_STOP) << "9 outcomes: too few to judge";
  p.outcome(true);  // 6 of 10 failed
  EXPECT_DOUBLE_EQ(p.failure_rate(), 0.6);
  const auto ds = p.decide(scenario());
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].action, DecisionAction::EMERGENCY_STOP);
  EXPECT_NE(ds[0].reason.find("60%"), std::string::npos) << ds[0].reason;
  EXPECT_TRUE(p.stopped());
  EXPECT_TRUE(p.decide(scenario()).empty());
}

TEST(Policy, AChunkThatFailedTooOftenIsNotWokenAgain) {
  PopulationView v;
  feed(v, 0, 10, {{0, SeedState::DORMANT, 10, 0.5f}, {1, SeedState::DORMANT, 10, 0.5f}});
  for (auto [from, to] : {std::pair{SeedState::DORMANT, SeedState::GERMINATED},
                          std::pair{SeedState::GERMINATED, SeedState::CANCELLED},
                          std::pair{SeedState::CANCELLED, SeedState::DORMANT}}) {
    event(v, wire::state_transition(0, 11, 0, from, to, "test", "command"));
  }
  feed(v, 0, 13, {{0, SeedState::DORMANT, 1, 0.5f}, {1, SeedState::DORMANT, 13, 0.5f}});
  ASSERT_EQ(v.layer(0)->seeds.at(0).failures, 1u);
  Policy conservative(*preset("conservative"));  // max_failures 1: one failure is still allowed
  EXPECT_EQ(conservative.decide(v).at(0).seeds, (std::vector<std::uint32_t>{0}));
  for (auto [from, to] : {std::pair{SeedState::DORMANT, SeedState::GERMINATED},
                          std::pair{SeedState::GERMINATED, SeedState::CANCELLED},
                          std::pair{SeedState::CANCELLED, SeedState::DORMANT}}) {
    event(v, wire::state_transition(0, 12, 0, from, to, "test", "command"));
  }
  feed(v, 0, 14, {{0, SeedState::DORMANT, 1, 0.5f}, {1, SeedState::DORMANT, 14, 0.5f}});
  Policy again(*preset("conservative"));
  EXPECT_EQ(again.decide(v).at(0).seeds, (std::vector<std::uint32_t>{1})) << "seed 0 failed twice";
}

TEST(PopulationView, CountsStatesAndRegistersLayersFromAnnouncements) {
  PopulationView v;
  event(v, wire::rank_joined(3, 4, "node-a", 42, {0, 2}), -1);
  ASSERT_NE(v.layer(2), nullptr);
  EXPECT_EQ(v.layer(2)->ranks, (std::set<std::int32_t>{3}));
  const auto s = scenario();
  const auto c = s.layer(0)->counts();
  EXPECT_EQ(c[static_cast<std::size_t>(SeedState::DORMANT)], 2u);
  EXPECT_EQ(c[static_cast<std::size_t>(SeedState::TRAINING)], 3u);
  EXPECT_EQ(c[static_cast<std::size_t>(SeedState::CULLED)], 1u);
  EXPECT_DOUBLE_EQ(s.layer(0)->median_task_loss(), 0.3f);
  event(v, wire::rank_lost(3, 0, 3, "no heartbeat"), -1);
  EXPECT_TRUE(v.layer(2)->ranks.empty());
}

TEST(PopulationView, ReplicaCopiesAreNotNewAndOldTelemetryDoesNotUndoATransition) {
  PopulationView v;
  EXPECT_EQ(feed(v, 0, 50, {{0, SeedState::TRAINING, 5}}, 0), 1u);
  EXPECT_EQ(feed(v, 0, 50, {{0, SeedState::TRAINING, 5}}, 1), 0u) << "rank 1's copy of the same step";
  v.set_state(0, 0, SeedState::GRAFTING, 52);  // a command's outcome, applied at step 52
  feed(v, 0, 51, {{0, SeedState::TRAINING, 6}});  // a window published before the transition
  EXPECT_EQ(v.layer(0)->seeds.at(0).state, SeedState::GRAFTING);
  feed(v, 0, 52, {{0, SeedState::GRAFTING, 0}});
  EXPECT_EQ(v.layer(0)->seeds.at(0).state, SeedState::GRAFTING);
  EXPECT_EQ(v.layer(0)->ranks, (std::set<std::int32_t>{0, 1}));
}

TEST(PopulationView, ImprovementIsMeasuredAgainstTheChunkBeforeTheSeedContributed) {
  PopulationView v;
  feed(v, 0, 10, {{0, SeedState::TRAINING, 10, 0.40f, 0.30f}});
  EXPECT_NEAR(v.layer(0)->seeds.at(0).shadow_gain(), 0.25, 1e-6);
  feed(v, 0, 11, {{0, SeedState::GRAFTING, 0, 0.30f, 0.30f, 0.5f}});
  feed(v, 0, 12, {{0, SeedState::EVALUATING, 0, 0.10f, 0.10f, 1.0f}});
  EXPECT_NEAR(v.layer(0)->seeds.at(0).improvement(), 0.75, 1e-6) << "(0.40 - 0.10) / 0.40";
}

TEST(PopulationView, SelectionFiltersByStateBoundsAndFailuresWorstFirst) {
  const auto v = scenario();
  Selection sel;
  sel.from = {SeedState::TRAINING};
  EXPECT_EQ(v.select(0, sel), (std::vector<std::uint32_t>{3, 4, 5}));  // equal losses: by id
  sel.bounds = {{Metric::ShadowGain, 0.02, std::numeric_limits<double>::infinity()}};
  EXPECT_EQ(v.select(0, sel), (std::vector<std::uint32_t>{3, 4}));
  sel.limit = 1;
  EXPECT_EQ(v.select(0, sel), (std::vector<std::uint32_t>{3}));
  Selection dormant;
  dormant.from = {SeedState::DORMANT};
  EXPECT_EQ(v.select(0, dormant), (std::vector<std::uint32_t>{0, 1})) << "worst chunk loss first";
  dormant.exclude = {0};
  EXPECT_EQ(v.select(0, dormant), (std::vector<std::uint32_t>{1}));
  EXPECT_TRUE(v.select(9, dormant).empty()) << "an unknown layer selects nothing";
}

}  // namespace
}  // namespace esper::controller
