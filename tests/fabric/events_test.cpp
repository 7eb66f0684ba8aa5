// Events are not telemetry: they reach subscribers on a socket of their own that a telemetry
// backlog cannot fill, a subscriber that misses some has them replayed by the broker, and every
// telemetry record that goes missing is counted at the stage that dropped it.
#include <array>

#include "bench/telemetry_generator.hpp"
#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

wire::EventT transition(std::uint32_t i) {
  return wire::state_transition(i % 2, i, (i / 2) % 13, static_cast<wire::SeedState>(i % 10),
                                static_cast<wire::SeedState>((i + 1) % 10), "test", "test");
}

// Reads until `events` events have been delivered (or nothing arrives for 5 s): their sequence
// numbers in order, and how many of them were replayed.
struct Seen {
  std::vector<std::uint64_t> sequences;
  std::uint64_t recovered = 0;
  std::uint64_t telemetry_records = 0;
};
Seen read_events(Subscriber& sub, std::size_t events) {
  Seen seen;
  while (seen.sequences.size() < events) {
    auto d = sub.next(5s);
    if (!d) break;
    if (const auto* b = d->message->body<wire::TelemetryBatch>()) {
      seen.telemetry_records += b->seeds() ? b->seeds()->size() : 0;
      continue;
    }
    if (d->message->body<wire::Event>() == nullptr || d->duplicate) continue;
    seen.sequences.push_back(d->meta.sequence);
    if (d->recovered) ++seen.recovered;
  }
  return seen;
}

bool consecutive(const std::vector<std::uint64_t>& s, std::uint64_t first) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != first + i) return false;
  }
  return true;
}

TEST(Meta, IsLittleEndianWithAVersionAndRejectsAnythingElse) {
  const Meta m{.sequence = 0x0102030405060708ull, .records = 0x11223344u, .flags = 0xa1b2, .records_total = 0x11223345ull,
               .epoch = 0x8877665544332211ull};
  const auto b = meta_bytes(m);
  const std::array<std::uint8_t, kMetaSize> want{2,    0,    0xb2, 0xa1, 0x44, 0x33, 0x22, 0x11,  // version, reserved, flags, records
                                                 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // sequence
                                                 0x45, 0x33, 0x22, 0x11, 0,    0,    0,    0,     // records_total
                                                 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};  // epoch
  EXPECT_EQ(b, want);
  Meta back;
  EXPECT_EQ(decode_meta(b, back), nullptr);
  EXPECT_EQ(back, m);
  // Version 1, 24 bytes without the epoch, is still read (epoch 0).
  std::vector<std::uint8_t> v1(b.begin(), b.begin() + kMetaSizeV1);
  v1[0] = 1;
  ASSERT_EQ(decode_meta(v1, back), nullptr);
  EXPECT_EQ(back, (Meta{.sequence = m.sequence, .records = m.records, .flags = m.flags, .records_total = m.records_total}));
  const auto rejects = [](std::span<const std::uint8_t> bytes) {
    Meta out{.sequence = 9};
    const char* why = decode_meta(bytes, out);
    if (why != nullptr) {
      EXPECT_EQ(out.sequence, 9u) << "a rejected frame leaves the output alone";
    }
    return why != nullptr;
  };
  EXPECT_TRUE(rejects(std::span(b).first(16))) << "the 16-byte native layout of before";
  EXPECT_TRUE(rejects({}));
  std::vector<std::uint8_t> longer(b.begin(), b.end());
  longer.push_back(0);
  EXPECT_TRUE(rejects(longer));
  auto bad = b;
  bad[0] = 1;  // version 1 in 32 bytes
  EXPECT_TRUE(rejects(bad));
  bad[0] = 3;  // another version
  EXPECT_TRUE(rejects(bad));
  v1[0] = 2;  // version 2 in 24 bytes
  EXPECT_TRUE(rejects(v1));
  bad = b;
  bad[1] = 1;  // the reserved byte
  EXPECT_TRUE(rejects(bad));
  bad = meta_bytes(Meta{.records = 10, .records_total = 9});  // a running total below the batch
  EXPECT_TRUE(rejects(bad));
  EXPECT_FALSE(rejects(meta_bytes(Meta{.sequence = 5})));   // events: no records, no total
}

