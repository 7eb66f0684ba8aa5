// The consumer side of pub/sub: telemetry and events from every rank through the broker.
//
// A Subscriber can start at any time (a late joiner, Clone pattern): sync() fetches the broker's
// job state at a sequence number S; afterwards events with sequence <= S are skipped as already
// contained, the one after S is applied, and a gap (a sequence that skips ahead) triggers a new
// snapshot, so the state never misses or double-applies an event.
// Telemetry batches carry a per-publisher, per-layer sequence: missing batches are counted.
// Every decoded message is range-checked (wire/validate.hpp) before it is delivered or applied: one
// with a value out of range is counted (values_rejected), kept in rejects() with the field named,
// logged (the first per field, then at most one per field every 10 s) and not delivered; an event
// so rejected still takes its place in the event sequence, so it is not taken for a gap.
#pragma once

#include <chrono>
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
  int rcvhwm = 1000;
  wire::DecodeLimits limits{};
  wire::Bounds bounds{};  // what values are accepted (e.g. wire::Bounds::job(layers, seeds))
  std::chrono::milliseconds connect_timeout{10'000};
};

// One received message. `message` points into `frame`, which it owns.
struct Delivery {
  std::string topic;
  Meta meta;
  std::unique_ptr<zmq::message_t> frame;
  std::optional<wire::Message> message;
  bool duplicate = false;  // an event the synced state already contained
};

class Subscriber {
 public:
  Subscriber(zmq::context_t& ctx, const std::string& broker, SubscriberOptions options = {});

  // Blocks until the broker echoes a ping on this subscriber's pub/sub connection: from then on
  // the subscription is active at the broker. False on timeout.
  bool wait_ready(std::chrono::milliseconds timeout);
  // Loads the broker's job state snapshot (late join). False on timeout.
  bool sync(std::chrono::milliseconds timeout);
  // The next decoded telemetry batch or event, or nothing within the timeout. Malformed frames and
  // messages with values out of range are counted, kept in rejects() and skipped.
  std::optional<Delivery> next(std::chrono::milliseconds timeout);

  [[nodiscard]] const JobState& state() const noexcept { return state_; }
  [[nodiscard]] bool synced() const noexcept { return synced_; }
  [[nodiscard]] std::uint64_t telemetry_batches_missing() const noexcept { return batches_missing_; }
  [[nodiscard]] CounterValues counters() const noexcept { return counters_.values(); }
  [[nodiscard]] const RejectLog& rejects() const noexcept { return rejects_; }

 private:
  bool request_snapshot(std::chrono::milliseconds timeout);
  void track_telemetry(const wire::Message& m, bool accepted);
  void reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame);

  std::string broker_;
  SubscriberOptions options_;
  zmq::socket_t sub_, dealer_;
  wire::Decoder decoder_;
  Counters counters_;
  RejectLog rejects_;
  ValueRejectLog value_log_;
  JobState state_;
  bool synced_ = false;
  std::map<std::pair<std::uint64_t, std::uint32_t>, std::uint64_t> last_batch_;  // (sender, layer) -> seq
  std::uint64_t batches_missing_ = 0;
};

}  // namespace esper::fabric
