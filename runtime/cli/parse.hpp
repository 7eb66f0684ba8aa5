// Parsing of the CLI's small languages: targets (all, rank:N, layer:L), seed sets (all, 1,4,7-9),
// seed states and priorities by name. Errors say what is accepted.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "fbs/dead_letter_generated.h"
#include "fbs/envelope_generated.h"
#include "wire/validate.hpp"

namespace esper::cli {

// Each returns nothing and sets `error` when the text is not valid.
std::optional<wire::CommandTarget> parse_target(const std::string& text, std::string& error);
std::optional<wire::SeedSetT> parse_seeds(const std::string& text, std::string& error);
std::optional<wire::SeedState> parse_state(const std::string& text, std::string& error);
std::optional<wire::Priority> parse_priority(const std::string& text, std::string& error);
std::optional<wire::DeadLetterReason> parse_dead_letter_reason(const std::string& text, std::string& error);
// A msg_id as tools print it: SENDER:SEQ, the sender in hex (0x optional), the seq in decimal.
std::optional<wire::MsgId> parse_msg_id(const std::string& text, std::string& error);
std::string format_msg_id(const wire::MsgId& id);

// --layers and --chunks on a tool that watches a job: its shape, which narrows the values it
// accepts (wire::Bounds::job; 0 = not known). Returns what gives the bounds once parsed.
std::function<wire::Bounds()> add_job_shape(CLI::App& app);

}  // namespace esper::cli
