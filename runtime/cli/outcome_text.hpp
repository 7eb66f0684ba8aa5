// How the tools print a command's outcome per target rank (esper ctl send, esper dlq replay).
#pragma once

#include <string>

#include "fabric/client.hpp"

namespace esper::cli {

// A result: its status, step, error, and per seed, batch member and snapshot layer an indented line.
std::string describe_result(const wire::CommandResultT& result, const std::string& indent);
// "rank 3: OK at step 120 [0.412 ms]", or "rank 3: FAILED (TIMEOUT) ... [3 attempt(s), 5000.1 ms]".
std::string describe(const fabric::TargetOutcome& outcome);

}  // namespace esper::cli
