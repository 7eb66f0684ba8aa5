// Parsing of the CLI's small languages: targets (all, rank:N, layer:L), seed sets (all, 1,4,7-9),
// seed states and priorities by name. Errors say what is accepted.
#pragma once

#include <optional>
#include <string>

#include "fbs/envelope_generated.h"

namespace esper::cli {

// Each returns nothing and sets `error` when the text is not valid.
std::optional<wire::CommandTarget> parse_target(const std::string& text, std::string& error);
std::optional<wire::SeedSetT> parse_seeds(const std::string& text, std::string& error);
std::optional<wire::SeedState> parse_state(const std::string& text, std::string& error);
std::optional<wire::Priority> parse_priority(const std::string& text, std::string& error);

}  // namespace esper::cli
