// Values out of range at every fabric receiver (wire/validate.hpp): well-formed frames whose values
// are not sane — a state of 200, a seed past any layer, a layer past any job, an unknown priority —
// are counted in values_rejected, kept in the RejectLog with the field named, and never acted on,
// while the receiver goes on serving: the subscriber (crafted publications), the broker (events and
// heartbeats), the node (commands), the client (results).
#include <zmq.hpp>

#include <map>

#include "support/hostile_values.hpp"
#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using esper::testing::bad;
using namespace testing;
using wire::SeedState;

bool rejected_with(const RejectLog& log, const std::string& part) {
  for (const auto& r : log.recent()) {
    if (r.reason.find(part) != std::string::npos) return true;
  }
  return false;
}

std::string reasons(const RejectLog& log) {
  std::string s;
  for (const auto& r : log.recent()) s += r.where + ": " + r.reason + "\n";
  return s;
}

wire::SeedMetrics record(std::uint32_t seed, SeedState state) {
  return wire::SeedMetrics(7, seed, 1, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.1f, 0.0f, 1.0f, state, 0, 0);
}

TEST(HostileValues, TheSubscriberRejectsCraftedPublicationsAndDeliversWhatFollows) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  Subscriber sub(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(sub.wait_ready(5s));
  ASSERT_TRUE(sub.sync(5s));
  const auto sequence = sub.state().sequence();
  RawPublisher raw(ctx, broker.endpoints().pub);
  wire::Encoder enc(wire::SourceInfo{0, wire::Role::RANK, "job", "host", 1});
  wire::Header h;
  std::uint64_t id = 0;
  std::map<std::uint32_t, std::uint64_t> batches;  // per layer, as a rank numbers them
  const auto telemetry = [&](std::uint32_t layer, wire::SeedMetrics r) {
    h.msg_id = wire::MsgId(77, ++id);
    h.partition_key = layer;
    h.sequence = ++batches[layer];
    raw.publish(telemetry_topic(layer), h.sequence,
                enc.encode_telemetry(h, wire::TelemetryBatchInfo{layer, 0, 0, 0, 0},
                                     std::span<const wire::SeedMetrics>(&r, 1)));
  };
  telemetry(0, record(1, bad<SeedState>(200)));
  telemetry(0, record(70'000, SeedState::TRAINING));
  telemetry(5000, record(1, SeedState::TRAINING));
  // An event with a forged sequence (the next one the subscriber expects) sent on the telemetry
  // path: events are the broker's to stamp and publish, so it goes no further than the broker.
  h.msg_id = wire::MsgId(77, ++id);
  h.partition_key = 0;
  raw.publish(event_topic(0), sequence + 1,
              enc.encode(h, wire::state_transition(0, 7, 3, bad<SeedState>(200), SeedState::GERMINATED, "x", "y")));
  telemetry(0, record(2, SeedState::GERMINATED));  // sane: delivered

  std::optional<Delivery> d;
  std::uint64_t delivered = 0;
  while ((d = sub.next(2s))) {
    ++delivered;
    const auto* b = d->message->body<wire::TelemetryBatch>();
    ASSERT_NE(b, nullptr) << "only the sane batch is delivered";
    EXPECT_EQ(b->seeds()->Get(0)->seed(), 2u);
    break;
  }
  EXPECT_EQ(delivered, 1u);
  const auto c = sub.counters();
  EXPECT_EQ(c.values_rejected, 3u) << reasons(sub.rejects());
  EXPECT_EQ(c.telemetry_records_rejected, 3u) << "the rejected batches' records are counted at the subscriber's stage";
  EXPECT_EQ(c.frames_rejected, 0u);
  EXPECT_EQ(c.telemetry_records, 1u) << "rejected batches' records are not counted as received";
  EXPECT_EQ(sub.telemetry_batches_missing(), 0u) << "a rejected batch is not a missing one";
  EXPECT_TRUE(rejected_with(sub.rejects(), "seeds[0].state: 200 is not a SeedState")) << reasons(sub.rejects());
  EXPECT_TRUE(rejected_with(sub.rejects(), "seeds[0].seed: 70000 is past")) << reasons(sub.rejects());
  EXPECT_TRUE(rejected_with(sub.rejects(), "layer: 5000 is past")) << reasons(sub.rejects());
  EXPECT_TRUE(rejected_with(broker.rejects(), "an event published on the telemetry path")) << reasons(broker.rejects());
  // The forged event reached no subscriber: no sequence taken, no seed changed.
  EXPECT_EQ(sub.state().sequence(), sequence);
  EXPECT_EQ(c.event_gaps, 0u);
  EXPECT_TRUE(sub.state().seeds().empty());
}

TEST(HostileValues, TheBrokerNeitherStampsNorAppliesABadEventAndIgnoresABadHeartbeat) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  Subscriber sub(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(sub.wait_ready(5s));
  ASSERT_TRUE(sub.sync(5s));
  Node node(ctx, broker.endpoints().cmd, node_options(0));
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  node.emit(wire::state_transition(0, 5, 1, bad<SeedState>(200), SeedState::GERMINATED, "bad", "test"));
  node.emit(wire::state_transition(0, 5, 99'999, SeedState::DORMANT, SeedState::GERMINATED, "bad", "test"));
  node.emit(wire::state_transition(0, 5, 2, SeedState::DORMANT, SeedState::GERMINATED, "good", "test"));

  // The good transition arrives right after the events before it: the bad ones took no sequence.
  std::optional<Delivery> d;
  const wire::StateTransition* t = nullptr;
  while ((d = sub.next(2s))) {
    if (const auto* e = d->message->body<wire::Event>(); e && (t = e->body_as_StateTransition())) break;
  }
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->seed(), 2u);
  EXPECT_EQ(sub.counters().event_gaps, 0u);
  EXPECT_EQ(sub.counters().values_rejected, 0u) << "the subscriber never saw them";
  EXPECT_EQ(broker.counters().values_rejected, 2u) << reasons(broker.rejects());
  EXPECT_TRUE(rejected_with(broker.rejects(), "body.from: 200")) << reasons(broker.rejects());
  EXPECT_TRUE(rejected_with(broker.rejects(), "body.seed: 99999")) << reasons(broker.rejects());
  ASSERT_EQ(sub.state().seeds().size(), 1u);
  EXPECT_EQ(sub.state().seeds().begin()->first, (JobState::Key{0, 2}));

  // A rank announcing a layer past any job is not registered: no route, no RankJoined.
  Node liar(ctx, broker.endpoints().cmd, node_options(1, {5000}));
  ASSERT_TRUE(eventually([&] { return broker.counters().values_rejected >= 3; })) << reasons(broker.rejects());
  EXPECT_TRUE(rejected_with(broker.rejects(), "layers[0]: 5000 is past")) << reasons(broker.rejects());
  EXPECT_EQ(broker.live_ranks(), std::vector<std::int32_t>{0});
}

TEST(HostileValues, ANodeAnswersACommandWithAnUnknownEnumRejectedNamingTheFieldAndNeverAppliesIt) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  std::atomic<int> applied{0};
  ServedNode rank(ctx, broker.endpoints().cmd, node_options(0), ok_handler(0, &applied));
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  Client client(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(ready(client, Path::Direct, 1));

  const auto expect_rejected = [&](const wire::CommandT& cmd, wire::Priority priority, const std::string& field) {
    const auto out = client.call(cmd, priority);
    ASSERT_EQ(out.targets.size(), 1u);
    ASSERT_TRUE(out.targets[0].has_result) << out.targets[0].detail;
    EXPECT_EQ(out.targets[0].result.status, wire::Status::REJECTED);
    EXPECT_NE(out.targets[0].result.error.find(field), std::string::npos) << out.targets[0].result.error;
  };
  expect_rejected(wire::transition_seeds(wire::to_layer(0), 0, wire::seed_ids({1}), bad<SeedState>(200), "x"),
                  wire::Priority::NORMAL, "body.target: 200 is not a SeedState");
  std::vector<wire::CommandT> members;
  members.push_back(wire::shutdown(wire::to_all(), "fine"));
  members.push_back(wire::emergency_stop(wire::to_all(), bad<wire::StopScope>(7), 0, 0, "x"));
  expect_rejected(wire::batch(wire::to_all(), std::move(members), true, false), wire::Priority::NORMAL,
                  "body.commands[1].body.scope: 7");
  expect_rejected(wire::shutdown(wire::to_all(), "x"), bad<wire::Priority>(9), "envelope.priority: 9");
  EXPECT_EQ(applied.load(), 0);
  EXPECT_EQ(rank.node().counters().values_rejected, 3u) << reasons(rank.node().rejects());
  EXPECT_EQ(client.counters().values_rejected, 0u) << "the answers themselves are sane";
  // And the node goes on serving.
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_all(), "x")).all_ok());
  EXPECT_EQ(applied.load(), 1);
}

