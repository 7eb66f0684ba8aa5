// esper — the command-line tools: broker, ctl, watch, controller, top, run.
#include <spdlog/spdlog.h>

#include <map>

#include "commands.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
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
#ifdef ESPER_HAVE_MPI
  auto* run = app.add_subcommand("run", "the rank program: train seed layers as one rank of an MPI job");
  runs[run] = esper::cli::add_run(*run, argc, argv);
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
