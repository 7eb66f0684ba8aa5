// What each command kind does to a rank's seed layers (rank/job_commands.hpp), on real drivers:
// transitions, blueprints on dormant seeds only, atomic and non-atomic batches, emergency stops at
// seed, layer and job scope, snapshots and shutdown. The same commands through a running MPI job
// are in commands_in_job_test.cpp.
#include <gtest/gtest.h>

#include <deque>
#include <limits>

#include "rank/job_commands.hpp"
#include "rank/step_commands.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::rank {
namespace {

using lifecycle::State;

class JobCommandsTest : public ::testing::Test {
 protected:
  JobCommandsTest() {
    for (int l = 0; l < 2; ++l) {
      morphogenesis::Config c;
      c.in_features = 16;
      c.out_features = 16;
      c.chunks = 4;
      c.rank = 4;
      c.batch = 8;
      c.seed = 11 + static_cast<std::uint64_t>(l);
      c.auto_advance = false;
      drivers_.push_back(std::make_unique<morphogenesis::Driver>(c));
    }
  }

  // Encodes and decodes the command, as it arrives from the wire, and applies it.
  wire::CommandResultT apply(const wire::CommandT& cmd, std::uint64_t step = 3) {
    wire::Header h;
    h.msg_id = ids_.next();
    h.timestamp_ns = wire::wall_clock_ns();
    const auto bytes = encoder_.encode(h, cmd);
    frames_.emplace_back(bytes.begin(), bytes.end());
    auto msg = decoder_.decode(frames_.back());
    EXPECT_TRUE(msg) << (msg ? "" : msg.error().message());
    return commands_.apply(*msg->body<wire::Command>(), msg->envelope(), step);
  }
  State state(std::uint32_t layer, std::uint32_t seed) const { return drivers_[layer]->population().seed(seed).state(); }
  std::uint64_t digest() const { return drivers_[0]->digest() ^ (drivers_[1]->digest() * 31); }

  static wire::CommandT germinate(std::uint32_t layer, std::vector<std::uint32_t> seeds) {
    return wire::transition_seeds(wire::to_all(), layer, wire::seed_ids(std::move(seeds)), State::GERMINATED, "test");
  }

  std::vector<std::unique_ptr<morphogenesis::Driver>> drivers_;
  JobCommands commands_{drivers_, 0, nullptr};
  wire::Encoder encoder_{wire::SourceInfo{-1, wire::Role::CONTROLLER, "job", "", 0}};
  wire::Decoder decoder_;
  wire::MsgIdGenerator ids_{wire::Role::CONTROLLER, -1};
  std::deque<std::vector<std::uint8_t>> frames_;
};

TEST_F(JobCommandsTest, ATransitionMovesTheSelectedSeedsAndReportsEachOne) {
  const auto r = apply(germinate(1, {0, 2}));
  EXPECT_EQ(r.status, wire::Status::OK) << r.error;
  ASSERT_EQ(r.outcomes.size(), 2u);
  EXPECT_EQ(state(1, 0), State::GERMINATED);
  EXPECT_EQ(state(1, 2), State::GERMINATED);
  EXPECT_EQ(state(0, 0), State::DORMANT) << "only the named layer";
  const auto bad = apply(germinate(7, {0}));
  EXPECT_EQ(bad.status, wire::Status::REJECTED);
  EXPECT_NE(bad.error.find("layer 7 does not exist"), std::string::npos) << bad.error;
}

TEST_F(JobCommandsTest, ABlueprintIsSetOnADormantSeedOnlyWithinTheLayersLimits) {
  wire::SetBlueprintT b;
  b.layer = 0;
  b.seed = 1;
  b.rank = 2;
  b.learning_rate = 0.05f;
  b.grafting = wire::GraftingStrategy::DRIFT_CONTROLLED;
  b.ramp_steps = 20;
  const auto before = digest();
  const auto ok = apply(wire::set_blueprint(wire::to_all(), b));
  EXPECT_EQ(ok.status, wire::Status::OK) << ok.error;
  EXPECT_NE(digest(), before) << "the seed's adapter rank and learning rate are replicated state";
  EXPECT_EQ(drivers_[0]->layer().seed_settings(1).rank, 2);
  EXPECT_FLOAT_EQ(drivers_[0]->layer().seed_settings(1).learning_rate, 0.05f);
  EXPECT_EQ(drivers_[0]->population().seed(1).grafting().strategy, wire::GraftingStrategy::DRIFT_CONTROLLED);
  EXPECT_EQ(drivers_[0]->population().seed(1).grafting().ramp_steps, 20u);

  ASSERT_EQ(apply(germinate(0, {1})).status, wire::Status::OK);
  const auto busy = apply(wire::set_blueprint(wire::to_all(), b));
  EXPECT_EQ(busy.status, wire::Status::REJECTED);
  EXPECT_EQ(busy.error.rfind("blueprint_needs_dormant", 0), 0u) << busy.error;

  auto check = [&](wire::SetBlueprintT bad, const std::string& rule) {
    bad.seed = 2;
    const auto r = apply(wire::set_blueprint(wire::to_all(), std::move(bad)));
    EXPECT_EQ(r.status, wire::Status::REJECTED) << rule;
    EXPECT_EQ(r.error.rfind(rule, 0), 0u) << r.error;
  };
  wire::SetBlueprintT wide = b;
  wide.rank = 5;
  check(wide, "blueprint_rank");
  wire::SetBlueprintT mlp = b;
  mlp.kind = wire::BlueprintKind::BOTTLENECK_MLP;
  check(mlp, "blueprint_kind");
  wire::SetBlueprintT nan = b;
  nan.learning_rate = std::numeric_limits<float>::quiet_NaN();
  check(nan, "blueprint_learning_rate");
  wire::SetBlueprintT unknown = b;
  unknown.params.push_back(std::make_unique<wire::ParamT>());
  unknown.params.back()->name = "warp_factor";
  check(unknown, "blueprint_param");
  EXPECT_EQ(drivers_[0]->layer().seed_settings(2).rank, 4) << "no rejected blueprint changed anything";
}

TEST_F(JobCommandsTest, AnAtomicBatchWithOneInvalidMemberChangesNothing) {
  std::vector<wire::CommandT> members;
  members.push_back(germinate(0, {0}));
  members.push_back(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({0}), State::TRAINING, "then train"));
  members.push_back(wire::transition_seeds(wire::to_all(), 1, wire::seed_ids({3}), State::FOSSILIZED, "invalid"));
  const auto before = digest();
  const auto r = apply(wire::batch(wire::to_all(), std::move(members), /*atomic=*/true, false));
  EXPECT_EQ(r.status, wire::Status::REJECTED);
  EXPECT_NE(r.error.find("member 2"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("nothing applied"), std::string::npos) << r.error;
  ASSERT_EQ(r.members.size(), 3u) << "per-member results";
  EXPECT_EQ(r.members[1]->status, wire::Status::OK) << "checked in order on copies: member 1 sees member 0's effect";
  EXPECT_EQ(digest(), before);
  EXPECT_EQ(state(0, 0), State::DORMANT);

  std::vector<wire::CommandT> valid;
  valid.push_back(germinate(0, {0}));
  valid.push_back(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({0}), State::TRAINING, "then train"));
  const auto ok = apply(wire::batch(wire::to_all(), std::move(valid), true, false));
  EXPECT_EQ(ok.status, wire::Status::OK) << ok.error;
  EXPECT_EQ(state(0, 0), State::TRAINING);
}

