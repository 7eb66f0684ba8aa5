#include "core/signals.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>

namespace esper {
namespace {

volatile std::sig_atomic_t g_stops = 0;
std::atomic<void (*)()> g_forced_exit_hook{nullptr};
static_assert(std::atomic<void (*)()>::is_always_lock_free, "read from a signal handler");

extern "C" void on_stop_signal(int) {
  g_stops = g_stops + 1;
  if (g_stops > 1) {
    if (auto* hook = g_forced_exit_hook.load()) hook();
    std::_Exit(130);
  }
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() noexcept { return g_stops > 0; }

void set_forced_exit_hook(void (*hook)()) noexcept { g_forced_exit_hook.store(hook); }

}  // namespace esper
