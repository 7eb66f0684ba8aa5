#include "wire/ids.hpp"

#include <chrono>
#include <random>

namespace esper::wire {

std::uint64_t make_sender_id(Role role, std::int32_t rank) {
  std::random_device entropy;
  const std::uint64_t nonce = (static_cast<std::uint64_t>(entropy()) ^ wall_clock_ns()) & 0xffffffffu;
  const std::uint64_t rank_bits = rank < 0 ? 0xffffffu : static_cast<std::uint64_t>(rank) & 0xffffffu;
  return (static_cast<std::uint64_t>(role) << 56) | (rank_bits << 32) | nonce;
}

std::uint64_t wall_clock_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace esper::wire
