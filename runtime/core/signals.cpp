#include "core/signals.hpp"

#include <csignal>
#include <cstdlib>

namespace esper {
namespace {

volatile std::sig_atomic_t g_stops = 0;

extern "C" void on_stop_signal(int) {
  g_stops = g_stops + 1;
  if (g_stops > 1) std::_Exit(130);
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

}  // namespace esper
