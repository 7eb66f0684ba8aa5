// SIGINT/SIGTERM handling for long-running subcommands: the first signal asks for a clean stop
// (stop_requested() turns true); a second one exits at once.
#pragma once

namespace esper {

void install_stop_handlers();
[[nodiscard]] bool stop_requested() noexcept;

// A function the second signal runs just before exiting, e.g. to put the terminal back. It runs in
// the signal handler: only async-signal-safe calls (write, tcsetattr). nullptr clears it.
void set_forced_exit_hook(void (*hook)()) noexcept;

}  // namespace esper
