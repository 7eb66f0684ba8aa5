// Telemetry and events through a real broker: complete delivery, drop accounting under a forced
// high-water mark, late joiners (snapshot + deltas), and garbage publications.
#include "bench/telemetry_generator.hpp"
#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

std::uint64_t drain(Subscriber& sub, std::uint64_t expect_records, std::chrono::milliseconds quiet = 500ms) {
  std::uint64_t records = 0;
  while (records < expect_records) {
    auto d = sub.next(quiet);
    if (!d) break;
    if (const auto* b = d->message->body<wire::TelemetryBatch>()) records += b->seeds() ? b->seeds()->size() : 0;
  }
  return records;
}

TEST(PubSub, EveryTelemetryRecordArrivesBelowTheHighWaterMark) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("ipc"));
  Subscriber sub(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(sub.wait_ready(5s));
  Node node(ctx, broker.endpoints().cmd, node_options(0));
  bench::TelemetryGenerator gen(100);
  constexpr std::uint64_t kRecords = 20'000;
  for (std::uint64_t i = 0; i < kRecords; i += 500) {
    node.publish(0, gen.batch(500));
    (void)drain(sub, 0, 0ms);
  }
  node.flush();
  std::uint64_t got = 0;
  while (got < kRecords) {
    auto d = sub.next(2s);
    ASSERT_TRUE(d) << "received " << got << " of " << kRecords;
    const auto* b = d->message->body<wire::TelemetryBatch>();
    if (b == nullptr) continue;  // the broker's RankJoined event
    EXPECT_EQ(b->rank(), 0);
    got += b->seeds()->size();
  }
  EXPECT_EQ(got, kRecords);
  EXPECT_EQ(node.counters().telemetry_records, kRecords);
  EXPECT_EQ(node.counters().telemetry_records_dropped, 0u);
  EXPECT_EQ(broker.counters().telemetry_records_dropped, 0u);
  EXPECT_EQ(sub.telemetry_batches_missing(), 0u);
}

// Compression::Auto compresses telemetry only when the link to the broker leaves the host; On and
// Off override it. What the subscriber receives says which way each batch travelled.
TEST(PubSub, TelemetryIsCompressedOnlyOverTcpUnlessAskedOtherwise) {
  zmq::context_t ctx;
  const auto packed_batches = [&](const std::string& transport, Compression c) {
    Broker broker(ctx, broker_options(transport));
    Subscriber sub(ctx, broker.endpoints().cmd);
    EXPECT_TRUE(sub.wait_ready(5s));
    auto o = node_options(0);
    o.compression = c;
    Node node(ctx, broker.endpoints().cmd, o);
    bench::TelemetryGenerator gen(100);
    node.publish(0, gen.batch(1000));  // 56 KB: well above the 1 KiB threshold, and it compresses
    node.flush();
    for (;;) {
      auto d = sub.next(2s);
      if (!d) {
        ADD_FAILURE() << "no telemetry over " << transport;
        return -1;
      }
      if (d->message->body<wire::TelemetryBatch>() != nullptr) return d->message->was_packed() ? 1 : 0;
    }
  };
  EXPECT_EQ(packed_batches("tcp", Compression::Auto), 0) << "tcp to 127.0.0.1 stays on this host";
  EXPECT_EQ(packed_batches("ipc", Compression::Auto), 0);
  EXPECT_EQ(packed_batches("inproc", Compression::Auto), 0);
  EXPECT_EQ(packed_batches("ipc", Compression::On), 1);
  EXPECT_EQ(packed_batches("tcp", Compression::On), 1);
  EXPECT_EQ(packed_batches("tcp", Compression::Off), 0);
}

// Which endpoints Auto treats as this host's: the one question behind its choice.
TEST(Endpoints, OnThisHostAreIpcInprocLoopbackAndThisHostsOwnAddresses) {
  EXPECT_TRUE(endpoint_on_this_host("ipc:///tmp/x.cmd"));
  EXPECT_TRUE(endpoint_on_this_host("inproc://x"));
  EXPECT_TRUE(endpoint_on_this_host("tcp://127.0.0.1:5555"));
  EXPECT_TRUE(endpoint_on_this_host("tcp://localhost:5555"));
  EXPECT_TRUE(endpoint_on_this_host("tcp://[::1]:5555"));
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_TRUE(endpoint_on_this_host("tcp://" + std::string(host) + ":5555")) << host;
  // TEST-NET-2 (RFC 5737): no host has it; a name that does not resolve is not this host either.
  EXPECT_FALSE(endpoint_on_this_host("tcp://198.51.100.7:5555"));
  EXPECT_FALSE(endpoint_on_this_host("tcp://no-such-host.invalid:5555"));
}