TEST_F(JobCommandsTest, ANonAtomicBatchAppliesWhatItCanAndStopOnErrorSkipsTheRest) {
  auto three = [] {
    std::vector<wire::CommandT> m;
    m.push_back(germinate(0, {0}));
    m.push_back(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({1}), State::FOSSILIZED, "invalid"));
    m.push_back(germinate(0, {2}));
    return m;
  };
  const auto partial = apply(wire::batch(wire::to_all(), three(), false, false));
  EXPECT_EQ(partial.status, wire::Status::FAILED) << partial.error;
  EXPECT_EQ(state(0, 0), State::GERMINATED);
  EXPECT_EQ(state(0, 2), State::GERMINATED);

  std::vector<wire::CommandT> m;
  m.push_back(germinate(1, {0}));
  m.push_back(wire::transition_seeds(wire::to_all(), 1, wire::seed_ids({1}), State::FOSSILIZED, "invalid"));
  m.push_back(germinate(1, {2}));
  const auto stopped = apply(wire::batch(wire::to_all(), std::move(m), false, /*stop_on_error=*/true));
  ASSERT_EQ(stopped.members.size(), 3u);
  EXPECT_EQ(stopped.members[2]->status, wire::Status::REJECTED);
  EXPECT_NE(stopped.members[2]->error.find("skipped"), std::string::npos) << stopped.members[2]->error;
  EXPECT_EQ(state(1, 0), State::GERMINATED);
  EXPECT_EQ(state(1, 2), State::DORMANT);

  std::vector<wire::CommandT> nested;
  nested.push_back(wire::batch(wire::to_all(), three(), false, false));
  const auto inner = apply(wire::batch(wire::to_all(), std::move(nested), false, false));
  EXPECT_EQ(inner.status, wire::Status::REJECTED);
  EXPECT_NE(inner.error.find("do not nest"), std::string::npos) << inner.error;
}

