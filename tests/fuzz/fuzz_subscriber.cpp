// Fuzz target: a real fabric::Subscriber fed publications [topic][meta][envelope] from the input
// over inproc, by a stand-in broker that answers its requests ('I', 'S', 'V') — so that the meta
// frame's decoder, the event sequence tracking with its replay, and the telemetry stream
// accounting read what the network could send. The input is a sequence of frames
// (fuzz_support.hpp), taken three at a time: topic, meta, envelope. The topic record's control
// byte says where the triple goes:
//   bit 0   0: published on the telemetry socket, 1: on the event socket;
//   bit 1   1: instead queued as an entry [meta][envelope] of the next replay reply;
//   bit 2   the replay reply's status is "too old" (only with bit 1).
// After the input, a sane telemetry batch on a layer of its own is published and the subscriber read
// until it arrives, then until nothing is left. Checked for every delivery: the message passed the
// subscriber's value checks; a telemetry batch holds the records its meta frame says; events not
// marked duplicate come in strictly increasing sequence, and the synced state's sequence follows
// them (within one broker epoch: a meta frame naming another starts the sequence over); events
// recovered and given up on never exceed the events missed.
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "fabric/framing.hpp"
#include "fabric/subscriber.hpp"
#include "fuzz_support.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/validate.hpp"

