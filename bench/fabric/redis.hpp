// The Redis Streams baseline: a private redis-server (no persistence) started in a temporary
// directory on a free port and a unix socket, stopped by pid; and the round trip the prior art
// used: XADD command -> blocking XREAD at the rank -> XADD result -> blocking XREAD back.
#pragma once

#ifdef ESPER_HAVE_REDIS

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

struct redisContext;

namespace esper::bench {

class RedisServer {
 public:
  explicit RedisServer(const TempDir& dir);  // throws esper::Error when it does not answer PING
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  // "unix:/path/redis.sock" or "tcp:127.0.0.1:PORT": what RedisConnection and the rank child take.
  [[nodiscard]] std::string unix_address() const { return "unix:" + socket_; }
  [[nodiscard]] std::string tcp_address() const { return "tcp:127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string socket_;
};

// One hiredis connection.
class RedisConnection {
 public:
  explicit RedisConnection(const std::string& address, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;
  [[nodiscard]] redisContext* get() const { return c_; }
  bool ping();
  // XADD key MAXLEN ~ 10000 * d <payload>; false on error.
  bool xadd(const std::string& key, const std::vector<std::uint8_t>& payload);
  // XREAD BLOCK block_ms COUNT count STREAMS key last_id: appends the entries' "d" values and moves
  // last_id; returns how many arrived (0 on timeout, -1 on error).
  int xread(const std::string& key, std::string& last_id, int block_ms, int count,
            std::vector<std::vector<std::uint8_t>>& out);
  bool del(const std::string& key);

 private:
  redisContext* c_ = nullptr;
};

}  // namespace esper::bench

#endif