TEST_F(JobCommandsTest, ASeedOrLayerStopTakesOnlyThatScopeOutAndHoldsIt) {
  ASSERT_EQ(apply(germinate(0, {0, 1})).status, wire::Status::OK);
  const auto seed = apply(wire::emergency_stop(wire::to_all(), wire::StopScope::SEED, 0, 1, "bad seed"));
  EXPECT_EQ(seed.status, wire::Status::OK) << seed.error;
  EXPECT_EQ(state(0, 1), State::CANCELLED) << "out of the computation";
  EXPECT_TRUE(commands_.held(0, 1));
  EXPECT_FALSE(commands_.stop().requested) << "the job goes on";
  const auto again = apply(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({0, 1}), State::DORMANT, "reset"));
  ASSERT_EQ(again.outcomes.size(), 2u);
  EXPECT_EQ(again.outcomes[1]->status, wire::Status::REJECTED);
  EXPECT_EQ(again.outcomes[1]->error.rfind("emergency_stopped", 0), 0u) << again.outcomes[1]->error;
  EXPECT_EQ(state(0, 1), State::CANCELLED);

  const auto layer = apply(wire::emergency_stop(wire::to_all(), wire::StopScope::LAYER, 1, 0, "bad layer"));
  EXPECT_EQ(layer.status, wire::Status::OK) << layer.error;
  EXPECT_EQ(layer.outcomes.size(), 4u);
  EXPECT_EQ(apply(germinate(1, {2})).status, wire::Status::REJECTED);
  EXPECT_EQ(apply(germinate(0, {3})).status, wire::Status::OK) << "layer 0's other seeds keep going";
  EXPECT_EQ(commands_.held_count(), 5u);
}

TEST_F(JobCommandsTest, AJobStopAndAShutdownEndTheJobAndASnapshotReportsEverySeed) {
  const auto snap = apply(wire::request_snapshot(wire::to_all(), {}, ""), 9);
  ASSERT_TRUE(snap.snapshot);
  ASSERT_EQ(snap.snapshot->layers.size(), 2u);
  EXPECT_EQ(snap.snapshot->layers[1]->seeds.size(), 4u);
  EXPECT_EQ(snap.snapshot->layers[1]->step, 9u);
  EXPECT_EQ(apply(wire::request_snapshot(wire::to_all(), {5}, "")).status, wire::Status::REJECTED);

  EXPECT_EQ(apply(wire::shutdown(wire::to_all(), "maintenance", 1500)).status, wire::Status::OK);
  EXPECT_TRUE(commands_.stop().requested);
  EXPECT_TRUE(commands_.stop().shutdown);
  EXPECT_EQ(commands_.stop().grace, std::chrono::milliseconds(1500));
  EXPECT_NE(commands_.stop().reason.find("maintenance"), std::string::npos);
}

// A rank's part of a boundary's plan is a verified StepPlan; anything else is refused as a whole.
TEST(StepPlan, APartIsReadOnlyWhenItVerifiesForThisStepAndRankWithCommandsInside) {
  wire::Encoder encoder(wire::SourceInfo{-1, wire::Role::CONTROLLER, "job", "", 0});
  wire::MsgIdGenerator ids(wire::Role::CONTROLLER, -1);
  wire::Header h;
  h.msg_id = ids.next();
  const auto c = encoder.encode(h, wire::shutdown(wire::to_all(), "x"));
  const std::vector<std::uint8_t> command(c.begin(), c.end());
  const auto ev = encoder.encode(h, wire::rank_joined(1, 2, "host", 3, {0}));
  const std::vector<std::uint8_t> event(ev.begin(), ev.end());

  auto part = [](std::uint64_t step, int rank, std::uint8_t decision, const std::vector<std::uint8_t>& envelope) {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<wire::PlanEntry>> e{
        wire::CreatePlanEntry(fbb, static_cast<wire::PlanDecision>(decision), fbb.CreateVector(envelope))};
    fbb.Finish(wire::CreateStepPlan(fbb, step, rank, fbb.CreateVector(e)));
    return std::vector<std::uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  };
  wire::Decoder decoder;
  const auto good = part(5, 1, 0, command);
  const auto items = read_plan_part(good, 5, 1, decoder);
  ASSERT_TRUE(items) << items.error().message();
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ(items->at(0).decision, wire::PlanDecision::APPLY);
  EXPECT_EQ(items->at(0).message.kind(), wire::Body::Command);

  auto refused = [&](const std::vector<std::uint8_t>& bytes, std::uint64_t step, int rank, const std::string& why) {
    const auto r = read_plan_part(bytes, step, rank, decoder);
    ASSERT_FALSE(r) << why;
    EXPECT_NE(r.error().message().find(why), std::string::npos) << r.error().message();
  };
  refused(good, 6, 1, "stamped step 5 of rank 1");
  refused(good, 5, 0, "stamped step 5 of rank 1");
  refused(part(5, 1, 7, command), 5, 1, "decision 7");
  refused(part(5, 1, 0, event), 5, 1, "is not a Command");
  refused(part(5, 1, 0, {1, 2, 3}), 5, 1, "entry 0:");
  auto truncated = good;
  truncated.resize(good.size() / 2);
  refused(truncated, 5, 1, "does not verify");
  refused({}, 5, 1, "does not verify");
}

}  // namespace
}  // namespace esper::rank
