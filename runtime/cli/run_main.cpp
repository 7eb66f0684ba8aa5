// esper-run: the rank program (`esper run`, runtime/rank/rank_program.hpp) as its own executable,
// so that the other tools load neither MPI nor the kernels. `esper run ARGS` executes
// `esper-run run ARGS` from the same folder; `esper-run run ARGS` works directly as well.
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"esper run: the rank program (train seed layers as one rank of an MPI job)", "esper"};
  app.require_subcommand(1);
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  auto* run = app.add_subcommand("run", "the rank program: train seed layers as one rank of an MPI job");
  const auto go = esper::cli::add_run(*run, argc, argv);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%H:%M:%S.%e %^%l%$ %v");
  try {
    return go();
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
