#include "config_file.hpp"

#include <fstream>

namespace esper::cli {
namespace {

void apply(CLI::App& app, const std::vector<CLI::ConfigItem>& items, const std::string& path) {
  for (const auto& item : items) {
    const bool top = item.parents.empty() || (item.parents.size() == 1 && item.parents[0] == "run");
    auto* opt = top ? app.get_option_no_throw("--" + item.name) : nullptr;
    if (opt == nullptr || item.name == "config") {
      throw CLI::ValidationError("--config", path + ": '" + item.fullname() +
                                                 "' is not an option of esper run (esper run --help lists them)");
    }
    if (opt->count() > 0) continue;  // the command line wins
    opt->add_result(item.inputs);
    try {
      opt->run_callback();
    } catch (const CLI::Error& e) {
      throw CLI::ValidationError("--config", path + ": " + item.name + ": " + e.what());
    }
  }
}

}  // namespace

void apply_config(CLI::App& app, std::istream& in, const std::string& path) {
  apply(app, CLI::ConfigTOML().from_config(in), path);
}

void apply_config(CLI::App& app, const std::string& path) { apply(app, CLI::ConfigTOML().from_file(path), path); }

}  // namespace esper::cli
