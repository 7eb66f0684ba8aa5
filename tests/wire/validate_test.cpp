// Range checks at the boundary (wire/validate.hpp): every checked field of every kind rejected
// with its name when out of range, and the values a real sender produces accepted — NaN and +inf
// losses included. Also the helpers: index_of_checked, field_of, RejectThrottle.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "support/hostile_values.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/validate.hpp"

namespace esper::wire {
namespace {

using esper::testing::bad;
using esper::testing::kInf;
using esper::testing::kNaN;
using esper::testing::Packed;
using namespace std::chrono_literals;


template <class T, class Obj>
Problem check_of(const Obj& obj, const Bounds& b = {}) {
  Packed<T> p(obj);
  return check(p.get(), b);
}

// The problem starts with `field: ` (the field named first), and says nothing else is wrong.
#define EXPECT_REJECTS(problem, field)                                                    \
  do {                                                                                    \
    const Problem p_ = (problem);                                                         \
    ASSERT_TRUE(p_.has_value()) << "accepted; expected a reject of " << (field);          \
    EXPECT_EQ(p_->rfind(std::string(field) + ": ", 0), 0u) << *p_ << " (expected " << (field) << ")"; \
  } while (0)

SeedMetrics record(std::uint32_t seed, SeedState state = SeedState::TRAINING, std::uint64_t step = 10) {
  return SeedMetrics(step, seed, 3, 0.1f, 1.0f, 0.0f, 0.5f, 0.4f, 0.2f, 0.0f, 0.9f, state, 0, 0);
}

TelemetryBatchT batch(std::uint32_t layer, std::vector<SeedMetrics> seeds) {
  TelemetryBatchT t;
  t.layer = layer;
  t.rank = 0;
  t.seeds = std::move(seeds);
  return t;
}

TEST(Validate, EnumHelpersKnowTheValuesOfThisSchema) {
  EXPECT_TRUE(is_known(SeedState::DORMANT));
  EXPECT_TRUE(is_known(SeedState::ROLLED_BACK));
  EXPECT_FALSE(is_known(bad<SeedState>(11)));
  EXPECT_FALSE(is_known(bad<SeedState>(200)));
  EXPECT_FALSE(is_known(bad<Priority>(4)));
  EXPECT_EQ(index_of_checked(SeedState::FOSSILIZED), 7u);
  EXPECT_EQ(index_of_checked(bad<SeedState>(11)), std::nullopt);
  EXPECT_EQ(index_of_checked(bad<SeedState>(255)), std::nullopt);
  static_assert(index_of_checked(SeedState::ROLLED_BACK) == 10u);
}

TEST(Validate, SaneTelemetryIsAcceptedWithUnknownAndDivergedLosses) {
  auto t = batch(3, {record(0), record(1, SeedState::DORMANT), record(65535, SeedState::ROLLED_BACK)});
  t.seeds[0].mutate_task_loss(kNaN);
  t.seeds[0].mutate_shadow_loss(kInf);  // a diverged loss is a signal, not a lie
  t.seeds[1].mutate_alpha(1.0f);
  t.seeds[1].mutate_health(kNaN);
  t.seeds[1].mutate_grad_norm(-kInf);  // not decided on: not checked
  t.layers.push_back(LayerMetrics(10, 1000, kNaN, kNaN));
  t.layers.push_back(LayerMetrics(11, 0, 12.5f, 0.25f));
  t.rank = -1;
  EXPECT_EQ(check_of<TelemetryBatch>(t), std::nullopt);
  EXPECT_EQ(check_of<TelemetryBatch>(batch(4095, {})), std::nullopt);
}

TEST(Validate, TelemetryRejectsNameTheField) {
  EXPECT_REJECTS(check_of<TelemetryBatch>(batch(0, {record(0), record(1, bad<SeedState>(200))})), "seeds[1].state");
  const auto state = check_of<TelemetryBatch>(batch(0, {record(0, bad<SeedState>(11))}));
  EXPECT_EQ(state, "seeds[0].state: 11 is not a SeedState (0..10)");
  EXPECT_EQ(check_of<TelemetryBatch>(batch(0, {record(70000)})), "seeds[0].seed: 70000 is past the last seed id 65535");
  EXPECT_EQ(check_of<TelemetryBatch>(batch(5000, {})), "layer: 5000 is past the last layer id 4095");
  EXPECT_REJECTS(check_of<TelemetryBatch>(batch(0, {record(0, SeedState::DORMANT, kMaxStep + 1)})), "seeds[0].step");

  auto t = batch(0, {record(0)});
  t.rank = -2;
  EXPECT_REJECTS(check_of<TelemetryBatch>(t), "rank");
  t.rank = kMaxRanks;
  EXPECT_REJECTS(check_of<TelemetryBatch>(t), "rank");
  t.rank = 0;
  t.dropped_records = std::numeric_limits<std::uint64_t>::max();
  EXPECT_REJECTS(check_of<TelemetryBatch>(t), "dropped_records");
  t.dropped_records = 0;

  const struct {
    void (SeedMetrics::*set)(float);
    float value;
    const char* field;
  } metrics[] = {{&SeedMetrics::mutate_task_loss, -1.0f, "seeds[0].task_loss"},
                 {&SeedMetrics::mutate_task_loss, -kInf, "seeds[0].task_loss"},
                 {&SeedMetrics::mutate_shadow_loss, -0.5f, "seeds[0].shadow_loss"},
                 {&SeedMetrics::mutate_alpha, 1.5f, "seeds[0].alpha"},
                 {&SeedMetrics::mutate_alpha, kInf, "seeds[0].alpha"},
                 {&SeedMetrics::mutate_alpha, -0.1f, "seeds[0].alpha"},
                 {&SeedMetrics::mutate_health, kInf, "seeds[0].health"},
                 {&SeedMetrics::mutate_health, 2.0f, "seeds[0].health"}};
  for (const auto& m : metrics) {
    auto x = batch(0, {record(0)});
    (x.seeds[0].*m.set)(m.value);
    EXPECT_REJECTS(check_of<TelemetryBatch>(x), m.field);
  }
  auto layer = batch(0, {});
  layer.layers.push_back(LayerMetrics(1, 1, kInf, 0.0f));
  EXPECT_REJECTS(check_of<TelemetryBatch>(layer), "layers[0].samples_per_s");
  layer.layers[0] = LayerMetrics(1, 1, -1.0f, 0.0f);
  EXPECT_REJECTS(check_of<TelemetryBatch>(layer), "layers[0].samples_per_s");
  layer.layers[0] = LayerMetrics(1, 1, 1.0f, -1.0f);
  EXPECT_REJECTS(check_of<TelemetryBatch>(layer), "layers[0].loss");
  layer.layers[0] = LayerMetrics(kMaxStep + 1, 1, 1.0f, 1.0f);
  EXPECT_REJECTS(check_of<TelemetryBatch>(layer), "layers[0].step");
}

TEST(Validate, AReceiverThatKnowsTheJobRejectsLayersItDoesNotHostAndSeedsPastTheLayer) {
  const Bounds job = Bounds::job(2, 8);
  EXPECT_EQ(job.seeds_in(0), 8u);
  EXPECT_EQ(job.seeds_in(9), 8u);
  EXPECT_EQ(check_of<TelemetryBatch>(batch(1, {record(7)}), job), std::nullopt);
  EXPECT_EQ(check_of<TelemetryBatch>(batch(1, {record(0), record(8)}), job),
            "seeds[1].seed: 8 is past layer 1's 8 seeds (0..7)");
  EXPECT_EQ(check_of<TelemetryBatch>(batch(2, {record(0)}), job),
            "layer: 2 is not one of the 2 layers this receiver hosts (0, 1)");
  // Layers known, sizes not: any seed id below the sane bound.
  const Bounds layers_only = Bounds::job(2, 0);
  EXPECT_EQ(check_of<TelemetryBatch>(batch(1, {record(60000)}), layers_only), std::nullopt);
  EXPECT_REJECTS(check_of<TelemetryBatch>(batch(3, {}), layers_only), "layer");
  // The same bounds on events and snapshots.
  EXPECT_REJECTS(check_of<Event>(state_transition(0, 5, 8, SeedState::DORMANT, SeedState::GERMINATED, "", ""), job),
                 "body.seed");
  EXPECT_REJECTS(check_of<Event>(state_transition(7, 5, 1, SeedState::DORMANT, SeedState::GERMINATED, "", ""), job),
                 "layer");
  const auto snap = state_snapshot(1, {layer_state(0, 0, 5, {SeedStatus(9, SeedState::DORMANT, SeedState::DORMANT, 0, 0, 0, 0)})});
  EXPECT_REJECTS(check_of<StateSnapshot>(snap, job), "layers[0].seeds[0].seed");
  // Events about ranks are not about a layer's seeds: any layer below the bound.
  EXPECT_EQ(check_of<Event>(rank_joined(0, 2, "h", 1, {0, 1, 5}), job), std::nullopt);
}

TEST(Validate, EventRejectsNameTheField) {
  EXPECT_EQ(check_of<Event>(state_transition(0, 5, 1, SeedState::DORMANT, SeedState::GERMINATED, "r", "c")), std::nullopt);
  EXPECT_EQ(check_of<Event>(state_transition(0, 5, 1, bad<SeedState>(200), SeedState::GERMINATED, "r", "c")),
            "body.from: 200 is not a SeedState (0..10)");
  EXPECT_REJECTS(check_of<Event>(state_transition(0, 5, 1, SeedState::DORMANT, bad<SeedState>(11), "r", "c")), "body.to");
  EXPECT_REJECTS(check_of<Event>(state_transition(0, 5, 99999, SeedState::DORMANT, SeedState::GERMINATED, "r", "c")),
                 "body.seed");
  EXPECT_REJECTS(check_of<Event>(state_transition(4096, 5, 1, SeedState::DORMANT, SeedState::GERMINATED, "r", "c")),
                 "layer");
  EXPECT_REJECTS(check_of<Event>(state_transition(0, kMaxStep + 1, 1, SeedState::DORMANT, SeedState::GERMINATED, "", "")),
                 "step");
  EXPECT_REJECTS(check_of<Event>(state_transition(0, 5, 1, SeedState::DORMANT, SeedState::GERMINATED,
                                                  std::string(kMaxText + 1, 'x'), "")),
                 "body.reason");
  EXPECT_REJECTS(check_of<Event>(state_transition(0, 5, 1, SeedState::DORMANT, SeedState::GERMINATED, "",
                                                  std::string(kMaxText + 1, 'x'))),
                 "body.triggered_by");

  EXPECT_EQ(check_of<Event>(anomaly_alert(0, 1, 2, "task_loss", std::nan(""), 0, 1, Severity::CRITICAL, "zscore", INFINITY)),
            std::nullopt);
  EXPECT_REJECTS(check_of<Event>(anomaly_alert(0, 1, 2, "task_loss", 1, 0, 1, bad<Severity>(4), "zscore", 1)),
                 "body.severity");
  EXPECT_REJECTS(check_of<Event>(anomaly_alert(0, 1, 1u << 20, "task_loss", 1, 0, 1, Severity::INFO, "zscore", 1)),
                 "body.seed");

  EXPECT_EQ(check_of<Event>(rank_joined(3, 4, "node-a", 42, {0, 2})), std::nullopt);
  EXPECT_REJECTS(check_of<Event>(rank_joined(-1, 4, "node-a", 42, {0})), "body.rank");
  EXPECT_REJECTS(check_of<Event>(rank_joined(3, 2, "node-a", 42, {0})), "body.world_size");
  EXPECT_REJECTS(check_of<Event>(rank_joined(3, -4, "node-a", 42, {0})), "body.world_size");
  EXPECT_REJECTS(check_of<Event>(rank_joined(3, 0, "node-a", 42, {0, 4096})), "body.layers[1]");
  EXPECT_REJECTS(check_of<Event>(rank_joined(3, 0, std::string(kMaxText + 1, 'h'), 42, {0})), "body.host");

  EXPECT_EQ(check_of<Event>(rank_lost(2, 1, 3, "gone")), std::nullopt);
  EXPECT_REJECTS(check_of<Event>(rank_lost(-3, 1, 3, "gone")), "body.rank");
  EXPECT_REJECTS(check_of<Event>(command_failed(MsgId(1, 1), -2, FailureReason::TIMEOUT, "", 1, false)),
                 "body.target_rank");
  EXPECT_REJECTS(check_of<Event>(command_failed(MsgId(1, 1), 0, bad<FailureReason>(6), "", 1, false)), "body.reason");
  EXPECT_REJECTS(check_of<Event>(checkpoint(1, std::string(kMaxText + 1, '/'), 0, 0)), "body.path");

  DecisionFields d;
  d.policy = "balanced";
  d.seeds = {1, 2};
  d.applied = {1};
  EXPECT_EQ(check_of<Event>(decision(0, 5, d)), std::nullopt);
  auto bad_action = d;
  bad_action.action = bad<DecisionAction>(5);
  EXPECT_REJECTS(check_of<Event>(decision(0, 5, bad_action)), "body.action");
  auto bad_target = d;
  bad_target.target = bad<SeedState>(200);
  EXPECT_REJECTS(check_of<Event>(decision(0, 5, bad_target)), "body.target");
  auto bad_status = d;
  bad_status.status = bad<Status>(5);
  EXPECT_REJECTS(check_of<Event>(decision(0, 5, bad_status)), "body.status");
  auto bad_seed = d;
  bad_seed.rejected = {3, 1u << 16};
  EXPECT_REJECTS(check_of<Event>(decision(0, 5, bad_seed)), "body.rejected[1]");
  EXPECT_REJECTS(check_of<Event>(decision(0, 5, d), Bounds::job(1, 2)), "body.seeds[1]");
}

TEST(Validate, SnapshotResultCommandRouteTableAndHeartbeatRejectsNameTheField) {
  const std::vector<SeedStatus> ok{SeedStatus(0, SeedState::TRAINING, SeedState::GERMINATED, 0, 4, 0, 0.0f)};
  EXPECT_EQ(check_of<StateSnapshot>(state_snapshot(3, {layer_state(0, 1, 5, ok)})), std::nullopt);
  EXPECT_REJECTS(check_of<StateSnapshot>(state_snapshot(3, {layer_state(0, 1, 5, ok)}, 1, 1)), "part");
  EXPECT_REJECTS(check_of<StateSnapshot>(state_snapshot(3, {layer_state(0, 1, 5, ok)}, 0, 0)), "part");
  EXPECT_REJECTS(check_of<StateSnapshot>(state_snapshot(3, {layer_state(0, -9, 5, ok)})), "layers[0].rank");
  EXPECT_REJECTS(
      check_of<StateSnapshot>(state_snapshot(
          3, {layer_state(0, 1, 5, ok),
              layer_state(1, 1, 5, {SeedStatus(0, SeedState::DORMANT, SeedState::DORMANT, 0, 0, 0, 0),
                                    SeedStatus(1, bad<SeedState>(200), SeedState::DORMANT, 0, 0, 0, 0)})})),
      "layers[1].seeds[1].state");
  EXPECT_REJECTS(check_of<StateSnapshot>(state_snapshot(
                     3, {layer_state(0, 1, 5, {SeedStatus(0, SeedState::DORMANT, bad<SeedState>(12), 0, 0, 0, 0)})})),
                 "layers[0].seeds[0].parent_state");
  EXPECT_REJECTS(check_of<StateSnapshot>(state_snapshot(
                     3, {layer_state(0, 1, 5, {SeedStatus(0, SeedState::DORMANT, SeedState::DORMANT, 0, 0, 0, 3.0f)})})),
                 "layers[0].seeds[0].alpha");

  EXPECT_EQ(check_of<CommandResult>(command_result(Status::OK, 1, "", {seed_outcome(9999, Status::REJECTED,
                                                                                     SeedState::DORMANT,
                                                                                     SeedState::GERMINATED, "no_such_seed")})),
            std::nullopt)
      << "an outcome echoes the command's seed id, past the layer or not";
  EXPECT_REJECTS(check_of<CommandResult>(command_result(bad<Status>(9), 1)), "status");
  EXPECT_REJECTS(check_of<CommandResult>(command_result(Status::OK, -2)), "rank");
  EXPECT_REJECTS(check_of<CommandResult>(command_result(Status::OK, 1, "", {}, 0, -2)), "applied_at_step");
  EXPECT_REJECTS(check_of<CommandResult>(command_result(
                     Status::OK, 1, "",
                     {seed_outcome(1, Status::OK, SeedState::DORMANT, SeedState::GERMINATED),
                      seed_outcome(2, Status::OK, bad<SeedState>(200), SeedState::GERMINATED)})),
                 "outcomes[1].from");
  EXPECT_REJECTS(check_of<CommandResult>(command_result(
                     Status::OK, 1, "", {seed_outcome(2, bad<Status>(7), SeedState::DORMANT, SeedState::GERMINATED)})),
                 "outcomes[0].status");
  EXPECT_REJECTS(check_of<CommandResult>(command_result(
                     Status::OK, 1, "", {seed_outcome(2, Status::OK, SeedState::DORMANT, bad<SeedState>(11))})),
                 "outcomes[0].to");

  EXPECT_EQ(check_of<Command>(transition_seeds(to_layer(0), 0, seed_range(0, 0xFFFFFFFFu), SeedState::GERMINATED, "r")),
            std::nullopt)
      << "a command's seed ids are the rank program's to check";
  EXPECT_EQ(check_of<Command>(transition_seeds(to_layer(0), 0, seed_ids({1}), bad<SeedState>(200), "r")),
            "body.target: 200 is not a SeedState (0..10)");
  auto kind = transition_seeds(to_all(), 0, seed_ids({1}), SeedState::GERMINATED, "r");
  kind.target = std::make_unique<CommandTarget>(bad<TargetKind>(3), 0, 0);
  EXPECT_REJECTS(check_of<Command>(kind), "target.kind");
  EXPECT_REJECTS(check_of<Command>(shutdown(to_rank(-1), "x")), "target.rank");
  EXPECT_REJECTS(check_of<Command>(shutdown(to_layer(9999), "x")), "target.layer");
  EXPECT_REJECTS(check_of<Command>(shutdown(to_all(), "x", 1, CommandOptions{.apply_at_step = -7})), "apply_at_step");
  SetBlueprintT blueprint;
  blueprint.kind = bad<BlueprintKind>(2);
  EXPECT_REJECTS(check_of<Command>(set_blueprint(to_all(), blueprint)), "body.kind");
  blueprint.kind = BlueprintKind::LOW_RANK;
  blueprint.grafting = bad<GraftingStrategy>(3);
  EXPECT_REJECTS(check_of<Command>(set_blueprint(to_all(), blueprint)), "body.grafting");
  EXPECT_REJECTS(check_of<Command>(emergency_stop(to_all(), bad<StopScope>(3), 0, 0, "x")), "body.scope");
  EXPECT_REJECTS(check_of<Command>(emergency_stop(to_all(), StopScope::LAYER, 5000, 0, "x")), "body.layer");
  EXPECT_EQ(check_of<Command>(emergency_stop(to_all(), StopScope::JOB, 5000, 0, "x")), std::nullopt)
      << "a job-wide stop has no layer";
  EXPECT_REJECTS(check_of<Command>(request_snapshot(to_all(), {0, 4096}, "")), "body.layers[1]");
  std::vector<CommandT> members;
  members.push_back(shutdown(to_all(), "fine"));
  members.push_back(transition_seeds(to_all(), 0, seed_ids({1}), bad<SeedState>(42), "r"));
  EXPECT_EQ(check_of<Command>(batch(to_all(), std::move(members), true, false)),
            "body.commands[1].body.target: 42 is not a SeedState (0..10)");

  RouteTableT table;
  table.ranks.push_back(std::make_unique<RankRouteT>());
  table.ranks.back()->rank = 0;
  table.ranks.back()->layers = {0, 1};
  EXPECT_EQ(check_of<RouteTable>(table), std::nullopt);
  table.ranks.push_back(std::make_unique<RankRouteT>());
  table.ranks.back()->rank = -3;
  EXPECT_REJECTS(check_of<RouteTable>(table), "ranks[1].rank");
  table.ranks.back()->rank = 1;
  table.ranks.back()->layers = {kMaxLayers};
  EXPECT_REJECTS(check_of<RouteTable>(table), "ranks[1].layers[0]");

  EXPECT_EQ(check_of<Heartbeat>(heartbeat(5, 100, 1, 0, 0, {0, 1}, "ipc:///x", 4)), std::nullopt);
  EXPECT_REJECTS(check_of<Heartbeat>(heartbeat(5, 100, 1, 0, 0, {0, 1}, "", -1)), "world_size");
  EXPECT_REJECTS(check_of<Heartbeat>(heartbeat(5, 100, 1, 0, 0, {7000}, "", 0)), "layers[0]");
  EXPECT_REJECTS(check_of<Heartbeat>(heartbeat(kMaxStep + 1, 100, 1, 0, 0, {0}, "", 0)), "step");
}

// The broker's dispatch answer (schema 1.4): its reason and every rank it names.
TEST(Validate, ADispatchsReasonAndRanksAreChecked) {
  CommandDispatchT d;
  d.command = std::make_unique<MsgId>(1, 2);
  d.ranks = {0, 3};
  EXPECT_EQ(check_of<CommandDispatch>(d), std::nullopt);
  d.ranks = {0, -1};
  EXPECT_REJECTS(check_of<CommandDispatch>(d), "ranks[1]");
  d.ranks = {kMaxRanks};
  EXPECT_REJECTS(check_of<CommandDispatch>(d), "ranks[0]");
  d.ranks = {};
  d.reason = bad<DispatchReason>(6);
  EXPECT_REJECTS(check_of<CommandDispatch>(d), "reason");
}

// A batch's per-member results (schema 1.3) are checked like the result itself.
TEST(Validate, ABatchResultsMembersAreChecked) {
  auto r = command_result(Status::OK, 1);
  r.members.push_back(std::make_unique<CommandResultT>(command_result(Status::OK, 1)));
  r.members.push_back(std::make_unique<CommandResultT>(command_result(bad<Status>(8), 1)));
  EXPECT_REJECTS(check_of<CommandResult>(r), "members[1].status");
}

TEST(Validate, TheEnvelopeAndTheBodyOfADecodedMessage) {
  Decoder decoder;
  SourceInfo evil;
  evil.rank = -5;
  Encoder bad_rank(evil);
  Header h;
  h.msg_id = MsgId(1, 1);
  auto m = decoder.decode(bad_rank.encode(h, state_transition(0, 1, 1, SeedState::DORMANT, SeedState::GERMINATED, "", "")));
  ASSERT_TRUE(m);
  EXPECT_REJECTS(check(*m), "envelope.source.rank");

  SourceInfo role;
  role.role = bad<Role>(99);
  Encoder bad_role(role);
  m = decoder.decode(bad_role.encode(h, rank_lost(1, 0, 0, "x")));
  ASSERT_TRUE(m);
  EXPECT_REJECTS(check(*m), "envelope.source.role");

  Encoder fine(SourceInfo{0, Role::RANK, "job", "host", 1});
  h.priority = bad<Priority>(4);
  m = decoder.decode(fine.encode(h, shutdown(to_all(), "x")));
  ASSERT_TRUE(m);
  EXPECT_REJECTS(check(*m), "envelope.priority");

  h.priority = Priority::HIGH;
  m = decoder.decode(fine.encode(h, command_result(Status::OK, 0, "", {seed_outcome(1, Status::OK, bad<SeedState>(77),
                                                                                    SeedState::DORMANT)})));
  ASSERT_TRUE(m);
  EXPECT_REJECTS(check(*m), "outcomes[0].from");
  // The telemetry fast path, packed: the decompressed body is checked like an inline one.
  std::vector<SeedMetrics> records(200, record(1));
  records[150] = record(150, bad<SeedState>(200));
  m = decoder.decode(fine.encode_telemetry(h, TelemetryBatchInfo{0, 0, 0, 0, 0}, records));
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->was_packed());
  EXPECT_EQ(check(*m), "seeds[150].state: 200 is not a SeedState (0..10)");
  records[150] = record(150);
  m = decoder.decode(fine.encode_telemetry(h, TelemetryBatchInfo{0, 0, 0, 0, 0}, records));
  ASSERT_TRUE(m);
  EXPECT_EQ(check(*m), std::nullopt);
}

TEST(Validate, ASeedKeptOutsideAMessageIsCheckedLikeOneInIt) {
  EXPECT_EQ(check_seed(0, 7, SeedState::TRAINING, Bounds::job(1, 8)), std::nullopt);
  EXPECT_REJECTS(check_seed(1, 0, SeedState::TRAINING, Bounds::job(1, 8)), "layer");
  EXPECT_EQ(check_seed(0, 8, SeedState::TRAINING, Bounds::job(1, 8)), "seed: 8 is past layer 0's 8 seeds (0..7)");
  EXPECT_EQ(check_seed(0, 1, bad<SeedState>(200)), "state: 200 is not a SeedState (0..10)");
  EXPECT_EQ(check_seed(4095, kMaxSeedsPerLayer - 1, SeedState::ROLLED_BACK), std::nullopt);
  // A job's shape past the sane bounds is held to them.
  const auto huge = Bounds::job(kMaxLayers + 10, kMaxSeedsPerLayer + 10);
  EXPECT_EQ(huge.hosted.size(), kMaxLayers);
  EXPECT_EQ(huge.seeds_in(0), kMaxSeedsPerLayer);
}

TEST(Validate, FieldOfDropsListIndices) {
  EXPECT_EQ(field_of("seeds[13].state: 200 is not a SeedState (0..10)"), "seeds[].state");
  EXPECT_EQ(field_of("layer: 5000 is past the last layer id 4095"), "layer");
  EXPECT_EQ(field_of("body.commands[1].body.target: x"), "body.commands[].body.target");
  EXPECT_EQ(field_of("no colon"), "no colon");
}

TEST(Validate, TheThrottleLogsTheFirstRejectOfEachFieldThenOnePerInterval) {
  RejectThrottle throttle(10s);
  const auto t0 = RejectThrottle::Clock::time_point{} + 1h;
  std::uint64_t suppressed = 99;
  EXPECT_TRUE(throttle.should_log("seeds[0].state: 200", suppressed, t0));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_FALSE(throttle.should_log("seeds[7].state: 201", suppressed, t0 + 1s)) << "the same field";
  EXPECT_FALSE(throttle.should_log("seeds[1].state: 11", suppressed, t0 + 2s));
  EXPECT_TRUE(throttle.should_log("seeds[3].seed: 70000", suppressed, t0 + 2s)) << "another field";
  EXPECT_TRUE(throttle.should_log("seeds[2].state: 12", suppressed, t0 + 11s)) << "an interval later";
  EXPECT_EQ(suppressed, 2u) << "the two not logged since";
  EXPECT_FALSE(throttle.should_log("seeds[2].state: 12", suppressed, t0 + 12s));
  EXPECT_TRUE(throttle.should_log("Event", "layer: 5000", suppressed, t0 + 12s)) << "a field of another kind";
  EXPECT_TRUE(throttle.should_log("TelemetryBatch", "layer: 5000", suppressed, t0 + 12s));
  EXPECT_FALSE(throttle.should_log("Event", "layer: 4097", suppressed, t0 + 13s));
  EXPECT_EQ(throttle.total(), 9u);
}

}  // namespace
}  // namespace esper::wire
