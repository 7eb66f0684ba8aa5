// Fuzz target: the TOML reader behind `esper run --config` — CLI11's CLI::ConfigTOML parser on the
// input bytes, then the items applied to a command line shaped like esper run's.
//
// esper run reads the file with esper::cli::apply_config (runtime/cli/config_file.hpp); here it
// reads the input from memory, over an App with options of the same kinds and checks as esper
// run's (integers with ranges, strings with member lists, positive numbers, flags, the --config
// option itself). esper run's own App needs the rank program (MPI), which this build has not.
//
// A bad file is an expected outcome: CLI11 and apply_config throw CLI::Error (esper run prints it
// and exits 1). Any other exception, a crash or a sanitizer report is a finding.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "config_file.hpp"
#include "fuzz_support.hpp"

namespace {

struct RunOptions {
  int layers = 2, in = 64, out = 64, chunks = 16, rank = 4, batch = 32;
  std::int64_t steps = 600;
  std::uint64_t data_seed = 1;
  std::string broker, transport = "auto", compression = "auto", policy = "balanced", schedule = "none",
                      report = "esper-report.json", device = "auto", config;
  int schedule_every = 25, progress_every = 100, step_sleep_ms = 0;
  std::int64_t fail_at_step = -1;
  int fail_rank = -1;
  bool fail_join = false, no_fabric = false;
};

// The options of esper run (runtime/cli/run_cmd.cpp, add_run), by kind and check.
void add_run_like(CLI::App& app, RunOptions& o) {
  app.add_option("--layers", o.layers)->check(CLI::Range(1, 64));
  app.add_option("--in", o.in)->check(CLI::Range(1, 1 << 16));
  app.add_option("--out", o.out)->check(CLI::Range(1, 1 << 16));
  app.add_option("--chunks", o.chunks)->check(CLI::Range(1, 1 << 16));
  app.add_option("--rank", o.rank)->check(CLI::Range(1, 1024));
  app.add_option("--batch", o.batch)->check(CLI::Range(1, 1 << 20));
  app.add_option("--steps", o.steps);
  app.add_option("--data-seed", o.data_seed);
  app.add_option("--broker", o.broker);
  app.add_option("--transport", o.transport)->check(CLI::IsMember({"auto", "ipc", "tcp"}));
  app.add_option("--compression", o.compression)->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("--policy", o.policy);
  app.add_option("--schedule", o.schedule);
  app.add_option("--schedule-every", o.schedule_every)->check(CLI::PositiveNumber);
  app.add_option("--progress-every", o.progress_every)->check(CLI::PositiveNumber);
  app.add_option("--report", o.report);
  app.add_option("--device", o.device)->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--heartbeat-ms")->check(CLI::Range(10, 60'000));
  app.add_option("--connect-timeout-ms")->check(CLI::Range(100, 600'000));
  app.add_option("--step-sleep-ms", o.step_sleep_ms)->check(CLI::Range(0, 60'000))->group("");
  app.add_option("--fail-at-step", o.fail_at_step)->group("");
  app.add_option("--fail-rank", o.fail_rank)->group("");
  app.add_flag("--fail-controller-join", o.fail_join)->group("");
  app.add_option("--config", o.config)->check(CLI::ExistingFile);
  app.add_flag("--no-fabric", o.no_fabric);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  const std::string text(reinterpret_cast<const char*>(data), size);

  // The parser alone: items, or a CLI::Error.
  try {
    std::istringstream in(text);
    fuzz::Sink sink;
    for (const auto& item : CLI::ConfigTOML().from_config(in)) {
      sink(item.fullname());
      for (const auto& input : item.inputs) sink(input);
    }
    sink.publish();
  } catch (const CLI::Error&) {
  }

  // Applied, as esper run does, to a command line with nothing given (clear(): no option counted).
  static RunOptions options;
  static CLI::App& app = []() -> CLI::App& {
    static CLI::App a("fuzz");
    add_run_like(a, options);
    return a;
  }();
  app.clear();
  try {
    std::istringstream in(text);
    esper::cli::apply_config(app, in, "fuzz.toml");
  } catch (const CLI::Error&) {
  }
  return 0;
}
