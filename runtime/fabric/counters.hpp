// Counters every fabric component keeps (docs/design.md §3: no drop, retry or rejection is silent),
// and the log of rejected frames kept for inspection. Counters are atomics: written by a
// component's thread, read by anyone through counters().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wire/validate.hpp"

namespace esper::fabric {

struct CounterValues {
  std::uint64_t frames_received = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_rejected = 0;       // malformed or unexpected frames (see RejectLog)
  std::uint64_t values_rejected = 0;       // well-formed frames with a value out of range (wire/validate.hpp; see RejectLog)
  std::uint64_t commands_sent = 0;
  std::uint64_t commands_retried = 0;
  std::uint64_t commands_deduplicated = 0;  // duplicates answered from the result cache
  std::uint64_t commands_applied = 0;
  std::uint64_t commands_failed = 0;       // terminal outcomes other than a result
  std::uint64_t commands_invalid_id = 0;   // commands without a valid msg_id, rejected (see RejectLog)
  std::uint64_t commands_id_reused = 0;    // a known msg_id on a different command, rejected (see RejectLog)
  std::uint64_t results_sent = 0;
  std::uint64_t results_received = 0;
  std::uint64_t send_would_block = 0;
  std::uint64_t telemetry_batches = 0;     // published (node) or forwarded (broker) or received
  std::uint64_t telemetry_records = 0;
  std::uint64_t telemetry_batches_dropped = 0;
  std::uint64_t telemetry_records_dropped = 0;  // this component's drops, every stage it has
  // Telemetry records dropped, by stage (each component counts its own; see docs/guarantees.md):
  std::uint64_t telemetry_records_dropped_queue = 0;  // node: the rank's batch queue was full
  std::uint64_t telemetry_records_dropped_hwm = 0;    // node: the publisher socket's high-water mark
  std::uint64_t telemetry_records_dropped_broker = 0; // broker: a subscriber pipe was full (dropped for all)
  std::uint64_t telemetry_records_rejected = 0;       // subscriber: arrived but undecodable or out of range
  // Subscriber: records its streams' running totals (Meta::records_total) say never arrived, i.e.
  // what the upstream stages dropped while it listened.
  std::uint64_t telemetry_records_missing = 0;
  std::uint64_t events = 0;
  std::uint64_t events_dropped = 0;        // broker: not published (event pipe full); kept for replay
  std::uint64_t event_gaps = 0;            // subscriber: missing event sequence numbers seen
  std::uint64_t events_recovered = 0;      // subscriber: missing events replayed by the broker
  std::uint64_t events_unrecovered = 0;    // subscriber: missing events too old to replay (state resynced)
  std::uint64_t event_replays = 0;         // broker: replay requests answered; subscriber: sent
  std::uint64_t heartbeats = 0;
  std::uint64_t ranks_lost = 0;
  // Broker restarts and outages (docs/broker-restarts.md), as each peer sees them:
  std::uint64_t broker_restarts = 0;  // node, client, subscriber: a new broker epoch seen
  std::uint64_t broker_outages = 0;   // node: the broker went silent (telemetry held from then on)
  std::uint64_t telemetry_records_dropped_outage = 0;  // node: the outage buffer was full (oldest dropped)
  std::uint64_t commands_held = 0;  // broker: commands that found no rank in its first join_grace, held
};

class Counters {
 public:
  std::atomic<std::uint64_t> frames_received{0}, frames_sent{0}, frames_rejected{0}, values_rejected{0}, commands_sent{0},
      commands_retried{0}, commands_deduplicated{0}, commands_applied{0}, commands_failed{0},
      commands_invalid_id{0}, commands_id_reused{0}, results_sent{0},
      results_received{0}, send_would_block{0}, telemetry_batches{0}, telemetry_records{0},
      telemetry_batches_dropped{0}, telemetry_records_dropped{0}, telemetry_records_dropped_queue{0},
      telemetry_records_dropped_hwm{0}, telemetry_records_dropped_broker{0}, telemetry_records_rejected{0},
      telemetry_records_missing{0}, events{0}, events_dropped{0}, event_gaps{0}, events_recovered{0},
      events_unrecovered{0}, event_replays{0}, heartbeats{0}, ranks_lost{0}, broker_restarts{0}, broker_outages{0},
      telemetry_records_dropped_outage{0}, commands_held{0};

  [[nodiscard]] CounterValues values() const noexcept;
};

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }

struct RejectedFrame {
  std::chrono::system_clock::time_point when;
  std::string where;   // "broker cmd", "node", ...
  std::string reason;  // what was wrong
  std::vector<std::uint8_t> head;  // the first bytes of the frame
  std::size_t size = 0;
};

// The last `capacity` rejected frames with their reasons. Thread-safe.
class RejectLog {
 public:
  explicit RejectLog(std::size_t capacity = 64) : capacity_(capacity) {}
  void add(std::string where, std::string reason, std::span<const std::uint8_t> frame);
  [[nodiscard]] std::vector<RejectedFrame> recent() const;
  [[nodiscard]] std::uint64_t total() const;

 private:
  static constexpr std::size_t kHeadBytes = 256;
  mutable std::mutex mu_;
  std::size_t capacity_;
  std::uint64_t total_ = 0;
  std::deque<RejectedFrame> frames_;
};

// The log line of a well-formed message with a value out of range (wire/validate.hpp), which its
// receiver counts (values_rejected) and keeps in its RejectLog: spdlog warns of the first reject of
// each field of each message kind, then of at most one per field every 10 s, with how many were not
// logged since, so that a flood costs counters, not lines. One per receiving thread (not
// thread-safe).
class ValueRejectLog {
 public:
  // "<where>: rejected <kind> from source rank <rank>: <problem>"; formatted only when logged.
  void reject(const char* where, const char* kind, std::int32_t rank, const std::string& problem);

 private:
  wire::RejectThrottle throttle_;
};

}  // namespace esper::fabric
