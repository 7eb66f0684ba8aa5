// Round trips of every message kind through Encoder and Decoder, inline and packed.
#include <gtest/gtest.h>

#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/random_messages.hpp"

namespace esper::wire {
namespace {

using testing::unpack;

class RoundTrip : public ::testing::TestWithParam<bool> {
 protected:
  // Param: compression enabled with a 0-byte threshold (every body tried packed) or disabled.
  RoundTrip()
      : enc_(SourceInfo{3, Role::RANK, "job-17", "node-a", 4242},
             EncodeOptions{CompressionOptions{GetParam(), 0, 1, 1.0}, {}}) {}

  template <class T>
  T round_trip(const T& obj) {
    const auto frame = enc_.encode(header_, obj);
    bytes_.assign(frame.begin(), frame.end());
    auto msg = dec_.decode(bytes_);
    EXPECT_TRUE(msg.has_value()) << msg.error().message();
    if (!msg) return T{};
    EXPECT_EQ(msg->was_packed(), GetParam());
    check_header(msg->envelope());
    const auto* body = msg->template body<typename T::TableType>();
    EXPECT_NE(body, nullptr);
    return body ? unpack(body) : T{};
  }

  void check_header(const Envelope& e) {
    EXPECT_EQ(e.version()->major(), kSchemaMajor);
    EXPECT_EQ(e.version()->minor(), kSchemaMinor);
    EXPECT_EQ(*e.msg_id(), header_.msg_id);
    EXPECT_EQ(*e.correlation_id(), header_.correlation_id);
    EXPECT_EQ(e.priority(), header_.priority);
    EXPECT_EQ(e.partition_key(), header_.partition_key);
    EXPECT_EQ(e.sequence(), header_.sequence);
    EXPECT_EQ(e.lamport(), header_.lamport);
    EXPECT_EQ(e.timestamp_ns(), header_.timestamp_ns);
    EXPECT_EQ(*e.trace(), header_.trace);
    ASSERT_NE(e.source(), nullptr);
    EXPECT_EQ(e.source()->rank(), 3);
    EXPECT_EQ(e.source()->role(), Role::RANK);
    EXPECT_EQ(e.source()->job_id()->str(), "job-17");
    EXPECT_EQ(e.source()->host()->str(), "node-a");
    EXPECT_EQ(e.source()->pid(), 4242u);
  }

