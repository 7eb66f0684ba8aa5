// SIGINT/SIGTERM handling for long-running subcommands: the first signal asks for a clean stop
// (stop_requested() turns true); a second one exits at once.
#pragma once

namespace esper {

void install_stop_handlers();
[[nodiscard]] bool stop_requested() noexcept;

}  // namespace esper
