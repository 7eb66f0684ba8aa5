// esper run: the rank program (one per MPI rank; see runtime/rank/rank_program.hpp), e.g.
//   mpirun -np 4 esper run --layers 2 --steps 600
#include <charconv>

#include "commands.hpp"
#include "config_file.hpp"
#include "controller/policy.hpp"
#include "rank/rank_program.hpp"

namespace esper::cli {
Run add_run(CLI::App& app, int& argc, char**& argv) {
  auto cfg = std::make_shared<rank::RunConfig>();
  auto& l = cfg->layer;
  app.add_option("--layers", cfg->layers, "seed layers per rank")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--in", l.in_features, "input features")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--out", l.out_features, "output features")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--chunks", l.chunks, "chunks (seeds) per layer")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  app.add_option("--rank", l.rank, "blueprint width (adapter rank)")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--batch", l.batch, "samples per rank per step")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("--steps", l.steps, "training steps")->capture_default_str();
  app.add_option("--data-seed", l.seed, "seed of the synthetic teacher task")->capture_default_str();
  app.add_option("--broker", cfg->broker, "use this broker instead of starting one on rank 0");
  app.add_option("--transport", cfg->transport,
                 "the embedded broker's endpoints: auto (ipc on one node, tcp on the node's address across "
                 "nodes), ipc or tcp")
      ->check(CLI::IsMember({"auto", "ipc", "tcp"}))
      ->capture_default_str();
  app.add_option("--compression", cfg->compression,
                 "zstd for telemetry and other bodies of 1 KiB or more: auto (only when a rank's link to the "
                 "broker leaves the host), always, or never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  auto* policy = app.add_option("--policy", cfg->policy, "the embedded controller's growth policy: aggressive, "
                                                         "balanced, conservative, or none (seeds never germinate)")
                     ->capture_default_str();
  app.add_option("--schedule", cfg->schedule,
                 "scripted commands instead of the controller: advance, random:N or none (implies --policy none "
                 "unless --policy is given)")
      ->capture_default_str();
  app.add_option("--schedule-every", cfg->schedule_every, "steps between scheduled commands")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--progress-every", cfg->progress_every, "steps between progress lines")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--report", cfg->report, "where rank 0 writes the JSON report")->capture_default_str();
  app.add_option("--device", cfg->device,
                 "auto, cpu or cuda. auto: CUDA when a device is usable (one per rank, on every rank, and the "
                 "build has NCCL), else CPU; cuda without one is an error")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  auto* hb = app.add_option("--heartbeat-ms", "heartbeat interval")->check(CLI::Range(10, 60'000));
  auto* connect = app.add_option("--connect-timeout-ms",
                                 "how long each rank waits to join the broker (and rank 0's controller) before the "
                                 "job fails (default 10000)")
                      ->check(CLI::Range(100, 600'000));
  // Test hooks, hidden from --help (group ""): a slow step, an error on one rank, a controller that
  // cannot join.
  auto step_sleep_ms = std::make_shared<int>(0);
  app.add_option("--step-sleep-ms", *step_sleep_ms, "test hook: sleep this long in every step")
      ->check(CLI::Range(0, 60'000))
      ->group("");
  app.add_option("--fail-at-step", cfg->fail_at_step, "test hook: throw on --fail-rank before this step")->group("");
  app.add_option("--fail-rank", cfg->fail_rank, "test hook: the rank --fail-at-step fails")->group("");
  app.add_flag("--fail-controller-join", cfg->inject_controller_join_failure,
               "test hook: point the embedded controller at a broker that does not exist")
      ->group("");
  app.add_option("--fail-thread", cfg->fail_thread,
                 "test hook: node: --fail-rank's node I/O thread throws at its 3rd heartbeat; broker: rank 0's "
                 "broker thread throws at the 3rd heartbeat it receives")
      ->check(CLI::IsMember({"node", "broker"}))
      ->group("");
  auto config = std::make_shared<std::string>();
  app.add_option("--config", *config,
                 "read options from a TOML file: `name = value` per option, names without the dashes "
                 "(e.g. steps = 1200); the command line overrides it")
      ->check(CLI::ExistingFile);
  auto no_fabric = std::make_shared<bool>(false);
  app.add_flag("--no-fabric", *no_fabric, "run without broker, commands and telemetry (the overhead baseline)");
  return [&app, cfg, no_fabric, hb, connect, step_sleep_ms, policy, config, &argc, &argv] {
    if (!config->empty()) apply_config(app, *config);
    if (*hb) cfg->heartbeat = std::chrono::milliseconds(hb->as<int>());
    if (*connect) cfg->connect_timeout = std::chrono::milliseconds(connect->as<int>());
    cfg->step_sleep = std::chrono::milliseconds(*step_sleep_ms);
    cfg->fabric = !*no_fabric;
    if (cfg->schedule.rfind("random:", 0) == 0) {
      const auto n = cfg->schedule.substr(7);
      std::uint64_t count = 0;
      const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), count);
      if (n.empty() || ec != std::errc() || end != n.data() + n.size() || count == 0 || count > 10'000'000) {
        throw CLI::ValidationError("--schedule", "random:" + n + ": '" + n +
                                                     "' is not a number of commands (random:N with 1 <= N <= 10000000)");
      }
      cfg->schedule_count = count;
    } else if (cfg->schedule != "advance" && cfg->schedule != "none") {
      throw CLI::ValidationError("--schedule", "'" + cfg->schedule + "' is not advance, random:N or none");
    }
    if (cfg->schedule != "none" && !*policy) cfg->policy = "none";
    if (cfg->policy != "none" && !controller::preset(cfg->policy)) {
      throw CLI::ValidationError("--policy", "'" + cfg->policy + "' is not aggressive, balanced, conservative or none");
    }
    if (cfg->layer.chunks > cfg->layer.out_features) {
      throw CLI::ValidationError("--chunks", "more chunks than output features");
    }
    mpi::Session session(argc, argv);
    return rank::run(*cfg, session);
  };
}

}  // namespace esper::cli
