// The consumer side of pub/sub: telemetry and events from every rank through the broker.
//
// Events arrive on a socket of their own (the broker's event XPUB), read before telemetry: no
// telemetry backlog delays or drops them. Every event carries the broker's sequence number; a gap
// (a sequence that skips ahead of the last one seen) is filled by asking the broker to replay the
// missing events ('V'), which are delivered in order (Delivery::recovered) before the one that
// revealed the gap. Events older than the broker keeps cannot be replayed: they are counted
// (events_unrecovered) and, once synced, the state is fetched anew.
// A Subscriber can start at any time (a late joiner, Clone pattern): sync() fetches the broker's
// job state at a sequence number S; afterwards events with sequence <= S are skipped as already
// contained (delivered with `duplicate` set), the one after S is applied, and missed ones are
// replayed as above, so the state never misses or double-applies an event.
// A restarted broker is a new epoch (Meta::epoch on every event it stamps, and the answer to the
// keepalive next() sends every `keepalive`): the subscriber counts it (broker_restarts), keeps its
// state, and counts the new broker's sequence from 1. The keepalive's answer also tells the
// broker's latest event: events missed with no later one to reveal the gap (the last ones before a
// quiet spell, those published before the sockets reconnected to a restarted broker) are replayed
// once the next keepalive still finds them missing. The sockets reconnect by themselves when the
// broker comes back on the same endpoints.
// Telemetry batches carry a per-publisher, per-layer sequence and running record total (Meta):
// missing batches and records are counted (telemetry_batches_missing, telemetry_records_missing),
// and so are the records of batches that arrive but are rejected (telemetry_records_rejected).
// Every decoded message is range-checked (wire/validate.hpp) before it is delivered or applied: one
// with a value out of range is counted (values_rejected), kept in rejects() with the field named,
// logged (the first per field, then at most one per field every 10 s) and not delivered; an event
// so rejected still takes its place in the event sequence, so it is not taken for a gap.
#pragma once

#include <chrono>
#include <deque>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "fabric/counters.hpp"
#include "fabric/framing.hpp"
#include "fabric/job_state.hpp"
#include "wire/codec.hpp"

namespace esper::fabric {

struct SubscriberOptions {
  std::vector<std::string> topics{std::string(kTelemetryPrefix), std::string(kEventPrefix)};
  int rcvhwm = 1000;          // telemetry messages queued at this subscriber
  int event_rcvhwm = 100'000;  // events queued at this subscriber
  wire::DecodeLimits limits{};
  wire::Bounds bounds{};  // what values are accepted (e.g. wire::Bounds::job(layers, seeds))
  std::chrono::milliseconds connect_timeout{10'000};
  // How often next() asks the broker for its epoch and latest event sequence ('K'; 0: never): a
  // restarted broker, and events missed with no later one to reveal the gap, are noticed by it.
  std::chrono::milliseconds keepalive{1000};
};

// One received message. `message` points into `frame`, which it owns.
struct Delivery {
  std::string topic;
  Meta meta;
  std::unique_ptr<zmq::message_t> frame;
  std::optional<wire::Message> message;
  bool duplicate = false;  // an event the synced state already contained
  bool recovered = false;  // an event missed on the socket and replayed by the broker
};

class Subscriber {
 public:
  Subscriber(zmq::context_t& ctx, const std::string& broker, SubscriberOptions options = {});

  // Blocks until the broker echoes a ping on this subscriber's pub/sub connection: from then on
  // the subscription is active at the broker. False on timeout.
  bool wait_ready(std::chrono::milliseconds timeout);
  // Loads the broker's job state snapshot (late join). False on timeout. Events are tracked by
  // sequence from then on (before, from the first one received).
  bool sync(std::chrono::milliseconds timeout);
  // The next decoded telemetry batch or event (events first), or nothing within the timeout.
  // Malformed frames and messages with values out of range are counted, kept in rejects() and
  // skipped. Missed events are replayed here, which waits for the broker (connect_timeout at most).
  std::optional<Delivery> next(std::chrono::milliseconds timeout);

  [[nodiscard]] const JobState& state() const noexcept { return state_; }
  [[nodiscard]] bool synced() const noexcept { return synced_; }
  [[nodiscard]] std::uint64_t telemetry_batches_missing() const noexcept { return batches_missing_; }
  // Missed events too old to be replayed (each time, a synced state was fetched anew).
  [[nodiscard]] std::uint64_t events_unrecovered() const noexcept {
    return counters_.events_unrecovered.load(std::memory_order_relaxed);
  }
  // The broker sequence of the last event delivered, contained or given up on; 0: none yet.
  [[nodiscard]] std::uint64_t event_sequence() const noexcept { return last_event_; }
  // The broker's epoch, from the last event or snapshot received; 0: none yet.
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] CounterValues counters() const noexcept { return counters_.values(); }
  [[nodiscard]] const RejectLog& rejects() const noexcept { return rejects_; }

 private:
  bool request_snapshot(std::chrono::milliseconds timeout);
  // Decodes one publication [topic][meta][envelope] and queues what is to be delivered.
  void receive(std::vector<zmq::message_t>& parts, bool event_socket);
  // Takes the event with broker sequence `seq` (the next one): applied (when synced) and queued
  // for delivery, or skipped when `problem`.
  void take_event(Delivery d, wire::Message msg, const wire::Problem& problem);
  // An event or snapshot stamped with `epoch`: a new one (after a first) is a restarted broker.
  void see_epoch(std::uint64_t epoch);
  // The broker's answer to a keepalive: [K][epoch][latest event sequence].
  void on_keepalive(const std::vector<zmq::message_t>& parts);
  // Fills the events first..last from the broker's replay; what it cannot is counted and, once
  // synced, covered by a new snapshot.
  void recover(std::uint64_t first, std::uint64_t last);
  wire::Problem track_telemetry(const wire::Message& m, const Meta& meta, bool accepted);
  void reject_records(std::uint64_t records, const std::string& why, const zmq::message_t& frame);
  void reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame);

  std::string broker_;
  SubscriberOptions options_;
  zmq::socket_t sub_, evt_, dealer_;
  bool telemetry_socket_ = false, event_socket_ = false;  // which of the two the topics need
  wire::Decoder decoder_;
  Counters counters_;
  RejectLog rejects_;
  ValueRejectLog value_log_;
  JobState state_;
  bool synced_ = false;
  struct Stream {
    std::uint64_t sequence = 0;       // the last batch's
    std::uint64_t records_total = 0;  // the publisher's running record total at it (0: not told)
  };
  std::map<std::pair<std::uint64_t, std::uint32_t>, Stream> streams_;  // (sender, layer)
  std::uint64_t batches_missing_ = 0;
  std::uint64_t last_event_ = 0;
  std::uint64_t epoch_ = 0;
  bool tracking_ = false;  // events are tracked by sequence (synced, or one taken)
  std::chrono::steady_clock::time_point next_keepalive_{};
  std::pair<std::uint64_t, std::uint64_t> probe_{0, 0};  // the last keepalive answer: epoch, latest event
  std::deque<Delivery> ready_;  // decoded, to be delivered in order
};

}  // namespace esper::fabric