// Telemetry floods a subscriber that does not read: the broker drops batches for it, yet every
// event waits on the event socket and arrives, in order, none of them replayed.
TEST(Events, ASubscriberWhoseTelemetryPipeIsSaturatedStillReceivesEveryEventInOrder) {
  zmq::context_t ctx;
  BrokerOptions bo = broker_options("inproc");
  bo.pub_hwm = 4;
  Broker broker(ctx, bo);
  SubscriberOptions so;
  so.rcvhwm = 4;
  Subscriber sub(ctx, broker.endpoints().cmd, so);
  ASSERT_TRUE(sub.wait_ready(5s));
  ASSERT_TRUE(sub.sync(5s));
  auto no = node_options(0, {0, 1});
  no.telemetry_batch_bytes = 56 * 50;
  Node node(ctx, broker.endpoints().cmd, no);
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  bench::TelemetryGenerator gen(100);
  constexpr std::uint32_t kEvents = 300;
  for (std::uint32_t i = 0; i < kEvents; ++i) {
    for (int k = 0; k < 5; ++k) node.publish(i % 2, gen.batch(50));
    node.emit(transition(i));
  }
  node.flush();
  // RankJoined (sequence 1) and the rank's events; the telemetry meanwhile overflowed.
  ASSERT_TRUE(eventually([&] { return broker.counters().events == kEvents + 1; }, 20s))
      << broker.counters().events << " events published, " << broker.counters().events_dropped << " dropped";
  EXPECT_GT(broker.counters().telemetry_records_dropped_broker, 0u) << "the telemetry pipe was meant to overflow";
  EXPECT_EQ(broker.counters().events_dropped, 0u);
  const auto seen = read_events(sub, kEvents + 1);
  ASSERT_EQ(seen.sequences.size(), kEvents + 1);
  EXPECT_TRUE(consecutive(seen.sequences, 1));
  EXPECT_EQ(seen.recovered, 0u);
  EXPECT_EQ(sub.counters().event_gaps, 0u);
  EXPECT_EQ(sub.state().sequence(), kEvents + 1);
}

// A broker whose event pipe to one subscriber is tiny (2 messages each way) and keeps `history`
// events for replay, a synced subscriber of events only, and a node that has emitted `events`
// events at once: once the broker has published or dropped every one (and its own RankJoined),
// some were dropped for that subscriber.
struct OverflowedEvents {
  zmq::context_t ctx;
  SubscriberOptions so;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Subscriber> sub;
  std::unique_ptr<Node> node;

  OverflowedEvents(std::uint32_t events, std::size_t history) {
    BrokerOptions bo = broker_options("inproc");
    bo.event_hwm = 2;
    bo.event_history = history;
    broker = std::make_unique<Broker>(ctx, bo);
    so.topics = {"evt/"};
    so.event_rcvhwm = 2;
    sub = std::make_unique<Subscriber>(ctx, broker->endpoints().cmd, so);
    EXPECT_TRUE(sub->wait_ready(5s));
    EXPECT_TRUE(sub->sync(5s));
    node = std::make_unique<Node>(ctx, broker->endpoints().cmd, node_options(0, {0, 1}));
    for (std::uint32_t i = 0; i < events; ++i) node->emit(transition(i));
    EXPECT_TRUE(eventually([&] {
      const auto c = broker->counters();
      return c.events + c.events_dropped == events + 1;
    }, 20s));
  }
  // A subscriber that joins now: what the broker's state is.
  [[nodiscard]] JobState fresh_state() {
    Subscriber fresh(ctx, broker->endpoints().cmd, so);
    EXPECT_TRUE(fresh.sync(5s));
    return fresh.state();
  }
};