  Header header_{MsgId(7, 99), MsgId(8, 12), Priority::CRITICAL, 5, 123, 456, 789, TraceContext(1, 2, 3)};
  Encoder enc_;
  Decoder dec_;
  std::vector<std::uint8_t> bytes_;
};

TEST_P(RoundTrip, TransitionSeedsKeepsEveryField) {
  auto seeds = seed_ids({1, 5, 9});
  seeds.ranges.emplace_back(20, 29);
  const auto cmd = transition_seeds(to_layer(4), 4, std::move(seeds), SeedState::GERMINATED, "chunk 5 lags", true,
                                    CommandOptions{250, 1200});
  const auto out = round_trip(cmd);
  EXPECT_EQ(out, cmd);
  const auto* t = out.body.AsTransitionSeeds();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->target, SeedState::GERMINATED);
  EXPECT_EQ(out.apply_at_step, 1200);
  EXPECT_EQ(out.timeout_ms, 250u);
  EXPECT_EQ(out.target->kind(), TargetKind::LAYER);
}

TEST_P(RoundTrip, SetBlueprintKeepsEveryField) {
  SetBlueprintT b;
  b.layer = 2;
  b.seed = 11;
  b.kind = BlueprintKind::BOTTLENECK_MLP;
  b.rank = 8;
  b.grafting = GraftingStrategy::DRIFT_CONTROLLED;
  b.ramp_steps = 64;
  b.drift_threshold = 0.05f;
  b.learning_rate = 1e-3f;
  auto p = std::make_unique<ParamT>();
  p->name = "weight_decay";
  p->value = 1e-4;
  b.params.push_back(std::move(p));
  const auto cmd = set_blueprint(to_rank(1), std::move(b));
  EXPECT_EQ(round_trip(cmd), cmd);
}

TEST_P(RoundTrip, BatchOfEveryCommandKind) {
  std::vector<CommandT> inner;
  inner.push_back(transition_seeds(to_all(), 1, all_seeds(), SeedState::TRAINING, "go"));
  inner.push_back(emergency_stop(to_all(), StopScope::LAYER, 1, 0, "loss exploded"));
  inner.push_back(request_snapshot(to_all(), {1, 2}, "snap/ctl"));
  inner.push_back(shutdown(to_all(), "done", 100));
  const auto cmd = batch(to_all(), std::move(inner), true, true);
  const auto out = round_trip(cmd);
  EXPECT_EQ(out, cmd);
  ASSERT_NE(out.body.AsBatchCommand(), nullptr);
  EXPECT_EQ(out.body.AsBatchCommand()->commands.size(), 4u);
}

TEST_P(RoundTrip, CommandResultWithOutcomes) {
  const auto r = command_result(Status::REJECTED, 2, "1 of 2 seeds rejected",
                                {seed_outcome(1, Status::OK, SeedState::DORMANT, SeedState::GERMINATED),
                                 seed_outcome(2, Status::REJECTED, SeedState::TRAINING, SeedState::TRAINING,
                                              "min_steps: TRAINING needs 100 steps, has 12")},
                                31337, 500);
  EXPECT_EQ(round_trip(r), r);
}

TEST_P(RoundTrip, EveryEventKind) {
  const EventT events[] = {
      state_transition(1, 10, 2, SeedState::TRAINING, SeedState::GRAFTING, "guard passed", "policy:balanced",
                       MsgId(1, 2)),
      anomaly_alert(1, 11, 3, "task_loss", 9.5, 0.1, 0.9, Severity::CRITICAL, "zscore", 7.1),
      rank_joined(4, 8, "node-b", 77, {1, 2, 3}),
      rank_lost(4, 123456789, 3, "no heartbeat for 3 intervals"),
      command_failed(MsgId(5, 6), 4, FailureReason::RANK_LOST, "rank 4 lost", 2, true),
      checkpoint(500, "/scratch/ckpt-500", 0xfeedbeef, 1 << 20),
      decision(2, 300, {"balanced", DecisionAction::ADVANCE, SeedState::GRAFTING, {1, 4, 5},
                        "shadow loss 3.1% below the chunk loss", MsgId(8, 9), {1, 4}, {5}, Status::REJECTED,
                        "min_steps: TRAINING needs 100 steps in state, has 97", 412'000}),
  };
  for (const auto& e : events) EXPECT_EQ(round_trip(e), e);
}

TEST_P(RoundTrip, HeartbeatAndSnapshot) {
  const auto hb = heartbeat(42, 100, 5'000'000'000, 3, 17, {0, 1}, "ipc:///tmp/esper-job.rank3-1", 8);
  EXPECT_EQ(round_trip(hb), hb);
  EXPECT_EQ(round_trip(hb).command_endpoint, "ipc:///tmp/esper-job.rank3-1");
  EXPECT_EQ(round_trip(hb).world_size, 8);
  EXPECT_EQ(round_trip(heartbeat(1, 100, 2, 3, 4, {5})).world_size, 0) << "0: unknown, the default";
  const auto snap = state_snapshot(
      900, {layer_state(0, 1, 42, {SeedStatus(0, SeedState::TRAINING, SeedState::GERMINATED, 0, 12, 0, 0.0f),
                                   SeedStatus(1, SeedState::GRAFTING, SeedState::TRAINING, 0, 3, 1, 0.25f)})},
      0, 1);
  EXPECT_EQ(round_trip(snap), snap);
}

TEST_P(RoundTrip, RouteTable) {
  RouteTableT table;
  table.version = 9;
  for (const std::int32_t rank : {0, 5}) {
    auto r = std::make_unique<RankRouteT>();
    r->rank = rank;
    r->layers = {static_cast<std::uint32_t>(rank), 7};
    r->command_endpoint = "tcp://10.0.0." + std::to_string(rank + 1) + ":4000" + std::to_string(rank);
    table.ranks.push_back(std::move(r));
  }
  const auto out = round_trip(table);
  EXPECT_EQ(out, table);
  ASSERT_EQ(out.ranks.size(), 2u);
  EXPECT_EQ(out.ranks[1]->command_endpoint, "tcp://10.0.0.6:40005");
}

TEST_P(RoundTrip, CommandDispatch) {
  CommandDispatchT d;
  d.command = std::make_unique<MsgId>(3, 44);
  d.reason = DispatchReason::NO_SUCH_RANK;
  d.ranks = {2, 7};
  d.detail = "rank 9 is not connected to the broker";
  const auto out = round_trip(d);
  EXPECT_EQ(out, d);
  ASSERT_NE(out.command, nullptr);
  EXPECT_EQ(out.command->seq(), 44u);
}

TEST_P(RoundTrip, TelemetryObjectAndFastPathAgree) {
  testing::RandomMessages rnd(5);
  const auto batch = rnd.telemetry(300);
  EXPECT_EQ(round_trip(batch), batch);

  const TelemetryBatchInfo info{batch.layer, batch.rank, batch.window_start_ns, batch.window_end_ns,
                                batch.dropped_records};
  const auto frame = enc_.encode_telemetry(header_, info, batch.seeds, batch.layers);
  bytes_.assign(frame.begin(), frame.end());
  auto msg = dec_.decode(bytes_);
  ASSERT_TRUE(msg) << msg.error().message();
  EXPECT_EQ(unpack(msg->body<TelemetryBatch>()), batch);
}

INSTANTIATE_TEST_SUITE_P(Wire, RoundTrip, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Packed" : "Inline"; });

TEST(Decoder, ReadsFramesAtAnyAlignment) {
  Encoder enc;
  Decoder dec;
  const auto frame = enc.encode(Header{}, heartbeat(1, 100, 2, 3, 4, {5}));
  for (std::size_t shift = 0; shift < 8; ++shift) {
    std::vector<std::uint8_t> buf(frame.size() + 8);
    std::copy(frame.begin(), frame.end(), buf.begin() + static_cast<std::ptrdiff_t>(shift));
    auto msg = dec.decode({buf.data() + shift, frame.size()});
    ASSERT_TRUE(msg) << "shift " << shift << ": " << msg.error().message();
    EXPECT_EQ(msg->body<Heartbeat>()->step(), 1u);
  }
}

TEST(Decoder, BodyAccessorRejectsOtherKinds) {
  Encoder enc;
  Decoder dec;
  const auto frame = enc.encode(Header{}, heartbeat(1, 100, 2, 3, 4, {}));
  std::vector<std::uint8_t> bytes(frame.begin(), frame.end());
  auto msg = dec.decode(bytes);
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->kind(), Body::Heartbeat);
  EXPECT_NE(msg->body<Heartbeat>(), nullptr);
  EXPECT_EQ(msg->body<Command>(), nullptr);
  EXPECT_EQ(msg->body<TelemetryBatch>(), nullptr);
}

TEST(Builders, SeedSetMembership) {
  auto set = seed_ids({3, 7});
  set.ranges.emplace_back(10, 12);
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(SeedSet::Pack(fbb, &set));
  const auto* s = flatbuffers::GetRoot<SeedSet>(fbb.GetBufferPointer());
  for (std::uint32_t seed : {3u, 7u, 10u, 11u, 12u}) EXPECT_TRUE(contains(s, seed)) << seed;
  for (std::uint32_t seed : {0u, 4u, 9u, 13u}) EXPECT_FALSE(contains(s, seed)) << seed;
  EXPECT_FALSE(contains(nullptr, 3));

  const auto all = all_seeds();
  flatbuffers::FlatBufferBuilder fbb2;
  fbb2.Finish(SeedSet::Pack(fbb2, &all));
  EXPECT_TRUE(contains(flatbuffers::GetRoot<SeedSet>(fbb2.GetBufferPointer()), 123456));
}

}  // namespace
}  // namespace esper::wire
