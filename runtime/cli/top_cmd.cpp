// esper top: a live terminal view of a running job, e.g.
//   esper top --broker tcp://node0:5555
// It is an ordinary subscriber, so it can start at any time and from any machine that reaches the
// broker: it joins late (the broker's snapshot of every seed's state, then the events after it)
// and feeds a TopModel (runtime/controller/top_model.hpp) with the telemetry and events it
// receives, drawing a frame from it every --interval-ms (at most 500: at least two a second).
//
// On a terminal it draws on the alternate screen with the cursor hidden, one write per frame
// (cursor home, each line followed by clear-to-end-of-line, then clear-below: no flicker), and
// reads keys with the terminal in non-canonical, no-echo mode: 'q' quits. The terminal is restored
// on every way out: 'q', SIGINT/SIGTERM, an error. Elsewhere (a pipe, a file) it prints plain
// frames separated by a blank line, or with --once one frame after a second of listening.
//
// It never holds the broker back: its subscription has the normal high-water mark, so when it
// falls behind the broker drops for it alone, and the header shows the batches it missed.
//
// What it shows of the wire is checked first (wire/validate.hpp): telemetry and events with a
// value out of range (a state past ROLLED_BACK, a seed past its layer, a layer outside --layers)
// are rejected by its subscriber and its model, and counted in the header ("values rejected N");
// every string from the wire is printed terminal-safe (core/terminal_text.hpp).
#include <poll.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "commands.hpp"
#include "parse.hpp"
#include "controller/top_model.hpp"
#include "core/error.hpp"
#include "core/signals.hpp"
#include "fabric/subscriber.hpp"
#include "wire/validate.hpp"

namespace esper::cli {
namespace {

using Clock = std::chrono::steady_clock;

void write_all(const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const auto n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stdout is gone: nothing left to show anything on
    done += static_cast<std::size_t>(n);
  }
}

// The terminal as top found it, for the second-signal exit (a signal handler reads it).
constexpr char kLeaveScreen[] = "\x1b[?25h\x1b[?1049l";
termios g_saved_terminal{};
volatile std::sig_atomic_t g_restore_keys = 0, g_restore_screen = 0;

extern "C" void restore_terminal_on_forced_exit() {
  if (g_restore_screen) (void)!::write(STDOUT_FILENO, kLeaveScreen, sizeof kLeaveScreen - 1);
  if (g_restore_keys) ::tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_terminal);
}

// The terminal while top runs: keys unbuffered and unechoed, the alternate screen, a hidden cursor.
// The destructor puts everything back, so every way out of the command restores the terminal; a
// second Ctrl-C, which exits at once, does the same from the signal handler.
class Terminal {
 public:
  Terminal(bool screen, bool keys) : screen_(screen) {
    if (keys && ::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays: Ctrl-C is still SIGINT
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      g_saved_terminal = saved_;
      raw_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
      g_restore_keys = raw_ ? 1 : 0;
    }
    keys_ = keys;
    if (screen_) {
      write_all("\x1b[?1049h\x1b[?25l");
      g_restore_screen = 1;
    }
    set_forced_exit_hook(&restore_terminal_on_forced_exit);
  }
  ~Terminal() {
    set_forced_exit_hook(nullptr);
    g_restore_keys = 0;
    g_restore_screen = 0;
    if (screen_) write_all(kLeaveScreen);
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  // True when 'q' was typed (on a terminal or down a pipe into stdin).
  bool quit_typed() {
    if (!keys_) return false;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char buf[64];
    const auto n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      keys_ = false;  // end of input (e.g. </dev/null): keep running, stop looking
      return false;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == 'q' || buf[i] == 'Q') return true;
    }
    return false;
  }

 private:
  bool screen_;
  bool keys_ = false;
  bool raw_ = false;
  termios saved_{};
};

std::pair<int, int> screen_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) return {ws.ws_col, ws.ws_row};
  return {80, 24};
}

// The frame drawn over the previous one: each line clears its rest, the screen below is cleared.
std::string overdraw(const std::string& frame) {
  std::string out = "\x1b[H";
  out.reserve(frame.size() + 512);
  for (const char c : frame) {
    if (c == '\n') out += "\x1b[K";
    out += c;
  }
  out += "\x1b[K\x1b[J";
  return out;
}

}  // namespace

