// The four measurements of fabric_bench and the child modes they start.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "harness.hpp"

namespace esper::bench {

class RedisServer;  // redis.hpp; only defined when built with hiredis and redis-server

// 1. Telemetry records/s through the broker vs raw PUB/SUB (telemetry.cpp).
std::vector<Row> run_telemetry(const Config& cfg);
// 2. Idle command round trip vs raw DEALER/ROUTER and Redis Streams (commands.cpp).
std::vector<Row> run_round_trip(const Config& cfg);
// 3. Sustained commands/s with results, one client, one rank (commands.cpp).
std::vector<Row> run_sustained(const Config& cfg);
// 4. Client memory for 10K pending commands (commands.cpp).
std::vector<Row> run_memory(const Config& cfg);

// Child modes: `fabric_bench child <mode> --key value ...`.
int child_publisher(const Args& a);  // pub --kind esper|raw
int child_rank(const Args& a);       // rank --kind esper|raw|redis
int child_mem_client(const Args& a); // mem-client

// Rank loops shared by child processes and in-process (inproc) threads; they return at `stop`.
struct RankStats {
  std::uint64_t applied = 0, deduplicated = 0;
};
RankStats serve_esper_rank(zmq::context_t& ctx, const std::string& broker, std::int32_t rank, bool answer,
                           const std::atomic<bool>& stop);
std::uint64_t serve_raw_rank(zmq::context_t& ctx, const std::string& endpoint, std::size_t reply_bytes,
                             const std::atomic<bool>& stop);

// The command and result every command measurement uses, and their encoded sizes (for the raw
// and Redis baselines, which carry payloads of the same size).
struct CommandSizes {
  std::size_t command = 0, result = 0;
};
CommandSizes command_sizes();

#ifdef ESPER_HAVE_REDIS
// Redis Streams (redis.cpp): a private redis-server and the round-trip client.
int child_redis_rank(const Args& a);
#endif

}  // namespace esper::bench