namespace esper::fuzz {
namespace {

using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

// The stand-in broker: a ROUTER for requests and the two XPUBs a Subscriber connects to.
class FakeBroker {
 public:
  explicit FakeBroker(zmq::context_t& ctx)
      : router_(ctx, zmq::socket_type::router), tel_(ctx, zmq::socket_type::xpub), evt_(ctx, zmq::socket_type::xpub) {
    for (auto* s : {&router_, &tel_, &evt_}) s->set(zmq::sockopt::linger, 0);
    for (auto* s : {&tel_, &evt_}) s->set(zmq::sockopt::sndhwm, 0);
    router_.bind("inproc://fuzz-broker.cmd");
    tel_.bind("inproc://fuzz-broker.sub");
    evt_.bind("inproc://fuzz-broker.evt");
    wire::Encoder enc(wire::SourceInfo{-1, wire::Role::BROKER, "fuzz", "fuzz", 1});
    const auto f = enc.encode(wire::Header{wire::MsgId(1, 1)}, wire::StateSnapshotT{});
    snapshot_.assign(f.begin(), f.end());
    thread_ = std::thread([this] { run(); });
  }
  ~FakeBroker() {
    stop_ = true;
    thread_.join();
  }
  // Publications are sent from the fuzzing thread; ZeroMQ sockets are not shared: the publishing
  // sockets are used only there (the broker thread touches only the ROUTER).
  void publish(bool events, const std::vector<Bytes>& parts) {
    auto& s = events ? evt_ : tel_;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      s.send(zmq::buffer(parts[i]), i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void drain_subscriptions() {
    for (auto* s : {&tel_, &evt_}) {
      zmq::message_t m;
      while (s->recv(m, zmq::recv_flags::dontwait)) {
      }
    }
  }
  void set_replay(std::deque<Bytes> entries, bool too_old) {
    std::lock_guard lock(mu_);
    replay_ = std::move(entries);
    too_old_ = too_old;
  }

 private:
  void run() {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop_) {
      zmq::poll(&item, 1, 5ms);
      std::vector<zmq::message_t> req;
      if (!zmq::recv_multipart(router_, std::back_inserter(req), zmq::recv_flags::dontwait) || req.size() < 2) continue;
      std::vector<zmq::message_t> reply;
      reply.emplace_back(req[0].data(), req[0].size());
      reply.push_back(fabric::type_frame(fabric::type_of(req[1])));
      switch (fabric::type_of(req[1])) {
        case fabric::frame::kInfo:
          reply.emplace_back(std::string("inproc://fuzz-broker.pub"));
          reply.emplace_back(std::string("inproc://fuzz-broker.sub"));
          reply.emplace_back(std::string("inproc://fuzz-broker.evt"));
          break;
        case fabric::frame::kSnapshot:
          reply.push_back(fabric::encode_meta(fabric::Meta{}));
          reply.emplace_back(snapshot_.data(), snapshot_.size());
          break;
        case fabric::frame::kReplay: {
          std::lock_guard lock(mu_);
          std::uint8_t status[9] = {too_old_ ? fabric::kReplayTooOld : fabric::kReplayOk};
          reply.emplace_back(status, sizeof status);
          for (const auto& e : replay_) reply.emplace_back(e.data(), e.size());
          replay_.clear();  // an answer once: asked again, the subscriber gets nothing more
          break;
        }
        default: continue;  // pings: the subscriber's wait_ready is not used here
      }
      (void)zmq::send_multipart(router_, reply);
    }
  }

  zmq::socket_t router_, tel_, evt_;
  Bytes snapshot_;
  std::mutex mu_;
  std::deque<Bytes> replay_;
  bool too_old_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct World {
  zmq::context_t ctx;
  FakeBroker broker{ctx};
  std::unique_ptr<fabric::Subscriber> sub;
  wire::Encoder sentinel_encoder{wire::SourceInfo{0, wire::Role::RANK, "fuzz", "fuzz", 2}};
  std::uint64_t sentinel_seq = 0;
  std::uint64_t last_event = 0;  // the last non-duplicate event delivered since the last broker restart
  std::uint64_t restarts = 0;    // broker restarts the subscriber had counted then
  World() {
    fabric::SubscriberOptions o;
    o.connect_timeout = 2s;
    o.rcvhwm = 0;
    o.event_rcvhwm = 0;
    sub = std::make_unique<fabric::Subscriber>(ctx, "inproc://fuzz-broker.cmd", o);
    FUZZ_CHECK(sub->sync(5s), "the stand-in broker answers the snapshot request");
  }
};

constexpr std::uint32_t kSentinelLayer = 4095;

void check(World& w, const fabric::Delivery& d) {
  FUZZ_CHECK(d.message.has_value(), "a delivery without a message");
  FUZZ_CHECK(!wire::check(*d.message), "a delivered message failed the value checks");
  if (const auto* b = d.message->body<wire::TelemetryBatch>()) {
    FUZZ_CHECK(d.meta.records == (b->seeds() ? b->seeds()->size() : 0), "a batch delivered with a meta that miscounts it");
  } else if (d.message->body<wire::Event>() != nullptr && !d.duplicate) {
    // A new broker epoch (a restarted broker, as a meta frame may claim) starts the sequence over.
    if (const auto r = w.sub->counters().broker_restarts; r != w.restarts) {
      w.last_event = 0;
      w.restarts = r;
    }
    FUZZ_CHECK(d.meta.sequence > w.last_event, "an event delivered out of sequence");
    w.last_event = d.meta.sequence;
    FUZZ_CHECK(w.sub->event_sequence() >= d.meta.sequence, "the subscriber's sequence is behind what it delivered");
  }
  if (w.sub->synced()) FUZZ_CHECK(w.sub->state().sequence() <= w.sub->event_sequence(), "the state is ahead of the events");
  const auto c = w.sub->counters();
  FUZZ_CHECK(c.events_recovered + c.events_unrecovered <= c.event_gaps, "more events recovered or given up than missed");
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  static fuzz::World w;
  w.broker.drain_subscriptions();
  fuzz::Frames frames({data, size});
  std::deque<fuzz::Bytes> replay;
  bool too_old = false;
  std::vector<std::pair<bool, std::vector<fuzz::Bytes>>> publications;
  fuzz::Frame topic, meta, envelope;
  while (frames.next(topic) && frames.next(meta) && frames.next(envelope)) {
    if (topic.control & 2) {
      replay.emplace_back(meta.bytes.begin(), meta.bytes.end());
      replay.emplace_back(envelope.bytes.begin(), envelope.bytes.end());
      too_old = too_old || (topic.control & 4);
      continue;
    }
    publications.push_back({(topic.control & 1) != 0,
                            {fuzz::Bytes(topic.bytes.begin(), topic.bytes.end()), fuzz::Bytes(meta.bytes.begin(), meta.bytes.end()),
                             fuzz::Bytes(envelope.bytes.begin(), envelope.bytes.end())}});
  }
  w.broker.set_replay(std::move(replay), too_old);
  for (const auto& [events, parts] : publications) w.broker.publish(events, parts);

  // The sentinel: a sane batch on a layer of its own, after everything on the telemetry socket.
  wire::SeedMetrics r(1, 0, 1, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.1f, 0.0f, 1.0f, wire::SeedState::TRAINING, 0, 0);
  wire::Header h;
  h.msg_id = wire::MsgId(0x5e17, ++w.sentinel_seq);
  h.partition_key = fuzz::kSentinelLayer;
  h.sequence = w.sentinel_seq;
  const auto f = w.sentinel_encoder.encode_telemetry(h, wire::TelemetryBatchInfo{fuzz::kSentinelLayer, 0, 0, 0, 0},
                                                     std::span<const wire::SeedMetrics>(&r, 1));
  const auto m = fabric::meta_bytes(fabric::Meta{.sequence = w.sentinel_seq, .records = 1, .records_total = w.sentinel_seq});
  const std::string sentinel_topic = fabric::telemetry_topic(fuzz::kSentinelLayer);
  w.broker.publish(false, {fuzz::Bytes(sentinel_topic.begin(), sentinel_topic.end()), fuzz::Bytes(m.begin(), m.end()),
                           fuzz::Bytes(f.begin(), f.end())});
  bool sentinel = false;
  for (int rounds = 0; rounds < 100'000; ++rounds) {
    auto d = w.sub->next(sentinel ? std::chrono::milliseconds(0) : std::chrono::milliseconds(5000));
    if (!d) break;
    fuzz::check(w, *d);
    if (const auto* b = d->message->body<wire::TelemetryBatch>(); b && b->layer() == fuzz::kSentinelLayer) sentinel = true;
  }
  FUZZ_CHECK(sentinel, "the sentinel batch after the input did not arrive");
  return 0;
}