TEST(PubSub, DropsAtAForcedHighWaterMarkAreAllCounted) {
  zmq::context_t ctx;
  BrokerOptions bo = broker_options("inproc");
  bo.pub_hwm = 4;  // tiny pipes at the broker...
  Broker broker(ctx, bo);
  SubscriberOptions so;
  so.rcvhwm = 4;   // ...and at a subscriber that does not read until the end
  Subscriber sub(ctx, broker.endpoints().cmd, so);
  ASSERT_TRUE(sub.wait_ready(5s));
  auto no = node_options(0);
  no.telemetry_hwm = 4;
  no.telemetry_batch_bytes = 56 * 50;  // 50 records per batch
  no.telemetry_max_queued = 4;
  Node node(ctx, broker.endpoints().cmd, no);
  bench::TelemetryGenerator gen(100);
  constexpr std::uint64_t kRecords = 50'000;
  for (std::uint64_t i = 0; i < kRecords; i += 50) node.publish(0, gen.batch(50));
  node.stop();  // flushes what is left
  const auto received = drain(sub, kRecords);
  const auto at_node = node.counters().telemetry_records_dropped;
  const auto at_broker = broker.counters().telemetry_records_dropped;
  EXPECT_GT(at_node + at_broker, 0u) << "the high-water mark was meant to force drops";
  EXPECT_LT(received, kRecords);
  EXPECT_EQ(received + at_node + at_broker, kRecords)
      << "received " << received << ", dropped at node " << at_node << ", at broker " << at_broker;
}

TEST(PubSub, LateJoinerSnapshotPlusDeltasEqualsAFullView) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  SubscriberOptions events_only;
  events_only.topics = {"evt/"};
  Subscriber early(ctx, broker.endpoints().cmd, events_only);
  ASSERT_TRUE(early.wait_ready(5s));
  ASSERT_TRUE(early.sync(5s));
  Node node(ctx, broker.endpoints().cmd, node_options(3, {0, 1}));
  std::unique_ptr<Subscriber> late;
  constexpr std::uint32_t kEvents = 400;
  for (std::uint32_t i = 0; i < kEvents; ++i) {
    const auto layer = i % 2;
    const auto seed = (i / 2) % 13;
    node.emit(wire::state_transition(layer, i, seed, static_cast<wire::SeedState>(i % 10),
                                     static_cast<wire::SeedState>((i + 1) % 10), "test", "test"));
    if (i == kEvents / 2) {
      // Mid-run: a new subscriber joins and syncs while events keep flowing.
      late = std::make_unique<Subscriber>(ctx, broker.endpoints().cmd, events_only);
      ASSERT_TRUE(late->sync(5s));
    }
    if (i % 50 == 0) std::this_thread::sleep_for(1ms);
  }
  // The broker applies every event; both subscribers must reach its sequence.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while ((early.state().sequence() < kEvents + 1 || late->state().sequence() < kEvents + 1) &&
         std::chrono::steady_clock::now() < until) {
    (void)early.next(1ms);
    (void)late->next(1ms);
  }
  // Sequence kEvents + 1: the broker's own RankJoined event came first.
  EXPECT_EQ(early.state().sequence(), kEvents + 1);
  EXPECT_EQ(late->state().sequence(), kEvents + 1);
  EXPECT_EQ(early.state(), late->state());
  EXPECT_EQ(early.state().seeds().size(), 26u);
  EXPECT_EQ(early.counters().event_gaps, 0u) << "the early subscriber saw every event";
}

TEST(PubSub, GarbagePublicationsAreCountedAndDeliveryGoesOn) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  Subscriber sub(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(sub.wait_ready(5s));
  RawPublisher publisher(ctx, broker.endpoints().pub);  // returns once the broker subscribed
  auto& raw = publisher.socket();
  raw.send(zmq::buffer(std::string("tel/0")), zmq::send_flags::sndmore);
  raw.send(encode_meta(Meta{1, 1, 0}), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(std::string("garbage")));  // forwarded by the broker, rejected by the subscriber
  raw.send(zmq::buffer(std::string("tel/0")));    // one frame: rejected by the broker
  Node node(ctx, broker.endpoints().cmd, node_options(0));
  bench::TelemetryGenerator gen(10);
  node.publish(0, gen.batch(10));
  node.flush();
  std::optional<Delivery> d;
  while ((d = sub.next(2s))) {
    if (d->message->body<wire::TelemetryBatch>()) break;
  }
  ASSERT_TRUE(d) << "a valid batch after the garbage must still arrive";
  EXPECT_EQ(sub.counters().frames_rejected, 1u);
  EXPECT_EQ(broker.counters().frames_rejected, 1u);
}

}  // namespace
}  // namespace esper::fabric
