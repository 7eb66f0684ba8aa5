// restart_bench: what a broker restart costs telemetry (docs/broker-restarts.md). Ranks publish
// at a steady rate through a broker to a subscriber; the broker is stopped, left down for
// --down-ms, and started again on the same endpoints. Per round: the gap at the subscriber (last
// batch before the stop to first batch after the restart), the recovery (restart to first batch),
// and the records lost, against the outage itself (--down-ms) measured in the same round. Exits
// non-zero when a record is neither received nor counted missing, or telemetry does not resume.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <unistd.h>

#include "fabric/broker.hpp"
#include "fabric/node.hpp"
#include "fabric/subscriber.hpp"

namespace {

using namespace esper;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A broker in a context of its own, as in a process of its own: destroyed, its sockets are closed.
struct OwnBroker {
  explicit OwnBroker(const fabric::BrokerOptions& o) : broker(ctx, o) {}
  zmq::context_t ctx;
  fabric::Broker broker;
};

struct Round {
  double down_ms = 0, gap_ms = 0, recovery_ms = 0;
  std::uint64_t published = 0, received = 0, missing = 0, dropped_outage = 0, outages = 0;
  bool resumed = false;
};

Round run_round(int ranks, std::chrono::milliseconds down, const std::string& base, int round) {
  fabric::BrokerOptions bo;
  bo.bind = base + "-" + std::to_string(round);
  auto broker = std::make_unique<OwnBroker>(bo);
  zmq::context_t ctx;
  std::vector<std::unique_ptr<fabric::Node>> nodes;
  for (int r = 0; r < ranks; ++r) {
    fabric::NodeOptions no;
    no.rank = r;
    no.layers = {static_cast<std::uint32_t>(r)};
    no.heartbeat_interval = 100ms;
    no.telemetry_window = 10ms;
    no.command_endpoint = "none";
    nodes.push_back(std::make_unique<fabric::Node>(ctx, broker->broker.endpoints().cmd, no));
  }
  fabric::SubscriberOptions so;
  so.keepalive = 100ms;
  fabric::Subscriber sub(ctx, broker->broker.endpoints().cmd, so);
  if (!sub.wait_ready(10s)) throw std::runtime_error("the subscriber did not get ready");

  // Publishers: one record per rank every 2 ms, until told to stop.
  std::atomic<bool> publishing{true};
  std::atomic<std::uint64_t> published{0};
  std::thread pub([&] {
    std::uint32_t step = 0;
    while (publishing.load()) {
      for (int r = 0; r < ranks; ++r) {
        const wire::SeedMetrics m(++step, 0, 1, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.1f, 0.0f, 1.0f,
                                  wire::SeedState::TRAINING, 0, 0);
        nodes[static_cast<std::size_t>(r)]->publish(static_cast<std::uint32_t>(r), std::span(&m, 1));
        published.fetch_add(1);
      }
      std::this_thread::sleep_for(2ms);  // the publishing rate, not a wait for anything
    }
  });

  Round out;
  out.down_ms = static_cast<double>(down.count());
  Clock::time_point last_before{}, first_after{}, stopped{}, restarted{};
  std::uint64_t restarted_ns = 0;  // the restart on the wall clock the batches are stamped with
  enum class Phase { Steady, Down, Back } phase = Phase::Steady;
  const auto start = Clock::now();
  const auto read = [&] {
    auto d = sub.next(5ms);
    if (!d) return;
    if (const auto* b = d->message->body<wire::TelemetryBatch>()) {
      out.received += b->seeds() ? b->seeds()->size() : 0;
      const auto now = Clock::now();
      if (phase == Phase::Steady) last_before = now;
      if (phase == Phase::Back && first_after == Clock::time_point{} && d->message->envelope().timestamp_ns() >= restarted_ns) {
        first_after = now;
      }
    }
  };
  while (Clock::now() - start < 1s) read();  // steady state
  phase = Phase::Down;
  stopped = Clock::now();
  broker.reset();
  while (Clock::now() - stopped < down) read();  // the outage (sub.next is the clock)
  broker = std::make_unique<OwnBroker>(bo);
  restarted = Clock::now();
  restarted_ns = wire::wall_clock_ns();
  phase = Phase::Back;
  const auto until = restarted + 20s;
  while (first_after == Clock::time_point{} && Clock::now() < until) read();
  out.resumed = first_after != Clock::time_point{};
  const auto tail = Clock::now();
  while (Clock::now() - tail < 1s) read();  // after the restart, long enough for held telemetry
  publishing = false;
  pub.join();
  for (auto& n : nodes) n->flush();
  // Every record received or counted missing: the running totals tell once a later batch arrives,
  // so the ranks publish one more each until the subscriber has accounted for all.
  const auto accounted = [&] { return out.received + sub.counters().telemetry_records_missing == published.load(); };
  const auto deadline = Clock::now() + 20s;
  auto quiet_since = Clock::now();
  while (!accounted() && Clock::now() < deadline) {
    const auto before = out.received;
    read();
    if (out.received != before) {
      quiet_since = Clock::now();
    } else if (Clock::now() - quiet_since > 500ms) {
      for (int r = 0; r < ranks; ++r) {
        const wire::SeedMetrics m(0, 0, 1, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f, 0.1f, 0.0f, 1.0f, wire::SeedState::TRAINING, 0, 0);
        nodes[static_cast<std::size_t>(r)]->publish(static_cast<std::uint32_t>(r), std::span(&m, 1));
        published.fetch_add(1);
        nodes[static_cast<std::size_t>(r)]->flush();
      }
      quiet_since = Clock::now();
    }
  }
  out.published = published.load();
  out.missing = sub.counters().telemetry_records_missing;
  for (const auto& n : nodes) {
    out.dropped_outage += n->counters().telemetry_records_dropped_outage;
    out.outages += n->counters().broker_outages;
  }
  if (out.resumed) {
    out.gap_ms = ms(first_after - last_before);
    out.recovery_ms = ms(first_after - restarted);
  }
  for (auto& n : nodes) n->stop();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"restart_bench: telemetry gap, recovery time and loss across a broker restart"};
  int ranks = 4;
  int rounds = 3;
  std::vector<int> downs{0, 1000};
  std::string json_path;
  app.add_option("--ranks", ranks, "publishing ranks")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--rounds", rounds, "restarts per outage length")->check(CLI::Range(1, 100))->capture_default_str();
  app.add_option("--down-ms", downs, "outage lengths to measure (ms)")->check(CLI::Range(0, 60'000))->capture_default_str();
  app.add_option("--json", json_path, "also write the rounds here");
  CLI11_PARSE(app, argc, argv);

  const std::string base =
      "ipc://" + (std::filesystem::temp_directory_path() / ("esper-restart-bench-" + std::to_string(::getpid()))).string();
  nlohmann::json all = nlohmann::json::array();
  bool ok = true;
  int round = 0;
  std::printf("%8s %6s %10s %12s %10s %10s %10s %8s\n", "down_ms", "round", "gap_ms", "recovery_ms", "published",
              "received", "missing", "outage");
  for (const int down : downs) {
    for (int i = 0; i < rounds; ++i) {
      const auto r = run_round(ranks, std::chrono::milliseconds(down), base, round++);
      const bool accounted = r.received + r.missing == r.published;
      ok = ok && r.resumed && accounted;
      std::printf("%8.0f %6d %10.1f %12.1f %10llu %10llu %10llu %8llu%s\n", r.down_ms, i, r.gap_ms, r.recovery_ms,
                  static_cast<unsigned long long>(r.published), static_cast<unsigned long long>(r.received),
                  static_cast<unsigned long long>(r.missing), static_cast<unsigned long long>(r.outages),
                  !r.resumed ? "  NOT RESUMED" : !accounted ? "  RECORDS UNACCOUNTED" : "");
      std::fflush(stdout);
      all.push_back({{"down_ms", r.down_ms}, {"gap_ms", r.gap_ms}, {"recovery_ms", r.recovery_ms},
                     {"gap_over_down", r.down_ms > 0 ? r.gap_ms / r.down_ms : 0.0}, {"published", r.published},
                     {"received", r.received}, {"missing", r.missing}, {"dropped_outage", r.dropped_outage},
                     {"outages", r.outages}, {"resumed", r.resumed}});
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << all.dump(2) << "\n";
  if (!ok) std::fprintf(stderr, "restart_bench: telemetry did not resume, or records went unaccounted\n");
  return ok ? 0 : 1;
}
