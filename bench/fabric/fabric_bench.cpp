// fabric_bench: the fabric's throughput, latency and memory against raw baselines measured in the
// same run (docs/design.md §9). One fixed table (nccl-tests style) on stdout, progress on stderr,
// JSON with --json FILE. Metrics and results: docs/performance.md, "Fabric".
//
//   fabric_bench [all|telemetry|rtt|sustained|memory]... [--quick] [--json FILE] [--no-redis]
//                [--transports ipc,tcp] [--reps N] [--records N]       (fabric_bench --help)
//
// Default (full) run: about 2-3 minutes on 2 cores; --quick: about 20 s (a smoke run for CI).
// Exit status: 0 when every row is complete and meets its target; 1 when a row lost, duplicated
// or corrupted anything (or the run failed); 3 when every row is complete but a target was missed.
// Publishers and ranks are this executable started as `fabric_bench child <mode> ...`.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include <CLI/CLI.hpp>

#include "core/error.hpp"
#include "harness.hpp"
#include "measurements.hpp"

namespace {

using namespace esper::bench;

// 1: a row lost, duplicated or corrupted something (an overload row: lost what it did not count);
// 3: a target was missed; 0: neither.
int verdict(const std::vector<Row>& rows) {
  bool missed = false;
  for (const auto& r : rows) {
    if (r.dup + r.wrong > 0 || (r.lost > 0 && !(r.loss_expected && r.met == 1))) return 1;
    missed = missed || r.met == 0;
  }
  return missed ? 3 : 0;
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
    CLI::App app{"fabric_bench: the fabric's throughput, latency and memory against raw ZeroMQ and Redis Streams "
                 "baselines measured in the same run (docs/performance.md, \"Fabric\"). Exit status 0: complete "
                 "and every target met; 1: a row lost, duplicated or corrupted something; 3: a target missed."};
    std::vector<std::string> groups;
    Config cfg;
    std::string json_path;
    int reps = 0;
    std::uint64_t records = 0;
    app.add_option("what", groups, "measurements to run: all (default), telemetry, rtt, sustained, memory")
        ->check(CLI::IsMember({"all", "telemetry", "rtt", "sustained", "memory"}));
    app.add_flag("--quick", cfg.quick, "a smoke run (about 20 s) instead of the full one (2-3 min)");
    app.add_option("--json", json_path, "also write the rows as JSON to this file");
    bool no_redis = false;
    app.add_flag("--no-redis", no_redis, "skip the Redis Streams baselines");
    app.add_option("--transports", cfg.transports, "transports to measure, e.g. ipc,tcp")
        ->delimiter(',')
        ->check(CLI::IsMember({"inproc", "ipc", "tcp"}));
    app.add_option("--reps", reps, "repetitions per measurement (default 3; 1 with --quick)")->check(CLI::Range(1, 100));
    app.add_option("--records", records, "telemetry records per run (default 3.6M; 1.2M with --quick)")
        ->check(CLI::Range(1000ull, 1'000'000'000ull));
    CLI11_PARSE(app, argc, argv);
    std::set<std::string> what(groups.begin(), groups.end());
    if (what.empty() || what.count("all")) what = {"telemetry", "rtt", "sustained", "memory"};
    cfg.redis = !no_redis;
    cfg.reps = reps > 0 ? reps : (cfg.quick ? 1 : 3);
    cfg.telemetry_records = records > 0 ? records : (cfg.quick ? 1'200'000 : 3'600'000);
    cfg.rtt_samples = cfg.quick ? 2'000 : 20'000;
    cfg.sustained_commands = cfg.quick ? 30'000 : 200'000;

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
    if (!json_path.empty()) write_json(rep, json_path);
    const int status = verdict(rep.rows);
    if (status != 0) {
      std::printf("# verdict: %s\n", status == 1 ? "FAILED: a row lost, duplicated or corrupted something"
                                                   : "a target was missed (exit 3)");
    }
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fabric_bench: %s\n", e.what());
    return 1;
  }
}