Run add_top(CLI::App& app) {
  auto broker = std::make_shared<std::string>();
  auto interval_ms = std::make_shared<int>(500);
  auto connect_timeout_ms = std::make_shared<int>(10'000);
  auto once = std::make_shared<bool>(false);
  auto no_color = std::make_shared<bool>(false);
  app.add_option("--broker", *broker, "the broker's command endpoint, e.g. tcp://node0:5555")->required();
  app.add_option("--interval-ms", *interval_ms, "milliseconds between frames (at most 500: two frames a second)")
      ->check(CLI::Range(20, 500))
      ->capture_default_str();
  app.add_option("--connect-timeout-ms", *connect_timeout_ms, "how long to wait for the broker to answer")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  app.add_flag("--once", *once, "print one frame after a second of listening, then exit");
  app.add_flag("--no-color", *no_color, "no ANSI colors (also off when stdout is not a terminal, or with NO_COLOR)");
  const auto job_shape = add_job_shape(app);
  return [broker, interval_ms, connect_timeout_ms, once, no_color, job_shape] {
    install_stop_handlers();
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    const bool live = tty && !*once;  // redraw in place; otherwise plain frames one after another
    // Log lines (a value rejected: the first of each field) must not tear the frames: they go to
    // stderr, and while a live view is drawn only errors are logged (the header counts rejects).
    auto log = spdlog::stderr_color_mt("esper-top");
    spdlog::set_default_logger(log);
    if (live && spdlog::get_level() < spdlog::level::err) spdlog::set_level(spdlog::level::err);
    const bool color = tty && !*no_color && std::getenv("NO_COLOR") == nullptr;
    const auto timeout = std::chrono::milliseconds(*connect_timeout_ms);
    if (live) write_all("esper top: connecting to " + *broker + " ...\n");

    const auto bounds = job_shape();
    zmq::context_t ctx;
    fabric::SubscriberOptions so;
    so.connect_timeout = timeout;
    so.bounds = bounds;
    std::unique_ptr<fabric::Subscriber> joined;
    try {
      joined = std::make_unique<fabric::Subscriber>(ctx, *broker, so);  // throws when the broker does not answer
      if (!joined->wait_ready(timeout) || !joined->sync(timeout)) {
        throw Error("the broker at " + *broker + " did not answer (subscription or snapshot) within " +
                    std::to_string(timeout.count()) + " ms");
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR && stop_requested()) return 0;  // interrupted while connecting
      throw;
    }
    fabric::Subscriber& sub = *joined;
    controller::TopOptions to;
    to.broker = *broker;
    to.bounds = bounds;
    controller::TopModel model(to);
    model.load(sub.state());
    std::uint64_t resyncs_seen = sub.events_unrecovered();

    Terminal term(live, !*once);
    const auto interval = std::chrono::milliseconds(*interval_ms);
    const auto started = Clock::now();
    // --once shows what a second of listening saw; a live view draws the snapshot at once.
    auto next_frame = *once ? started + std::chrono::seconds(1) : started;
    for (;;) {
      if (stop_requested() || term.quit_typed()) break;
      const auto now = Clock::now();
      if (now >= next_frame) {
        const auto c = sub.counters();
        model.set_losses({c.telemetry_records_dropped, sub.telemetry_batches_missing(), c.event_gaps,
                          c.frames_rejected, c.values_rejected, c.telemetry_records_missing,
                          c.telemetry_records_rejected, c.events_recovered, c.events_unrecovered});
        controller::RenderOptions ro;
        ro.now = now;
        ro.color = color;
        if (live) {
          const auto [cols, rows] = screen_size();
          ro.width = cols - 1;  // writing the last column would leave the cursor in a pending wrap
          ro.height = rows;
          write_all(overdraw(controller::render(model, ro)));
        } else {
          write_all(controller::render(model, ro) + (*once ? "\n" : "\n\n"));
        }
        if (*once) break;
        next_frame += interval;
        if (next_frame <= now) next_frame = now + interval;  // fell behind: skip, do not burst
      }
      // Receive until the next frame, in short slices so that a key or a signal is seen promptly.
      const auto slice_end = std::min(next_frame, Clock::now() + std::chrono::milliseconds(20));
      try {
        for (;;) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(slice_end - Clock::now());
          auto d = sub.next(std::max(left, std::chrono::milliseconds(0)));
          if (!d) break;
          if (d->message) {
            if (const auto* batch = d->message->body<wire::TelemetryBatch>()) {
              model.on_telemetry(*batch, Clock::now());
            } else if (const auto* event = d->message->body<wire::Event>()) {
              // Missed events are replayed and delivered; those too old to be are not: then the
              // subscriber re-synced, and its state holds them.
              const auto resyncs = sub.events_unrecovered();
              if (resyncs != resyncs_seen) {
                resyncs_seen = resyncs;
                model.load(sub.state());
              }
              const auto* src = d->message->envelope().source();
              model.on_event(*event, src ? src->rank() : -1, d->duplicate);
            }
          }
          if (Clock::now() >= slice_end) break;
        }
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;  // a signal: the loop sees stop_requested()
      }
    }
    return 0;
  };
}

}  // namespace esper::cli
