// The subcommands of `esper`. Each registers its options on the app and returns the function that
// runs it (returning the process exit code).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace esper::cli {

using Run = std::function<int()>;

Run add_broker(CLI::App& app);
Run add_ctl(CLI::App& app);
Run add_watch(CLI::App& app);
Run add_controller(CLI::App& app);
Run add_top(CLI::App& app);
Run add_dlq(CLI::App& app);
// esper-run only (runtime/cli/run_main.cpp): it links MPI and the kernels.
Run add_run(CLI::App& app, int& argc, char**& argv);

}  // namespace esper::cli
