// `esper run --config FILE`: options from a TOML file, as if given on the command line, unless
// they were (the command line wins). Shared by esper-run and the TOML fuzz target (tests/fuzz).
#pragma once

#include <istream>
#include <string>

#include <CLI/CLI.hpp>

namespace esper::cli {

// Reads the TOML items from `in` and applies each to the option of `app` it names (`name = value`,
// top level or under [run]); `path` names the file in errors. Throws CLI::ValidationError naming
// the item for an unknown option, `config` itself, or a value the option's checks refuse.
void apply_config(CLI::App& app, std::istream& in, const std::string& path);
// The same from the file at `path` (CLI::FileError when it cannot be read).
void apply_config(CLI::App& app, const std::string& path);

}  // namespace esper::cli
