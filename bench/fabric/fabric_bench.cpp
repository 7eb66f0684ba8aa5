// fabric_bench: the fabric's throughput, latency and memory against raw baselines measured in the
// same run (DESIGN.md §9, issue 3). One fixed table (nccl-tests style) on stdout, progress on
// stderr, JSON with --json FILE. Metrics and results: docs/performance.md, "Fabric".
//
//   fabric_bench [all|telemetry|rtt|sustained|memory]... [--quick] [--json FILE] [--no-redis]
//                [--transports ipc,tcp] [--reps N]
//
// Default (full) run: about 2-3 minutes on 2 cores; --quick: about 20 s (a smoke run for CI).
// Publishers and ranks are this executable started as `fabric_bench child <mode> ...`.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "core/error.hpp"
#include "harness.hpp"
#include "measurements.hpp"

namespace {

using namespace esper::bench;

int usage() {
  std::fprintf(stderr,
               "usage: fabric_bench [all|telemetry|rtt|sustained|memory]... [--quick] [--json FILE] [--no-redis]\n"
               "                    [--transports ipc,tcp] [--reps N] [--records N]\n");
  return 2;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  set_self_exe(argv[0]);
  std::signal(SIGPIPE, SIG_IGN);  // a child that died is seen as a failed write, not the end of the run
  try {
    if (argc >= 3 && std::strcmp(argv[1], "child") == 0) {
      const std::string mode = argv[2];
      const Args a(argc, argv, 3);
      if (mode == "pub") return child_publisher(a);
      if (mode == "rank") return child_rank(a);
      if (mode == "mem-client") return child_mem_client(a);
      std::fprintf(stderr, "unknown child mode %s\n", mode.c_str());
      return 2;
    }
    std::set<std::string> what;
    for (int i = 1; i < argc; ++i) {
      const std::string s = argv[i];
      if (s.rfind("--", 0) == 0) {
        if (s == "--json" || s == "--transports" || s == "--reps" || s == "--records") ++i;
        continue;
      }
      if (s != "all" && s != "telemetry" && s != "rtt" && s != "sustained" && s != "memory") return usage();
      what.insert(s);
    }
    if (what.empty() || what.count("all")) what = {"telemetry", "rtt", "sustained", "memory"};
    const Args a(argc, argv, 1);
    Config cfg;
    cfg.quick = a.has("--quick");
    cfg.redis = !a.has("--no-redis");
    cfg.reps = static_cast<int>(a.num("--reps", cfg.quick ? 1 : 3));
    cfg.telemetry_records = cfg.quick ? 1'200'000 : 3'600'000;
    cfg.rtt_samples = cfg.quick ? 2'000 : 20'000;
    cfg.sustained_commands = cfg.quick ? 30'000 : 200'000;
    cfg.telemetry_records = static_cast<std::uint64_t>(a.num("--records", static_cast<long long>(cfg.telemetry_records)));
    if (a.has("--transports")) cfg.transports = split(a.str("--transports"));

    Report rep;
    rep.mode = cfg.quick ? "quick" : "full";
    rep.loadavg_start = loadavg();
    std::printf("# fabric_bench (%s): every row is esper vs a baseline measured in this run; ratio = esper / baseline\n",
                rep.mode.c_str());
    std::printf("# loadavg at start: %s;  %u cpus\n", rep.loadavg_start.c_str(), std::thread::hardware_concurrency());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    std::vector<Row> rows;
    const auto add = [&](const std::vector<Row>& r) { rows.insert(rows.end(), r.begin(), r.end()); };
    if (what.count("telemetry")) {
      std::fprintf(stderr, "telemetry...\n");
      add(run_telemetry(cfg));
    }
    if (what.count("rtt")) {
      std::fprintf(stderr, "round trip...\n");
      add(run_round_trip(cfg));
    }
    if (what.count("sustained")) {
      std::fprintf(stderr, "sustained commands...\n");
      add(run_sustained(cfg));
    }
    if (what.count("memory")) {
      std::fprintf(stderr, "memory...\n");
      add(run_memory(cfg));
    }
    rep.rows = rows;
    rep.seconds = seconds_since(t0);
    rep.loadavg_end = loadavg();
    std::printf("\n");
    print_header();
    for (const auto& r : rep.rows) print_row(r);
    print_footer(rep);
    if (a.has("--json")) write_json(rep, a.str("--json"));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fabric_bench: %s\n", e.what());
    return 1;
  }
}
