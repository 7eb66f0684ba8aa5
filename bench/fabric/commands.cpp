// Measurements 2-4: the command path controller (Client) -> broker -> rank (Node) -> result.
//
// 2. Idle round trip, one command at a time, over inproc, ipc and tcp. The broker and the client
//    live in this process (as in rank 0); the rank is a child process (ipc, tcp) or a thread
//    (inproc). Baselines in the same run, interleaved in rounds with the esper samples:
//    raw DEALER/ROUTER (this process's ROUTER -> the rank's DEALER, echo) with payloads of the
//    esper command and result frame sizes, and Redis Streams (XADD -> blocking XREAD at the rank ->
//    XADD -> blocking XREAD back) against a private redis-server, unix socket for inproc and ipc,
//    tcp for tcp.
// 3. Sustained commands/s with results: a window of outstanding commands, one client, one rank
//    process; every command must end with exactly one OK result (lost = sent - OK results).
//    Baseline: the raw DEALER/ROUTER echo with the same window and payload sizes.
// 4. Memory: a client process sends 10K commands to a rank that never answers; its RSS before and
//    after (/proc/self/statm). The broker's and the rank's growth are reported alongside.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

#include "core/error.hpp"
#include "fabric/broker.hpp"
#include "fabric/client.hpp"
#include "fabric/node.hpp"
#include "measurements.hpp"
#include "redis.hpp"
#include "wire/builders.hpp"

namespace esper::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::int32_t kRank = 1;