TEST(HostileValues, AResultWithAValueOutOfRangeEndsItsTargetAsUndecodableAtOnce) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  ServedNode rank(ctx, broker.endpoints().cmd, node_options(0), [](const IncomingCommand&) {
    return wire::command_result(wire::Status::OK, 0, "",
                                {wire::seed_outcome(1, wire::Status::OK, bad<SeedState>(200), SeedState::GERMINATED)});
  });
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  for (const auto path : {Path::Direct, Path::Broker}) {
    SCOPED_TRACE(name(path));
    Client client(ctx, broker.endpoints().cmd, client_options(path));
    ASSERT_TRUE(ready(client, path, 1));
    const auto t0 = std::chrono::steady_clock::now();
    wire::CommandOptions slow;
    slow.timeout_ms = 60'000;
    const auto out =
        client.call(wire::transition_seeds(wire::to_rank(0), 0, wire::seed_ids({1}), SeedState::GERMINATED, "x", false, slow));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "at once, not at the timeout";
    ASSERT_EQ(out.targets.size(), 1u);
    EXPECT_FALSE(out.targets[0].has_result);
    EXPECT_EQ(out.targets[0].rank, 0);
    EXPECT_EQ(out.targets[0].failure, wire::FailureReason::UNDECODABLE);
    EXPECT_NE(out.targets[0].detail.find("outcomes[0].from: 200 is not a SeedState"), std::string::npos)
        << out.targets[0].detail;
    EXPECT_EQ(client.counters().values_rejected, 1u) << reasons(client.rejects());
  }
}

}  // namespace
}  // namespace esper::fabric
