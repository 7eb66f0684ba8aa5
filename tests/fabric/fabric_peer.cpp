// A separate process for the fabric's multi-process tests: a rank that serves commands, a
// telemetry publisher, or an event source. Prints "ready ..." when connected and "done k=v ..."
// before exiting; stops cleanly on SIGTERM/SIGINT. Should the node's I/O thread fail (test hook
// --fail-at-heartbeat N), it prints "failed: ..." and exits with status 1.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>

#include "bench/telemetry_generator.hpp"
#include "fabric/node.hpp"
#include "wire/builders.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::map<std::string, std::string> parse(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 2; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  return a;
}

std::vector<std::uint32_t> list(const std::string& s) {
  std::vector<std::uint32_t> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(static_cast<std::uint32_t>(std::stoul(s.substr(start, comma - start))));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string get(const std::map<std::string, std::string>& a, const std::string& k, const std::string& def = "") {
  const auto it = a.find(k);
  return it == a.end() ? def : it->second;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace esper;
  using namespace std::chrono_literals;
  if (argc < 2) {
    std::fprintf(stderr, "usage: fabric_peer rank|publish|events --broker EP ...\n");
    return 2;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  const std::string mode = argv[1];
  const auto a = parse(argc, argv);
  zmq::context_t ctx;
  fabric::NodeOptions o;
  o.rank = std::stoi(get(a, "--rank", "0"));
  o.layers = list(get(a, "--layers", "0"));
  o.heartbeat_interval = std::chrono::milliseconds(std::stoi(get(a, "--heartbeat-ms", "1000")));
  o.telemetry_hwm = std::stoi(get(a, "--hwm", "1000"));
  o.telemetry_window = std::chrono::milliseconds(std::stoi(get(a, "--window-ms", "100")));
  o.telemetry_max_queued = std::stoul(get(a, "--max-queued", "16"));
  o.faults.drop_results = static_cast<std::uint32_t>(std::stoul(get(a, "--drop-results", "0")));
  o.faults.fail_at_heartbeat = static_cast<std::uint32_t>(std::stoul(get(a, "--fail-at-heartbeat", "0")));
  fabric::Node node(ctx, get(a, "--broker"), o);
  std::printf("ready rank=%d pid=%d\n", o.rank, static_cast<int>(::getpid()));
  std::fflush(stdout);

  if (mode == "rank") {
    const bool serve = get(a, "--no-poll") != "1";
    std::uint64_t applied = 0;
    while (!g_stop) {
      if (const auto f = node.failure()) {
        std::printf("failed: %s\n", f->message().c_str());
        std::fflush(stdout);
        return 1;
      }
      if (!serve) {
        std::this_thread::sleep_for(10ms);
        continue;
      }
      if (!node.wait_for_command(20ms)) continue;
      node.poll_commands([&](const fabric::IncomingCommand&) {
        ++applied;
        return wire::command_result(wire::Status::OK, o.rank);
      });
    }
    std::printf("done applied=%llu\n", static_cast<unsigned long long>(applied));
  } else if (mode == "publish") {
    const auto records = std::stoull(get(a, "--records", "10000"));
    const auto chunk = std::stoull(get(a, "--chunk", "100"));
    const auto layer = static_cast<std::uint32_t>(std::stoul(get(a, "--layer", "0")));
    bench::TelemetryGenerator gen(100, static_cast<std::uint64_t>(o.rank) + 1);
    std::uint64_t sent = 0;
    while (sent < records && !g_stop) {
      const auto n = std::min<std::uint64_t>(chunk, records - sent);
      const auto batch = gen.batch(n);
      node.publish(layer, batch);
      sent += n;
    }
    node.stop();  // flushes
    const auto c = node.counters();
    std::printf("done sent=%llu published=%llu dropped=%llu\n", static_cast<unsigned long long>(sent),
                static_cast<unsigned long long>(c.telemetry_records),
                static_cast<unsigned long long>(c.telemetry_records_dropped));
  } else if (mode == "events") {
    const auto count = std::stoul(get(a, "--count", "100"));
    const auto layer = static_cast<std::uint32_t>(std::stoul(get(a, "--layer", "0")));
    const auto pause = std::chrono::microseconds(std::stoul(get(a, "--pause-us", "1000")));
    for (std::uint32_t i = 0; i < count && !g_stop; ++i) {
      const auto seed = i % 7;
      const auto from = static_cast<wire::SeedState>((i / 7) % 10);
      const auto to = static_cast<wire::SeedState>((i / 7 + 1) % 10);
      node.emit(wire::state_transition(layer, i, seed, from, to, "test", "fabric_peer"));
      std::this_thread::sleep_for(pause);
    }
    node.stop();
    std::printf("done events=%lu\n", count);
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::fflush(stdout);
  return 0;
}
