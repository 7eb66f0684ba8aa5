// Free TCP ports for tests that need fixed ones (a broker restarted on the same endpoints takes a
// port and the three after it).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <stdexcept>

namespace esper::testing {

// Whether 127.0.0.1:port can be bound now (SO_REUSEADDR, as libzmq binds).
inline bool tcp_port_free(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// The first of `n` consecutive ports that are free now, drawn at random below the kernel's
// ephemeral range (32768 and up by default), so that no port the kernel hands out meanwhile takes one.
inline std::uint16_t free_tcp_ports(unsigned n) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<unsigned> pick(20'000, 30'000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto base = static_cast<std::uint16_t>(pick(rng));
    bool all = true;
    for (unsigned i = 0; i < n && all; ++i) all = tcp_port_free(static_cast<std::uint16_t>(base + i));
    if (all) return base;
  }
  throw std::runtime_error("no run of free TCP ports found");
}

}  // namespace esper::testing
