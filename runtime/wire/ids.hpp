// Message ids and logical clocks.
//
// A msg_id is (sender, seq). The 64-bit sender id is drawn once per process: role in the top 8 bits,
// rank (24 bits, all ones for "no rank") below it, and 32 random bits so that a restarted process
// never reuses its predecessor's ids. seq starts at 1 and counts up; 0 means "no id". A generator
// can therefore never produce seq 0 (its 64 bits do not wrap in any real run), while a sender of 0
// is possible (role UNKNOWN, rank 0, a zero nonce): an id is valid when its seq is not 0.
#pragma once

#include <atomic>
#include <cstdint>

#include "fbs/common_generated.h"

namespace esper::wire {

[[nodiscard]] std::uint64_t make_sender_id(Role role, std::int32_t rank);

class MsgIdGenerator {
 public:
  explicit MsgIdGenerator(std::uint64_t sender) noexcept : sender_(sender) {}
  MsgIdGenerator(Role role, std::int32_t rank) : sender_(make_sender_id(role, rank)) {}

  // Thread-safe.
  [[nodiscard]] MsgId next() noexcept { return MsgId(sender_, seq_.fetch_add(1, std::memory_order_relaxed)); }
  [[nodiscard]] std::uint64_t sender() const noexcept { return sender_; }

 private:
  std::uint64_t sender_;
  std::atomic<std::uint64_t> seq_{1};
};

[[nodiscard]] inline bool is_set(const MsgId& id) noexcept { return id.sender() != 0 || id.seq() != 0; }
// What a MsgIdGenerator can produce: present, with seq > 0. A command must carry such an id.
[[nodiscard]] inline bool is_valid(const MsgId* id) noexcept { return id != nullptr && id->seq() != 0; }

// Lamport clock: tick() before sending and stamp the result; observe() every received stamp.
// Thread-safe; after observe(r) the clock is greater than r and than every earlier value.
class LamportClock {
 public:
  std::uint64_t tick() noexcept { return value_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  std::uint64_t observe(std::uint64_t remote) noexcept {
    std::uint64_t cur = value_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t next = (remote > cur ? remote : cur) + 1;
      if (value_.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return next;
    }
  }
  [[nodiscard]] std::uint64_t now() const noexcept { return value_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// CLOCK_REALTIME in nanoseconds, for Envelope.timestamp_ns.
[[nodiscard]] std::uint64_t wall_clock_ns() noexcept;

}  // namespace esper::wire