wire::CommandT bench_command() {
  return wire::transition_seeds(wire::to_rank(kRank), 0, wire::seed_range(0, 15), wire::SeedState::TRAINING,
                                "fabric_bench", false, wire::CommandOptions{10'000, -1});
}

// A realistic answer to a population command: one outcome per selected seed.
wire::CommandResultT bench_result(std::int32_t rank) {
  std::vector<wire::SeedOutcomeT> outcomes;
  for (std::uint32_t s = 0; s < 16; ++s) {
    outcomes.push_back(wire::seed_outcome(s, wire::Status::OK, wire::SeedState::GERMINATED, wire::SeedState::TRAINING));
  }
  return wire::command_result(wire::Status::OK, rank, "", std::move(outcomes), 0, -1);
}

bool same(const wire::MsgId& a, const wire::MsgId& b) { return a.sender() == b.sender() && a.seq() == b.seq(); }

// Stops a loop and joins its thread however the scope is left.
struct ThreadGuard {
  std::atomic<bool>& stop;
  std::thread& thread;
  ~ThreadGuard() {
    stop.store(true);
    if (thread.joinable()) thread.join();
  }
};

bool wait_for_rank(const fabric::Broker& broker, std::int32_t rank, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    const auto live = broker.live_ranks();
    if (std::find(live.begin(), live.end(), rank) != live.end()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// Polls the client until the broker's route table lets it send straight to a rank.
bool wait_for_direct_route(fabric::Client& client, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    const auto routes = client.routes();
    if (std::any_of(routes.begin(), routes.end(), [](const fabric::Route& r) { return r.direct; })) return true;
    (void)client.poll(5ms);
  }
  return false;
}

// This process's side of the raw DEALER/ROUTER baseline.
class RawRouter {
 public:
  RawRouter(zmq::context_t& ctx, const std::string& bind) : s_(ctx, zmq::socket_type::router) {
    s_.set(zmq::sockopt::linger, 0);
    s_.set(zmq::sockopt::sndhwm, 100'000);
    s_.set(zmq::sockopt::rcvhwm, 100'000);
    s_.set(zmq::sockopt::router_mandatory, 1);
    s_.bind(bind);
    endpoint_ = s_.get(zmq::sockopt::last_endpoint);
  }
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  bool accept(std::chrono::milliseconds timeout) {
    std::vector<zmq::message_t> parts;
    if (!recv(parts, timeout) || parts.size() != 2) return false;
    peer_ = parts[0].to_string();
    return true;
  }
  bool send(const std::vector<std::uint8_t>& payload, bool dontwait = false) {
    if (!s_.send(zmq::buffer(peer_), zmq::send_flags::sndmore | (dontwait ? zmq::send_flags::dontwait : zmq::send_flags::none))) {
      return false;
    }
    s_.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);
    return true;
  }
  bool recv(std::vector<zmq::message_t>& parts, std::chrono::milliseconds timeout) {
    parts.clear();
    if (zmq::recv_multipart(s_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return true;
    zmq::pollitem_t item{s_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return false;
    return zmq::recv_multipart(s_, std::back_inserter(parts), zmq::recv_flags::dontwait).has_value();
  }

 private:
  zmq::socket_t s_;
  std::string endpoint_, peer_;
};

std::uint64_t seq_of(const zmq::message_t& m) {
  std::uint64_t s = 0;
  if (m.size() >= 8) std::memcpy(&s, m.data(), 8);
  return s;
}

struct Series {
  std::vector<double> us;
  std::uint64_t lost = 0, dup = 0, reord = 0, wrong = 0;
};

}  // namespace

CommandSizes command_sizes() {
  wire::Encoder controller(wire::SourceInfo{-1, wire::Role::CONTROLLER, "", "", 0});
  wire::Encoder rank(wire::SourceInfo{kRank, wire::Role::RANK, "", "", 0});
  wire::Header h;
  h.msg_id = wire::MsgId(1, 1);
  h.timestamp_ns = wire::wall_clock_ns();
  CommandSizes s;
  s.command = controller.encode(h, bench_command()).size();
  h.correlation_id = wire::MsgId(1, 1);
  s.result = rank.encode(h, bench_result(kRank)).size();
  return s;
}

// The rank answers on its node's I/O thread (NodeOptions::immediate_handler): the command path
// without the hand-off to an application thread that a training rank adds at step boundaries.
RankStats serve_esper_rank(zmq::context_t& ctx, const std::string& broker, std::int32_t rank, bool answer,
                           const std::atomic<bool>& stop) {
  fabric::NodeOptions o;
  o.rank = rank;
  o.layers = {0};
  std::atomic<std::uint64_t> applied{0};
  if (answer) {
    o.immediate_handler = [&applied, rank](const fabric::IncomingCommand&) {
      applied.fetch_add(1, std::memory_order_relaxed);
      // The result's envelope says when the rank answered (TargetOutcome::answered_ns, same host
      // as the client): the round trip splits into its way there and its way back.
      return bench_result(rank);
    };
  }
  fabric::Node node(ctx, broker, o);
  while (!stop.load(std::memory_order_relaxed)) std::this_thread::sleep_for(10ms);
  RankStats st;
  st.applied = applied.load();
  st.deduplicated = node.counters().commands_deduplicated;
  node.stop();
  return st;
}

std::uint64_t serve_raw_rank(zmq::context_t& ctx, const std::string& endpoint, std::size_t reply_bytes,
                             const std::atomic<bool>& stop) {
  zmq::socket_t d(ctx, zmq::socket_type::dealer);
  d.set(zmq::sockopt::linger, 0);
  d.set(zmq::sockopt::sndhwm, 100'000);
  d.set(zmq::sockopt::rcvhwm, 100'000);
  d.connect(endpoint);
  d.send(zmq::str_buffer("hello"), zmq::send_flags::none);
  std::vector<std::uint8_t> reply(std::max<std::size_t>(reply_bytes, 8), 0x5a);
  std::uint64_t answered = 0;
  zmq::pollitem_t item{d.handle(), 0, ZMQ_POLLIN, 0};
  while (!stop.load(std::memory_order_relaxed)) {
    zmq::poll(&item, 1, 20ms);
    for (int burst = 0; burst < 256; ++burst) {
      zmq::message_t m;
      if (!d.recv(m, zmq::recv_flags::dontwait)) break;
      std::memcpy(reply.data(), m.data(), std::min<std::size_t>(8, m.size()));
      d.send(zmq::message_t(reply.data(), reply.size()), zmq::send_flags::none);
      ++answered;
    }
  }
  return answered;
}

int child_rank(const Args& a) {
  const std::string kind = a.str("--kind", "esper");
#ifdef ESPER_HAVE_REDIS
  if (kind == "redis") return child_redis_rank(a);
#endif
  ParentLink parent;
  zmq::context_t ctx;
  if (kind == "raw") {
    std::atomic<bool> stop{false};
    std::thread t([&] {
      parent.wait_stop(std::chrono::hours(1));
      stop.store(true);
    });
    parent.say("ready");
    const auto n = serve_raw_rank(ctx, a.str("--endpoint"), static_cast<std::size_t>(a.num("--reply-bytes", 200)), stop);
    t.join();
    parent.say("done answered=" + std::to_string(n));
    return 0;
  }
  const auto rss0 = rss_bytes();
  std::atomic<bool> stop{false};
  std::thread t([&] {
    parent.wait_stop(std::chrono::hours(1));
    stop.store(true);
  });
  parent.say("ready");
  const auto st = serve_esper_rank(ctx, a.str("--endpoint"), static_cast<std::int32_t>(a.num("--rank", kRank)),
                                   a.num("--answer", 1) != 0, stop);
  t.join();
  parent.say("done applied=" + std::to_string(st.applied) + " dedup=" + std::to_string(st.deduplicated) +
             " rss0=" + std::to_string(rss0) + " rss=" + std::to_string(rss_bytes()));
  return 0;
}

// --- 2. idle round trip

namespace {

std::vector<Row> round_trip_transport(const std::string& t, const Config& cfg, const TempDir& dir, RedisServer* server) {
  zmq::context_t ctx;
  const auto sizes = command_sizes();
  std::atomic<bool> stop{false};

  // esper: broker + client here, the rank there
  fabric::BrokerOptions bo;
  bo.bind = base_endpoint(t, dir, "rtt-" + t);
  fabric::Broker broker(ctx, bo);
  std::unique_ptr<Child> esper_child;
  std::thread esper_thread;
  ThreadGuard esper_guard{stop, esper_thread};
  if (t == "inproc") {
    esper_thread = std::thread([&] { serve_esper_rank(ctx, broker.endpoints().cmd, kRank, true, stop); });
  } else {
    esper_child = std::make_unique<Child>(std::vector<std::string>{"rank", "--kind", "esper", "--endpoint",
                                                                   broker.endpoints().cmd, "--rank", std::to_string(kRank)});
    if (!esper_child->read_line_starting("ready", 20s)) throw Error("the esper rank process did not start");
  }
  if (!wait_for_rank(broker, kRank, 10s)) throw Error("the rank did not register with the broker");
  fabric::Client client(ctx, broker.endpoints().cmd);  // straight to the rank (the default)
  fabric::ClientOptions via_broker;
  via_broker.direct = false;
  fabric::Client broker_client(ctx, broker.endpoints().cmd, via_broker);
  if (!wait_for_direct_route(client, 10s)) throw Error("the client did not get the rank's direct route");
  const auto command = bench_command();

  // raw DEALER/ROUTER
  RawRouter router(ctx, base_endpoint(t, dir, "rtt-raw-" + t));
  std::unique_ptr<Child> raw_child;
  std::thread raw_thread;
  ThreadGuard raw_guard{stop, raw_thread};
  if (t == "inproc") {
    raw_thread = std::thread([&] { serve_raw_rank(ctx, router.endpoint(), sizes.result, stop); });
  } else {
    raw_child = std::make_unique<Child>(std::vector<std::string>{"rank", "--kind", "raw", "--endpoint", router.endpoint(),
                                                                 "--reply-bytes", std::to_string(sizes.result)});
  }
  if (!router.accept(10s)) throw Error("the raw rank did not connect");
  std::vector<std::uint8_t> raw_payload(sizes.command, 0xa5);

#ifdef ESPER_HAVE_REDIS
  std::unique_ptr<RedisConnection> redis;
  std::unique_ptr<Child> redis_child;
  const std::string key = "bench:rtt:" + t;
  std::string res_last = "0-0";
  if (server != nullptr) {
    const std::string address = t == "tcp" ? server->tcp_address() : server->unix_address();
    redis = std::make_unique<RedisConnection>(address);
    redis->del(key + ":cmd");
    redis->del(key + ":res");
    redis_child = std::make_unique<Child>(std::vector<std::string>{"rank", "--kind", "redis", "--endpoint", address, "--key",
                                                                   key, "--reply-bytes", std::to_string(sizes.result)});
    if (!redis_child->read_line_starting("ready", 10s)) throw Error("the redis rank process did not start");
  }
  std::vector<std::vector<std::uint8_t>> redis_got;
#else
  (void)server;
  const bool has_redis = false;
#endif

  Series esper, via, raw, red;
  std::vector<double> there_us, back_us;  // client send -> rank handler, rank handler -> client (direct)
  std::uint64_t raw_seq = 0;
  const auto esper_round_trip = [&](fabric::Client& c, Series& series, bool record, bool split) {
    const auto t0 = Clock::now();
    const auto wall0 = wire::wall_clock_ns();
    const auto id = c.send(command);
    if (!id) {
      ++series.lost;
      return;
    }
    while (Clock::now() - t0 < 5s) {
      for (auto& o : c.poll(100ms)) {
        if (!same(o.id, *id)) {
          ++series.reord;  // an earlier command completing now: cannot happen one at a time
          continue;
        }
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        if (!o.all_ok() || o.targets.size() != 1 || o.targets[0].rank != kRank) {
          ++series.wrong;
        } else if (record) {
          series.us.push_back(us);
          if (split) {
            const auto handled = static_cast<double>(o.targets[0].answered_ns);
            there_us.push_back((handled - static_cast<double>(wall0)) / 1e3);
            back_us.push_back((static_cast<double>(wire::wall_clock_ns()) - handled) / 1e3);
          }
        }
        return;
      }
    }
    ++series.lost;
  };
  const auto esper_once = [&](bool record) { esper_round_trip(client, esper, record, true); };
  const auto via_once = [&](bool record) { esper_round_trip(broker_client, via, record, false); };
  const auto raw_once = [&](bool record) {
    const std::uint64_t seq = ++raw_seq;
    std::memcpy(raw_payload.data(), &seq, 8);
    const auto t0 = Clock::now();
    router.send(raw_payload);
    std::vector<zmq::message_t> parts;
    while (Clock::now() - t0 < 5s) {
      if (!router.recv(parts, 100ms)) continue;
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (parts.size() != 2 || parts[1].size() != sizes.result) {
        ++raw.wrong;
        return;
      }
      const auto got = seq_of(parts[1]);
      if (got < seq) {
        ++raw.dup;
        continue;
      }
      if (got != seq) ++raw.wrong;
      else if (record) raw.us.push_back(us);
      return;
    }
    ++raw.lost;
  };
#ifdef ESPER_HAVE_REDIS
  std::vector<std::uint8_t> redis_payload(sizes.command, 0xa5);
  std::uint64_t redis_seq = 0;
  const auto redis_once = [&](bool record) {
    const std::uint64_t seq = ++redis_seq;
    std::memcpy(redis_payload.data(), &seq, 8);
    const auto t0 = Clock::now();
    if (!redis->xadd(key + ":cmd", redis_payload)) {
      ++red.lost;
      return;
    }
    while (Clock::now() - t0 < 5s) {
      redis_got.clear();
      const int n = redis->xread(key + ":res", res_last, 1000, 1, redis_got);
      if (n < 0) break;
      if (n == 0) continue;
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      std::uint64_t got = 0;
      if (redis_got[0].size() >= 8) std::memcpy(&got, redis_got[0].data(), 8);
      if (got < seq) {
        ++red.dup;
        continue;
      }
      if (got != seq || redis_got[0].size() != sizes.result) ++red.wrong;
      else if (record) red.us.push_back(us);
      return;
    }
    ++red.lost;
  };
  const bool has_redis = server != nullptr;
#endif

  // Warm-up, then rounds that interleave the three so that load from elsewhere hits all alike.
  const std::size_t warm = cfg.quick ? 100 : 300;
  for (std::size_t i = 0; i < warm; ++i) {
    esper_once(false);
    via_once(false);
    raw_once(false);
#ifdef ESPER_HAVE_REDIS
    if (has_redis) redis_once(false);
#endif
  }
  constexpr int kRounds = 5;
  const std::size_t per_round = std::max<std::size_t>(1, cfg.rtt_samples / kRounds);
  const auto deadline = Clock::now() + (cfg.quick ? 20s : 60s);
  for (int round = 0; round < kRounds && Clock::now() < deadline; ++round) {
    for (std::size_t i = 0; i < per_round && Clock::now() < deadline; ++i) esper_once(true);
    for (std::size_t i = 0; i < per_round && Clock::now() < deadline; ++i) via_once(true);
    for (std::size_t i = 0; i < per_round && Clock::now() < deadline; ++i) raw_once(true);
#ifdef ESPER_HAVE_REDIS
    if (has_redis) {
      for (std::size_t i = 0; i < per_round && Clock::now() < deadline; ++i) redis_once(true);
    }
#endif
  }
  const auto counters = client.counters();
  stop.store(true);
  std::uint64_t rank_dedup = 0;
  if (esper_child) {
    esper_child->send_line("exit");
    if (const auto done = esper_child->read_line_starting("done", 5s)) rank_dedup = static_cast<std::uint64_t>(field(*done, "dedup"));
  }

  const auto e = summarize(esper.us);
  const auto v = summarize(via.us);
  const auto b = summarize(raw.us);
  const auto r = summarize(red.us);
  const auto there = summarize(there_us);
  const auto back = summarize(back_us);
  std::fprintf(stderr,
               "  rtt %s: esper p50 %.0f p99 %.0f us (n=%zu; p50 there %.0f, back %.0f) | via broker p50 %.0f p99 %.0f | "
               "raw p50 %.0f p99 %.0f | redis p50 %.0f p99 %.0f\n",
               t.c_str(), e.p50, e.p99, e.n, there.p50, back.p50, v.p50, v.p99, b.p50, b.p99, r.p50, r.p99);
  const std::string redis_transport = t == "tcp" ? "Redis XADD/XREAD tcp" : "Redis XADD/XREAD unix";
  std::vector<Row> rows;
  const auto row = [&](const std::string& what, double value, const std::string& base_name, double base,
                       const std::string& target, double limit, const Series& series = {}) {
    const Series& s = series.us.empty() ? esper : series;
    const auto st = summarize(s.us);
    Row x;
    x.group = "rtt";
    x.what = what;
    x.transport = t;
    x.procs = t == "inproc" ? 1 : 2;
    x.unit = "us";
    x.value = value;
    x.baseline = base_name;
    x.base_value = base;
    x.ratio = base > 0 ? value / base : 0;
    x.target = target;
    x.met = limit > 0 && base > 0 ? (x.ratio <= limit ? 1 : 0) : -1;
    x.lost = s.lost;
    x.dup = s.dup;  // delivered twice to the caller; duplicates the client suppressed are in the JSON
    x.reord = s.reord;
    x.wrong = s.wrong;
    x.extra = {{"samples", static_cast<double>(s.us.size())},
               {"baseline_samples", static_cast<double>(base_name.rfind("Redis", 0) == 0 ? r.n : b.n)},
               {"command_bytes", static_cast<double>(sizes.command)},
               {"result_bytes", static_cast<double>(sizes.result)},
               {"esper_mean_us", st.mean},
               {"esper_p90_us", st.p90},
               {"esper_max_us", st.max},
               {"there_p50_us", there.p50},
               {"back_p50_us", back.p50},
               {"there_p99_us", there.p99},
               {"back_p99_us", back.p99},
               {"client_retries", static_cast<double>(counters.commands_retried)},
               {"client_suppressed_duplicates", static_cast<double>(counters.commands_deduplicated)},
               {"rank_dedup", static_cast<double>(rank_dedup)},
               {"raw_lost_dup_wrong", static_cast<double>(raw.lost + raw.dup + raw.wrong)},
               {"redis_lost_dup_wrong", static_cast<double>(red.lost + red.dup + red.wrong)}};
    rows.push_back(std::move(x));
  };
  row("round trip p50", e.p50, "raw DEALER/ROUTER", b.p50, "<=2.5x raw", 2.5);
  row("round trip p99", e.p99, "raw DEALER/ROUTER", b.p99, "<=2.5x raw", 2.5);
  row("round trip p99.9", e.p999, "raw DEALER/ROUTER", b.p999, "-", 0);
  if (has_redis) {
    row("round trip p50", e.p50, redis_transport, r.p50, "<1x Redis", 0.999999);
    row("round trip p99", e.p99, redis_transport, r.p99, "<1x Redis", 0.999999);
    row("round trip p99.9", e.p999, redis_transport, r.p999, "-", 0);
  }
  // The same command through the broker (two hops each way), for comparison: no target.
  row("round trip p50, via broker", v.p50, "raw DEALER/ROUTER", b.p50, "-", 0, via);
  row("round trip p99, via broker", v.p99, "raw DEALER/ROUTER", b.p99, "-", 0, via);
  return rows;
}

}  // namespace

std::vector<Row> run_round_trip(const Config& cfg) {
  TempDir dir;
  std::vector<Row> rows;
#ifdef ESPER_HAVE_REDIS
  std::unique_ptr<RedisServer> server;
  if (cfg.redis) {
    try {
      server = std::make_unique<RedisServer>(dir);
      std::fprintf(stderr, "  redis-server pid %d on %s and %s\n", static_cast<int>(server->pid()),
                   server->unix_address().c_str(), server->tcp_address().c_str());
    } catch (const Error& e) {
      std::fprintf(stderr, "  Redis baseline skipped: %s\n", e.what());
    }
  }
  RedisServer* redis = server.get();
#else
  RedisServer* redis = nullptr;
  if (cfg.redis) std::fprintf(stderr, "  Redis baseline skipped: built without hiredis/redis-server\n");
#endif
  std::vector<std::string> transports{"inproc"};
  for (const auto& t : cfg.transports) {
    if (t != "inproc") transports.push_back(t);
  }
  for (const auto& t : transports) {
    auto r = round_trip_transport(t, cfg, dir, redis);
    rows.insert(rows.end(), r.begin(), r.end());
  }
  return rows;
}

// --- 3. sustained commands/s

namespace {

struct Sustained {
  double secs = 0;
  std::uint64_t sent = 0, ok = 0, lost = 0, dup = 0, reord = 0, wrong = 0, retried = 0;
  std::map<std::string, std::uint64_t> failures;
  [[nodiscard]] double rate() const { return secs > 0 ? static_cast<double>(ok) / secs : 0; }
};

Sustained sustained_esper(const std::string& t, const Config& cfg, const TempDir& dir, int serial) {
  zmq::context_t ctx;
  fabric::BrokerOptions bo;
  bo.bind = base_endpoint(t, dir, "sus" + std::to_string(serial));
  fabric::Broker broker(ctx, bo);
  Child rank({"rank", "--kind", "esper", "--endpoint", broker.endpoints().cmd, "--rank", std::to_string(kRank)});
  if (!rank.read_line_starting("ready", 20s) || !wait_for_rank(broker, kRank, 10s)) throw Error("rank did not start");
  fabric::Client client(ctx, broker.endpoints().cmd);
  if (!wait_for_direct_route(client, 10s)) throw Error("the client did not get the rank's direct route");
  const auto command = bench_command();
  const std::uint64_t n = cfg.sustained_commands;
  std::vector<std::uint8_t> got(n, 0);
  std::uint64_t first_seq = 0, max_index = 0, completed = 0, inflight = 0;
  Sustained s;
  const auto t0 = Clock::now();
  const auto deadline = t0 + (cfg.quick ? 15s : 40s);
  while (completed < s.sent || s.sent < n) {
    if (Clock::now() > deadline) break;
    while (inflight < cfg.sustained_window && s.sent < n) {
      const auto id = client.send(command);
      if (!id) break;  // would block: poll first
      if (s.sent == 0) first_seq = id->seq();
      ++s.sent;
      ++inflight;
    }
    for (const auto& o : client.poll(1ms)) {
      ++completed;
      --inflight;
      const auto i = o.id.seq() - first_seq;
      if (i >= n) {
        ++s.wrong;
        continue;
      }
      if (got[i]++) {
        ++s.dup;
        continue;
      }
      if (i < max_index) ++s.reord;
      max_index = std::max(max_index, i);
      if (o.all_ok()) {
        ++s.ok;
        continue;
      }
      ++s.wrong;
      for (const auto& tgt : o.targets) {
        const std::string why = tgt.has_result ? "result " + std::string(wire::EnumNameStatus(tgt.result.status)) + " " + tgt.result.error
                                               : "failure " + std::string(wire::EnumNameFailureReason(tgt.failure)) + " " + tgt.detail;
        if (s.failures[why]++ == 0) std::fprintf(stderr, "    first non-OK outcome: %s (attempts %u)\n", why.c_str(), tgt.attempts);
      }
    }
  }
  s.secs = seconds_since(t0);
  s.lost = n - std::min(n, s.ok + s.wrong);
  s.retried = client.counters().commands_retried;
  rank.send_line("exit");
  if (const auto done = rank.read_line_starting("done", 5s)) {
    const auto applied = static_cast<std::uint64_t>(field(*done, "applied"));
    if (applied > s.sent) s.dup += applied - s.sent;  // applied twice: a dedup failure
  }
  return s;
}

Sustained sustained_raw(const std::string& t, const Config& cfg, const TempDir& dir, int serial) {
  zmq::context_t ctx;
  const auto sizes = command_sizes();
  RawRouter router(ctx, base_endpoint(t, dir, "sus-raw" + std::to_string(serial)));
  Child rank({"rank", "--kind", "raw", "--endpoint", router.endpoint(), "--reply-bytes", std::to_string(sizes.result)});
  if (!router.accept(10s)) throw Error("raw rank did not connect");
  std::vector<std::uint8_t> payload(sizes.command, 0xa5);
  const std::uint64_t n = cfg.sustained_commands;
  std::vector<std::uint8_t> got(n + 1, 0);
  std::uint64_t max_seq = 0, completed = 0, inflight = 0;
  Sustained s;
  std::vector<zmq::message_t> parts;
  const auto t0 = Clock::now();
  const auto deadline = t0 + (cfg.quick ? 15s : 40s);
  while ((completed < s.sent || s.sent < n) && Clock::now() < deadline) {
    while (inflight < cfg.sustained_window && s.sent < n) {
      const std::uint64_t seq = s.sent + 1;
      std::memcpy(payload.data(), &seq, 8);
      if (!router.send(payload, true)) break;
      ++s.sent;
      ++inflight;
    }
    if (!router.recv(parts, 1ms)) continue;
    do {
      ++completed;
      --inflight;
      const auto seq = parts.size() == 2 ? seq_of(parts[1]) : 0;
      if (seq == 0 || seq > n || parts[1].size() != sizes.result) {
        ++s.wrong;
        continue;
      }
      if (got[seq]++) {
        ++s.dup;
        continue;
      }
      if (seq < max_seq) ++s.reord;
      max_seq = std::max(max_seq, seq);
      ++s.ok;
    } while (router.recv(parts, 0ms));
  }
  s.secs = seconds_since(t0);
  s.lost = n - std::min(n, s.ok + s.wrong);
  return s;
}

}  // namespace

std::vector<Row> run_sustained(const Config& cfg) {
  TempDir dir;
  std::vector<Row> rows;
  int serial = 0;
  for (const auto& t : cfg.transports) {
    if (t == "inproc") continue;
    const auto b = sustained_raw(t, cfg, dir, ++serial);
    const auto e = sustained_esper(t, cfg, dir, ++serial);
    std::fprintf(stderr, "  sustained %s: esper %.1fK/s (%llu of %llu ok), raw %.1fK/s\n", t.c_str(), e.rate() / 1e3,
                 static_cast<unsigned long long>(e.ok), static_cast<unsigned long long>(e.sent), b.rate() / 1e3);
    Row r;
    r.group = "sustained";
    r.what = "commands/s, window " + std::to_string(cfg.sustained_window);
    r.transport = t;
    r.procs = 2;
    r.unit = "cmd/s";
    r.value = e.rate();
    r.baseline = "raw DEALER/ROUTER";
    r.base_value = b.rate();
    r.ratio = b.rate() > 0 ? e.rate() / b.rate() : 0;
    r.target = ">=50K/s, 0 lost";
    r.met = e.rate() >= 50'000 && e.lost == 0 && e.dup == 0 ? 1 : 0;
    r.lost = e.lost;
    r.dup = e.dup;
    r.reord = e.reord;
    r.wrong = e.wrong;
    r.extra = {{"commands", static_cast<double>(cfg.sustained_commands)},
               {"seconds", e.secs},
               {"client_retries", static_cast<double>(e.retried)},
               {"raw_seconds", b.secs},
               {"raw_lost_dup_reord_wrong", static_cast<double>(b.lost + b.dup + b.reord + b.wrong)}};
    rows.push_back(std::move(r));
  }
  return rows;
}

// --- 4. memory for pending commands

int child_mem_client(const Args& a) {
  ParentLink parent;
  zmq::context_t ctx;
  fabric::Client client(ctx, a.str("--endpoint"));
  if (!wait_for_direct_route(client, 10s)) return 1;
  const auto count = static_cast<std::size_t>(a.num("--count", 10'000));
  const auto command = bench_command();
  // Warm-up: one command pending, so the encoder, the socket and the table exist before measuring.
  if (!client.send(command)) return 1;
  (void)client.poll(100ms);
  const auto rss0 = rss_bytes();
  std::size_t sent = 0, would_block = 0;
  const auto t0 = Clock::now();
  while (sent < count && Clock::now() - t0 < 10s) {
    if (client.send(command)) {
      ++sent;
    } else {
      ++would_block;
      (void)client.poll(1ms);
    }
  }
  // Let the dispatch acknowledgements arrive (and the first retries go out) before measuring.
  std::size_t finished = 0;
  const auto settle = Clock::now();
  while (Clock::now() - settle < 300ms) finished += client.poll(10ms).size();
  const auto rss1 = rss_bytes();
  parent.say("done sent=" + std::to_string(sent) + " pending=" + std::to_string(client.pending()) +
             " finished=" + std::to_string(finished) + " rss0=" + std::to_string(rss0) + " rss1=" + std::to_string(rss1) +
             " would_block=" + std::to_string(would_block) + " retried=" + std::to_string(client.counters().commands_retried));
  parent.wait_stop(30s);
  return 0;
}

std::vector<Row> run_memory(const Config& cfg) {
  TempDir dir;
  zmq::context_t ctx;
  fabric::BrokerOptions bo;
  bo.bind = base_endpoint("ipc", dir, "mem");
  fabric::Broker broker(ctx, bo);
  Child rank({"rank", "--kind", "esper", "--endpoint", broker.endpoints().cmd, "--rank", std::to_string(kRank), "--answer", "0"});
  if (!rank.read_line_starting("ready", 20s) || !wait_for_rank(broker, kRank, 10s)) throw Error("rank did not start");
  const auto broker_rss0 = rss_bytes();
  Child client({"mem-client", "--endpoint", broker.endpoints().cmd, "--count", std::to_string(cfg.pending_commands)});
  const auto done = client.read_line_starting("done", 30s);
  if (!done) throw Error("the memory client did not finish");
  const auto broker_rss1 = rss_bytes();
  rank.send_line("exit");
  const auto rank_done = rank.read_line_starting("done", 10s);
  client.finish(5s);

  const double mb = 1024.0 * 1024.0;
  const double rss0 = field(*done, "rss0"), rss1 = field(*done, "rss1");
  const double pending = field(*done, "pending");
  const double delta = rss1 - rss0;
  std::fprintf(stderr, "  memory: client %s\n", done->c_str());
  std::vector<Row> rows;
  Row r;
  r.group = "memory";
  r.what = std::to_string(cfg.pending_commands / 1000) + "K pending, client";
  r.transport = "ipc";
  r.procs = 3;
  r.unit = "MB";
  r.value = delta / mb;
  r.baseline = "client RSS before";
  r.base_value = rss0 / mb;
  r.target = "<10 MB";
  r.met = r.value < 10.0 ? 1 : 0;
  const double sent = field(*done, "sent");
  r.lost = sent > pending + field(*done, "finished") ? static_cast<std::uint64_t>(sent - pending - field(*done, "finished")) : 0;
  r.wrong = static_cast<std::uint64_t>(field(*done, "finished"));  // a never-answered command must not finish
  r.extra = {{"bytes_per_pending", pending > 0 ? delta / pending : 0},
             {"pending", pending},
             {"client_retries", field(*done, "retried")},
             {"broker_delta_MB", (static_cast<double>(broker_rss1) - static_cast<double>(broker_rss0)) / mb}};
  if (rank_done) {
    r.extra["rank_delta_MB"] = (field(*rank_done, "rss") - field(*rank_done, "rss0")) / mb;
  }
  rows.push_back(r);
  Row br = r;
  br.what = std::to_string(cfg.pending_commands / 1000) + "K pending, broker";
  br.value = r.extra["broker_delta_MB"];
  br.baseline = "broker proc RSS before";
  br.base_value = static_cast<double>(broker_rss0) / mb;
  br.target = "-";
  br.met = -1;
  br.lost = br.wrong = 0;
  rows.push_back(br);
  if (rank_done) {
    Row rr = br;
    rr.what = std::to_string(cfg.pending_commands / 1000) + "K queued, rank";
    rr.value = r.extra["rank_delta_MB"];
    rr.baseline = "rank RSS at start";
    rr.base_value = field(*rank_done, "rss0") / mb;
    rows.push_back(rr);
  }
  return rows;
}

}  // namespace esper::bench