// Events the broker could not publish to a subscriber (its event pipe forced tiny and full) are
// replayed to it in order, before the event that showed the gap; its state ends where the
// broker's is.
TEST(Events, ASubscriberThatMissesEventsRecoversThemFromTheBroker) {
  constexpr std::uint32_t kEvents = 200;
  OverflowedEvents f(kEvents, BrokerOptions{}.event_history);
  auto& broker = *f.broker;
  auto& sub = *f.sub;
  const auto dropped = broker.counters().events_dropped;
  ASSERT_GT(dropped, 0u) << "the event pipe was meant to overflow";
  // The events that made it through, then one more once the pipe has room: the ones dropped at
  // the end are a gap only when a later event arrives.
  auto seen = read_events(sub, broker.counters().events);
  ASSERT_EQ(seen.sequences.size(), broker.counters().events);
  f.node->emit(transition(kEvents));
  const auto rest = read_events(sub, kEvents + 2 - seen.sequences.size());
  seen.sequences.insert(seen.sequences.end(), rest.sequences.begin(), rest.sequences.end());
  seen.recovered += rest.recovered;
  ASSERT_EQ(seen.sequences.size(), kEvents + 2);
  EXPECT_TRUE(consecutive(seen.sequences, 1));
  EXPECT_EQ(seen.recovered, dropped);
  const auto c = sub.counters();
  EXPECT_EQ(c.event_gaps, dropped);
  EXPECT_EQ(c.events_recovered, dropped);
  EXPECT_EQ(c.events_unrecovered, 0u);
  EXPECT_GT(c.event_replays, 0u);
  EXPECT_EQ(sub.state(), f.fresh_state()) << "its state is what a snapshot taken now holds";
}

// Events older than the broker keeps cannot be replayed: they are counted, and the subscriber's
// state is fetched anew, so that it still equals the broker's.
TEST(Events, MissedEventsOlderThanTheBrokerKeepsAreCountedAndTheStateIsResynced) {
  constexpr std::uint32_t kEvents = 100;
  OverflowedEvents f(kEvents, 4);
  auto& broker = *f.broker;
  auto& sub = *f.sub;
  // Read what made it through, then one more event shows the gap.
  (void)read_events(sub, broker.counters().events);
  f.node->emit(transition(kEvents));
  ASSERT_TRUE(eventually([&] {
    (void)sub.next(10ms);
    return sub.event_sequence() == kEvents + 2;
  }, 20s));
  const auto c = sub.counters();
  EXPECT_GT(c.events_unrecovered, 0u);
  EXPECT_EQ(c.event_gaps, broker.counters().events_dropped);
  EXPECT_EQ(sub.state(), f.fresh_state());
}

