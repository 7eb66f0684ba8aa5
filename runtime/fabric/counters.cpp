#include "fabric/counters.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace esper::fabric {

CounterValues Counters::values() const noexcept {
  const auto v = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  CounterValues out;
  out.frames_received = v(frames_received);
  out.frames_sent = v(frames_sent);
  out.frames_rejected = v(frames_rejected);
  out.values_rejected = v(values_rejected);
  out.commands_sent = v(commands_sent);
  out.commands_retried = v(commands_retried);
  out.commands_deduplicated = v(commands_deduplicated);
  out.commands_applied = v(commands_applied);
  out.commands_failed = v(commands_failed);
  out.commands_invalid_id = v(commands_invalid_id);
  out.commands_id_reused = v(commands_id_reused);
  out.results_sent = v(results_sent);
  out.results_received = v(results_received);
  out.send_would_block = v(send_would_block);
  out.telemetry_batches = v(telemetry_batches);
  out.telemetry_records = v(telemetry_records);
  out.telemetry_batches_dropped = v(telemetry_batches_dropped);
  out.telemetry_records_dropped = v(telemetry_records_dropped);
  out.telemetry_records_dropped_queue = v(telemetry_records_dropped_queue);
  out.telemetry_records_dropped_hwm = v(telemetry_records_dropped_hwm);
  out.telemetry_records_dropped_broker = v(telemetry_records_dropped_broker);
  out.telemetry_records_rejected = v(telemetry_records_rejected);
  out.telemetry_records_missing = v(telemetry_records_missing);
  out.events = v(events);
  out.events_dropped = v(events_dropped);
  out.event_gaps = v(event_gaps);
  out.events_recovered = v(events_recovered);
  out.events_unrecovered = v(events_unrecovered);
  out.event_replays = v(event_replays);
  out.broker_restarts = v(broker_restarts);
  out.broker_outages = v(broker_outages);
  out.telemetry_records_dropped_outage = v(telemetry_records_dropped_outage);
  out.commands_held = v(commands_held);
  out.heartbeats = v(heartbeats);
  out.ranks_lost = v(ranks_lost);
  return out;
}

void RejectLog::add(std::string where, std::string reason, std::span<const std::uint8_t> frame) {
  RejectedFrame r{std::chrono::system_clock::now(), std::move(where), std::move(reason),
                  {frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(std::min(frame.size(), kHeadBytes))},
                  frame.size()};
  std::lock_guard lock(mu_);
  ++total_;
  frames_.push_back(std::move(r));
  while (frames_.size() > capacity_) frames_.pop_front();
}

std::vector<RejectedFrame> RejectLog::recent() const {
  std::lock_guard lock(mu_);
  return {frames_.begin(), frames_.end()};
}

std::uint64_t RejectLog::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

void ValueRejectLog::reject(const char* where, const char* kind, std::int32_t rank, const std::string& problem) {
  std::uint64_t suppressed = 0;
  if (!throttle_.should_log(kind, problem, suppressed)) return;
  if (suppressed > 0) {
    spdlog::warn("{}: rejected {} from source rank {}: {} ({} more of this field not logged)", where, kind, rank,
                 problem, suppressed);
  } else {
    spdlog::warn("{}: rejected {} from source rank {}: {}", where, kind, rank, problem);
  }
}

}  // namespace esper::fabric
