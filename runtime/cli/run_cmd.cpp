// esper run: the rank program (one per MPI rank; see runtime/rank/rank_program.hpp), e.g.
//   mpirun -np 4 esper run --layers 2 --steps 600
#include "commands.hpp"
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
  app.add_option("--schedule", cfg->schedule, "advance, random:N or none (until the controller lands)")
      ->capture_default_str();
  app.add_option("--schedule-every", cfg->schedule_every, "steps between scheduled commands")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--progress-every", cfg->progress_every, "steps between progress lines")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--report", cfg->report, "where rank 0 writes the JSON report")->capture_default_str();
  auto* hb = app.add_option("--heartbeat-ms", "heartbeat interval")->check(CLI::Range(10, 60'000));
  auto no_fabric = std::make_shared<bool>(false);
  app.add_flag("--no-fabric", *no_fabric, "run without broker, commands and telemetry (the overhead baseline)");
  return [cfg, no_fabric, hb, &argc, &argv] {
    if (*hb) cfg->heartbeat = std::chrono::milliseconds(hb->as<int>());
    cfg->fabric = !*no_fabric;
    if (cfg->schedule != "advance" && cfg->schedule != "none" && cfg->schedule.rfind("random:", 0) != 0) {
      throw CLI::ValidationError("--schedule", "'" + cfg->schedule + "' is not advance, random:N or none");
    }
    if (cfg->layer.chunks > cfg->layer.out_features) {
      throw CLI::ValidationError("--chunks", "more chunks than output features");
    }
    mpi::Session session(argc, argv);
    return rank::run(*cfg, session);
  };
}

}  // namespace esper::cli