// Telemetry drops at every stage — the rank's queue, its publisher's high-water mark, the broker,
// and the subscriber (batches it rejects: here, a layer out of its bounds) — add up, with what it
// received, to every record published; and the records the subscriber finds missing from the
// running totals are exactly what the stages upstream of it dropped.
TEST(Telemetry, DropsCountedByStageAddUpToEveryMissingRecord) {
  zmq::context_t ctx;
  BrokerOptions bo = broker_options("inproc");
  bo.pub_hwm = 4;
  Broker broker(ctx, bo);
  SubscriberOptions so;
  so.rcvhwm = 4;
  so.topics = {"tel/"};
  so.bounds.hosted = {{0, 0}};  // layer 1 is not this subscriber's: its batches are rejected
  Subscriber sub(ctx, broker.endpoints().cmd, so);
  ASSERT_TRUE(sub.wait_ready(5s));
  auto no = node_options(0, {0, 1});
  no.telemetry_hwm = 4;
  no.telemetry_batch_bytes = 56 * 50;  // 50 records per batch
  no.telemetry_max_queued = 2;
  Node node(ctx, broker.endpoints().cmd, no);
  bench::TelemetryGenerator gen(100);
  std::uint64_t published = 0;
  Seen seen;
  const auto received = [&] { return seen.telemetry_records + sub.counters().telemetry_records_rejected; };
  const auto read = [&] {
    auto d = sub.next(10ms);
    if (d && d->message->body<wire::TelemetryBatch>()) seen.telemetry_records += d->message->body<wire::TelemetryBatch>()->seeds()->size();
  };
  // First one batch of each layer, which the subscriber takes as the start of each stream.
  for (std::uint32_t layer : {0u, 1u}) node.publish(layer, gen.batch(50));
  published += 100;
  node.flush();
  ASSERT_TRUE(eventually([&] { read(); return received() == published; }));
  // Then a flood it does not read.
  constexpr std::uint64_t kRecords = 60'000;
  for (std::uint64_t i = 0; i < kRecords; i += 50) node.publish(static_cast<std::uint32_t>(i / 50 % 2), gen.batch(50));
  published += kRecords;
  node.flush();
  const auto upstream = [&] {
    const auto n = node.counters();
    return n.telemetry_records_dropped_queue + n.telemetry_records_dropped_hwm +
           broker.counters().telemetry_records_dropped_broker;
  };
  // Every record is now received or counted somewhere; the last batches of both layers, sent once
  // the subscriber reads again, close the streams' totals.
  const auto settled = [&] {
    read();
    return received() + upstream() == published;
  };
  ASSERT_TRUE(eventually(settled, 20s)) << "received " << received() << ", upstream drops " << upstream();
  for (std::uint32_t layer : {0u, 1u}) node.publish(layer, gen.batch(50));
  published += 100;
  node.flush();
  ASSERT_TRUE(eventually(settled, 20s)) << "received " << received() << ", upstream drops " << upstream();

  const auto n = node.counters();
  const auto b = broker.counters();
  const auto s = sub.counters();
  EXPECT_GT(b.telemetry_records_dropped_broker, 0u) << "the subscriber's pipe was meant to overflow";
  EXPECT_GT(s.telemetry_records_rejected, 0u);
  EXPECT_EQ(seen.telemetry_records + s.telemetry_records_rejected + n.telemetry_records_dropped_queue +
                n.telemetry_records_dropped_hwm + b.telemetry_records_dropped_broker,
            published);
  EXPECT_EQ(n.telemetry_records_dropped, n.telemetry_records_dropped_queue + n.telemetry_records_dropped_hwm);
  EXPECT_EQ(b.telemetry_records_dropped, b.telemetry_records_dropped_broker);
  EXPECT_EQ(s.telemetry_records_missing, upstream()) << "the running totals tell the subscriber what never reached it";
  EXPECT_EQ(s.telemetry_records, seen.telemetry_records);
}

// The info request of a client from before the event endpoint gets the two endpoints it parses;
// a new one gets the event endpoint too. A malformed replay request is a counted rejection.
TEST(Events, InfoAnswersOldAndNewClientsAndMalformedReplaysAreRejected) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(broker.endpoints().cmd);
  const auto ask = [&](std::vector<zmq::message_t> request) {
    (void)zmq::send_multipart(dealer, request);
    std::vector<zmq::message_t> reply;
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, 5s) == 0) return reply;
    (void)zmq::recv_multipart(dealer, std::back_inserter(reply));
    return reply;
  };
  std::vector<zmq::message_t> old_info;
  old_info.push_back(type_frame(frame::kInfo));
  auto reply = ask(std::move(old_info));
  ASSERT_EQ(reply.size(), 3u);
  EXPECT_EQ(reply[2].to_string(), broker.endpoints().sub);
  const auto e = ask_endpoints(dealer, broker.endpoints().cmd, 5s);
  EXPECT_EQ(e.evt, broker.endpoints().evt);
  EXPECT_NE(e.evt, e.sub);

  std::vector<zmq::message_t> replay;
  replay.push_back(type_frame(frame::kReplay));
  replay.emplace_back(std::string("abc"));
  (void)zmq::send_multipart(dealer, replay);
  ASSERT_TRUE(eventually([&] { return broker.counters().frames_rejected == 1; }));
  // From the start: nothing published yet but the broker's own events, if any; never "too old".
  std::array<std::uint8_t, 8> from{};
  le::put(from.data(), 1, 8);
  std::vector<zmq::message_t> ok;
  ok.push_back(type_frame(frame::kReplay));
  ok.emplace_back(from.data(), from.size());
  reply = ask(std::move(ok));
  ASSERT_GE(reply.size(), 2u);
  ASSERT_EQ(reply[1].size(), 9u);
  EXPECT_EQ(*static_cast<const std::uint8_t*>(reply[1].data()), kReplayOk);
}

}  // namespace
}  // namespace esper::fabric
