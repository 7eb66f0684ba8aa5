// esper — the command-line tools: broker, ctl, watch, controller, top; and run, which executes
// esper-run (the rank program, with MPI and the kernels) from the same folder, so that the tools
// themselves start in milliseconds on a login node without MPI or GPU libraries.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "commands.hpp"
#include "core/error.hpp"

namespace {

// `esper [--log-level L] run ARGS`: the index of "run" in argv, or 0 when it is another subcommand.
int run_subcommand(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--log-level") {
      ++i;
      continue;
    }
    if (a.rfind("--log-level=", 0) == 0) continue;
    return a == "run" ? i : 0;
  }
  return 0;
}

// Replaces this process with esper-run (same pid: mpirun, srun and PMIx see the same rank).
[[noreturn]] void exec_esper_run(char** argv) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto path = (ec ? std::filesystem::path(argv[0]) : self).parent_path() / "esper-run";
  ::execv(path.c_str(), argv);
  std::fprintf(stderr, "esper run: cannot execute %s: %s (it is built beside esper when MPI is found)\n",
               path.c_str(), std::strerror(errno));
  std::exit(127);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef ESPER_HAVE_RUN
  if (run_subcommand(argc, argv) != 0) exec_esper_run(argv);
#endif
  CLI::App app{"esper: a runtime that grows neural networks while they train"};
  app.require_subcommand(1);
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::map<CLI::App*, esper::cli::Run> runs;
  auto* broker = app.add_subcommand("broker", "run a standalone broker");
  runs[broker] = esper::cli::add_broker(*broker);
  auto* ctl = app.add_subcommand("ctl", "send commands to ranks through a broker");
  runs[ctl] = esper::cli::add_ctl(*ctl);
  auto* watch = app.add_subcommand("watch", "print telemetry and events from a broker");
  runs[watch] = esper::cli::add_watch(*watch);
  auto* control = app.add_subcommand("controller", "drive a running job's seeds with a growth policy");
  runs[control] = esper::cli::add_controller(*control);
  auto* top = app.add_subcommand("top", "a live view of a running job");
  runs[top] = esper::cli::add_top(*top);
  auto* dlq = app.add_subcommand("dlq", "list, show, replay or purge the dead letters kept in a directory");
  runs[dlq] = esper::cli::add_dlq(*dlq);
#ifdef ESPER_HAVE_RUN
  // Listed for --help; executed by esper-run above (`esper run --help` shows its options).
  app.add_subcommand("run", "the rank program: train seed layers as one rank of an MPI job (esper-run)")
      ->allow_extras();
#endif
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%H:%M:%S.%e %^%l%$ %v");
  try {
    for (auto* sub : app.get_subcommands()) return runs.at(sub)();
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const esper::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 2;
}
