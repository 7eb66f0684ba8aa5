// `esper top`: the frame it renders, on synthetic telemetry and events (counts, bars, the seed
// table and its order, the events, the latency percentiles, the rate, width/height fitting,
// colors, untrusted text); and the command as a user runs it: in a pseudo-terminal against a
// standalone broker and a running 2-rank MPI job, from the job's start and as a late joiner,
// redrawing at least twice a second and quitting on 'q' with the terminal restored; through a
// pipe with --once; and its argument and connection errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>

#include "controller/top_model.hpp"
#include "support/mpi_env.hpp"
#include "support/process.hpp"
#include "wire/builders.hpp"

namespace esper {
namespace {

using controller::RenderOptions;
using controller::TopModel;
using controller::TopOptions;
using esper::testing::ChildProcess;
using wire::SeedState;
using namespace std::chrono_literals;

// ---- synthetic data

wire::SeedMetrics metrics(std::uint64_t step, std::uint32_t seed, SeedState state, float loss, float grad,
                          float alpha = 0.0f) {
  return wire::SeedMetrics(step, seed, 10 + seed, 0.0f, 1.0f, 0.0f, loss, loss * 0.5f, grad, alpha, 0.9f, state, 0, 0);
}

// Owns the bytes a TelemetryBatch or Event points into.
struct Batch {
  flatbuffers::FlatBufferBuilder fbb;
  explicit Batch(const wire::TelemetryBatchT& t) { fbb.Finish(wire::TelemetryBatch::Pack(fbb, &t)); }
  const wire::TelemetryBatch& get() const {
    return *flatbuffers::GetRoot<wire::TelemetryBatch>(fbb.GetBufferPointer());
  }
};
struct Ev {
  flatbuffers::FlatBufferBuilder fbb;
  explicit Ev(const wire::EventT& e) { fbb.Finish(wire::Event::Pack(fbb, &e)); }
  const wire::Event& get() const { return *flatbuffers::GetRoot<wire::Event>(fbb.GetBufferPointer()); }
};

// Layer 0: seeds 0-3 DORMANT, 4 and 5 TRAINING (5 with the larger gradient), 6 GRAFTING.
wire::TelemetryBatchT layer0(std::uint64_t step, std::uint64_t dropped = 0) {
  wire::TelemetryBatchT t;
  t.layer = 0;
  t.rank = 0;
  for (std::uint32_t s = 0; s < 4; ++s) t.seeds.push_back(metrics(step, s, SeedState::DORMANT, 0.5f, 0.0f));
  t.seeds.push_back(metrics(step, 4, SeedState::TRAINING, 0.25f, 0.125f));
  t.seeds.push_back(metrics(step, 5, SeedState::TRAINING, 0.375f, -2.5f));
  t.seeds.push_back(metrics(step, 6, SeedState::GRAFTING, 0.0625f, 0.5f, 0.75f));
  t.dropped_records = dropped;
  return t;
}

wire::EventT decision(std::uint64_t step, double latency_ms) {
  wire::DecisionFields f;
  f.policy = "balanced";
  f.action = wire::DecisionAction::ADVANCE;
  f.target = SeedState::TRAINING;
  f.seeds = {4};
  f.applied = {4};
  f.reason = "test";
  f.latency_ns = static_cast<std::uint64_t>(latency_ms * 1e6);
  return wire::decision(0, step, f);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto nl = text.find('\n', start);
    out.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) return out;
    start = nl + 1;
  }
}

std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0u) != 0x80u;
  return n;
}

std::size_t line_index(const std::vector<std::string>& lines, const std::string& part) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(part) != std::string::npos) return i;
  }
  return lines.size();
}

TEST(TopRender, ShowsCountsBarsSeedRowsEventsAndLatencies) {
  const auto t0 = TopModel::Clock::time_point{} + 100s;
  TopModel model(TopOptions{.broker = "ipc:///tmp/b.cmd"});
  Batch b(layer0(120, 3));
  model.on_telemetry(b.get(), t0);
  for (int i = 1; i <= 10; ++i) model.on_event(Ev(decision(100, i)).get(), 0);  // 1 .. 10 ms
  model.on_event(
      Ev(wire::state_transition(0, 121, 6, SeedState::TRAINING, SeedState::GRAFTING, "gain 0.4", "policy:balanced"))
          .get(),
      0);
  model.set_losses({.telemetry_records_dropped = 2, .telemetry_batches_missing = 1});

  // Wide enough for whole event lines; at 80 columns they are cut (checked at the end).
  const std::string frame = controller::render(model, RenderOptions{.width = 200, .now = t0 + 500ms});
  const auto lines = lines_of(frame);
  EXPECT_NE(frame.find("esper top — broker ipc:///tmp/b.cmd — step 120 — ranks [0]"), std::string::npos) << frame;
  // 7 records over the half second since the first batch; 3 dropped by the publisher, 2 here.
  EXPECT_NE(frame.find("telemetry 14 rec/s, dropped 5, batches missing 1"), std::string::npos) << frame;
  // Nearest rank over 1..10 ms, as the controller computes it: index round(0.5*9) = 5, round(0.99*9) = 9.
  EXPECT_NE(frame.find("commands p50 6.0 ms p99 10.0 ms (10)"), std::string::npos) << frame;
  EXPECT_NE(frame.find("layer 0 · 7 seeds · step 120 · ranks [0]"), std::string::npos) << frame;
  // The transition at step 121 agrees with the telemetry: seed 6 is GRAFTING.
  EXPECT_NE(frame.find("  DORMANT 4 ████ TRAINING 2 ██ GRAFTING 1 █"), std::string::npos) << frame;
  EXPECT_EQ(frame.find('\x1b'), std::string::npos) << "no escapes without color";

  // The table: TRAINING seeds first, larger |grad_norm| first, then GRAFTING, then DORMANT by id.
  const auto head = line_index(lines, "seed state");
  ASSERT_LT(head, lines.size()) << frame;
  ASSERT_LT(head + 8, lines.size()) << frame;
  const std::vector<std::pair<std::string, std::string>> expected_rows{
      {"5", "TRAINING"}, {"4", "TRAINING"}, {"6", "GRAFTING"}, {"0", "DORMANT"},
      {"1", "DORMANT"},  {"2", "DORMANT"},  {"3", "DORMANT"}};
  for (std::size_t i = 0; i < expected_rows.size(); ++i) {
    std::istringstream row(lines[head + 1 + i]);
    std::string seed, state;
    row >> seed >> state;
    EXPECT_EQ(seed, expected_rows[i].first) << lines[head + 1 + i];
    EXPECT_EQ(state, expected_rows[i].second) << lines[head + 1 + i];
  }
  // Seed 6's row: steps in state 16, alpha 0.75, loss 0.0625, shadow 0.03125, grad 0.5, health 0.9.
  EXPECT_NE(frame.find("6 GRAFTING            16   0.750    0.0625   0.03125       0.5   0.90"), std::string::npos)
      << frame;

  // The last 8 events, newest last: decisions 4 .. 10, then the transition.
  const auto title = line_index(lines, "recent events (11 seen)");
  ASSERT_LT(title, lines.size()) << frame;
  ASSERT_EQ(lines.size(), title + 1 + 8) << frame;
  EXPECT_NE(lines[title + 1].find("4.0 ms"), std::string::npos) << lines[title + 1];
  EXPECT_NE(lines[title + 7].find("10.0 ms"), std::string::npos) << lines[title + 7];
  EXPECT_EQ(lines.back(),
            "  transition layer=0 seed=6 TRAINING -> GRAFTING step=121 reason='gain 0.4' by='policy:balanced'");

  const auto narrow = lines_of(controller::render(model, RenderOptions{.width = 80, .now = t0 + 500ms}));
  ASSERT_EQ(narrow.size(), lines.size());
  for (const auto& l : narrow) EXPECT_LE(columns(l), 80u) << l;
  EXPECT_EQ(narrow.back(), "  transition layer=0 seed=6 TRAINING -> GRAFTING step=121 reason='gain 0.4' by=…");
}

TEST(TopRender, RateIsOverTheLastWindowAndDropsAddUp) {
  const auto t0 = TopModel::Clock::time_point{} + 100s;
  TopModel model;
  EXPECT_EQ(model.telemetry_rate(t0), 0.0);
  model.on_telemetry(Batch(layer0(1, 4)).get(), t0);
  model.on_telemetry(Batch(layer0(2, 1)).get(), t0 + 1500ms);
  model.on_telemetry(Batch(layer0(3)).get(), t0 + 1800ms);
  EXPECT_DOUBLE_EQ(model.telemetry_rate(t0 + 2000ms), 14.0) << "the first batch is out of the 1 s window";
  EXPECT_DOUBLE_EQ(model.telemetry_rate(t0 + 5000ms), 0.0);
  const auto quiet = controller::render(model, RenderOptions{.now = t0 + 5000ms});
  EXPECT_NE(quiet.find("telemetry 0 rec/s, dropped 5, batches missing 0, none for 3 s"), std::string::npos) << quiet;
  EXPECT_EQ(model.records_dropped(), 5u);
  EXPECT_EQ(model.batches_seen(), 3u);
  EXPECT_EQ(model.population().step(), 3u);
}

TEST(TopRender, LatencyPercentilesAreOverTheLastWindowOfDecisions) {
  TopModel model(TopOptions{.latency_window = 100});
  EXPECT_EQ(model.latency().count, 0u);
  for (int i = 0; i < 100; ++i) model.on_event(Ev(decision(1, 1000)).get(), 0);  // pushed out below
  for (int i = 1; i <= 100; ++i) model.on_event(Ev(decision(2, i)).get(), 0);
  const auto l = model.latency();
  EXPECT_EQ(l.count, 100u);
  EXPECT_DOUBLE_EQ(l.p50_ms, 51.0);
  EXPECT_DOUBLE_EQ(l.p99_ms, 99.0);
  EXPECT_EQ(model.events_seen(), 200u);
  EXPECT_EQ(model.recent_events().size(), 8u);
}

TEST(TopRender, LateJoinerSnapshotAndEventsAlreadyInItSetTheStates) {
  TopModel model;
  fabric::JobState state;
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<wire::SeedStatus> seeds{wire::SeedStatus(0, SeedState::FOSSILIZED, SeedState::DORMANT, 0, 5, 0, 1.0f),
                                      wire::SeedStatus(1, SeedState::TRAINING, SeedState::DORMANT, 0, 5, 0, 0.0f)};
  auto snap = wire::state_snapshot(7, {wire::layer_state(2, 1, 50, seeds)});
  fbb.Finish(wire::StateSnapshot::Pack(fbb, &snap));
  state.load(*flatbuffers::GetRoot<wire::StateSnapshot>(fbb.GetBufferPointer()));
  model.load(state);
  // An event the snapshot already holds is listed but does not move the seed again.
  model.on_event(Ev(wire::state_transition(2, 40, 1, SeedState::GERMINATED, SeedState::CULLED, "old", "test")).get(), 1,
                 /*in_state=*/true);
  const auto frame = controller::render(model, RenderOptions{});
  EXPECT_NE(frame.find("layer 2 · 2 seeds"), std::string::npos) << frame;
  EXPECT_NE(frame.find("  TRAINING 1 █ FOSSILIZED 1 █"), std::string::npos) << frame;
  EXPECT_NE(frame.find("GERMINATED -> CULLED"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("CULLED 1"), std::string::npos) << frame;
}

TEST(TopRender, FitsNarrowAndShortScreensKeepingTheStateCounts) {
  TopModel model;
  for (std::uint32_t layer = 0; layer < 3; ++layer) {
    auto t = layer0(10);
    t.layer = layer;
    t.rank = static_cast<std::int32_t>(layer);
    model.on_telemetry(Batch(t).get(), TopModel::Clock::now());
  }
  for (int i = 0; i < 8; ++i) model.on_event(Ev(decision(5, i)).get(), 0);
  for (const int width : {30, 50, 80, 200}) {
    for (const int height : {0, 5, 12, 20, 30}) {
      const auto frame = controller::render(model, RenderOptions{.width = width, .height = height});
      const auto lines = lines_of(frame);
      if (height > 0) {
        EXPECT_LE(lines.size(), static_cast<std::size_t>(height)) << frame;
      }
      for (const auto& l : lines) EXPECT_LE(columns(l), static_cast<std::size_t>(width)) << width << ": " << l;
      if (height > 0 && height < 20) continue;  // too short for 3 layers' state lines at every width
      for (const char* layer : {"layer 0", "layer 1", "layer 2"}) {
        EXPECT_NE(frame.find(layer), std::string::npos) << width << "x" << height << "\n" << frame;
      }
      EXPECT_NE(frame.find("DORMANT 4"), std::string::npos) << width << "x" << height << "\n" << frame;
    }
  }
  // Short: fewer seed rows per layer, never fewer state lines.
  const auto short_frame = controller::render(model, RenderOptions{.width = 80, .height = 20});
  EXPECT_LT(lines_of(short_frame).size(), lines_of(controller::render(model, RenderOptions{.width = 80})).size());
  EXPECT_NE(short_frame.find("recent events"), std::string::npos) << short_frame;
}

TEST(TopRender, ColorsOnlyWhenAskedAndNoControlCharactersFromTheNetwork) {
  TopModel model;
  model.on_telemetry(Batch(layer0(10)).get(), TopModel::Clock::now());
  model.on_event(
      Ev(wire::state_transition(0, 11, 4, SeedState::TRAINING, SeedState::CULLED, "evil\x1b[2J\x07\nx", "test")).get(),
      0);
  const auto plain = controller::render(model, RenderOptions{});
  EXPECT_EQ(plain.find('\x1b'), std::string::npos);
  EXPECT_EQ(plain.find('\x07'), std::string::npos);
  EXPECT_NE(plain.find("reason='evil??x'"), std::string::npos) << plain << "the escape sequence removed whole";
  const auto colored = controller::render(model, RenderOptions{.color = true});
  EXPECT_NE(colored.find("\x1b[34mTRAINING 1 "), std::string::npos) << colored;
  EXPECT_EQ(colored.find("\x1b[2J"), std::string::npos);
}

// ---- the command

int exit_code(const std::optional<int>& st) { return st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1; }

// A child on a pseudo-terminal (forkpty): the screen it draws is read from the master side. Killed
// and reaped by the destructor if still running.
class PtyProcess {
 public:
  explicit PtyProcess(const std::vector<std::string>& argv, unsigned short cols = 110, unsigned short rows = 60) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    winsize ws{};
    ws.ws_col = cols;
    ws.ws_row = rows;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ < 0) throw std::runtime_error("forkpty failed");
    if (pid_ == 0) {
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::fcntl(master_, F_SETFD, FD_CLOEXEC);  // not inherited by the children started later
  }
  ~PtyProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  void type(const std::string& keys) const { (void)::write(master_, keys.data(), keys.size()); }
  [[nodiscard]] int master() const { return master_; }
  [[nodiscard]] const std::string& output() const { return out_; }

  // Reads until `done(output)` holds; false at the deadline or when the child's side closes.
  bool read_until(const std::function<bool(const std::string&)>& done, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done(out_)) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return false;
      if (!drain(std::chrono::duration_cast<std::chrono::milliseconds>(until - now)) && exited()) return done(out_);
    }
    return true;
  }
  // Reads whatever comes for `d`; with 0, whatever is there now.
  void read_for(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (!drain(std::max(left, 0ms)) && left <= 0ms) return;
    }
  }

  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!exited()) {
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      drain(10ms);
    }
    while (drain(0ms)) {
    }
    return status_;
  }

 private:
  bool exited() {
    int st = 0;
    if (!status_ && ::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return status_.has_value();
  }
  bool drain(std::chrono::milliseconds timeout) {
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(timeout.count(), 50))) <= 0) return false;
    char buf[8192];
    const auto n = ::read(master_, buf, sizeof buf);
    if (n <= 0) return false;  // EIO once the child's side is closed
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  std::optional<int> status_;
  std::string out_;
};

// Stops a long-running child gracefully (a signal, then a wait) when the test ends, however it ends.
class StopOnExit {
 public:
  StopOnExit(ChildProcess& child, int sig, std::chrono::milliseconds grace) : child_(child), sig_(sig), grace_(grace) {}
  ~StopOnExit() { stop(); }
  StopOnExit(const StopOnExit&) = delete;
  StopOnExit& operator=(const StopOnExit&) = delete;
  std::optional<int> stop() {
    if (!done_) {
      done_ = true;
      child_.signal(sig_);
      status_ = child_.wait(grace_);
    }
    return status_;  // nothing: the ChildProcess destructor kills it
  }

 private:
  ChildProcess& child_;
  int sig_;
  std::chrono::milliseconds grace_;
  bool done_ = false;
  std::optional<int> status_;
};

const std::string kHome = "\x1b[H";      // each live frame starts with cursor home
const std::string kFrameEnd = "\x1b[J";  // ... and ends with clear-below
const std::string kShowCursor = "\x1b[?25h";

std::size_t count(const std::string& s, const std::string& part) {
  std::size_t n = 0;
  for (auto p = s.find(part); p != std::string::npos; p = s.find(part, p + part.size())) ++n;
  return n;
}

// The text of the last complete frame: escapes removed, one string per line.
std::vector<std::string> last_frame(const std::string& out) {
  const auto end = out.rfind(kFrameEnd);
  if (end == std::string::npos) return {};
  const auto start = out.rfind(kHome, end);
  if (start == std::string::npos) return {};
  static const std::regex escapes("\x1b\\[[0-9;?]*[A-Za-z]");
  std::string text = std::regex_replace(out.substr(start, end - start), escapes, "");
  std::erase(text, '\r');
  return lines_of(text);
}

// The lines of seeds per state ("  DORMANT 4 ████ TRAINING 2 ██"), trailing spaces removed.
std::vector<std::string> state_lines(const std::vector<std::string>& frame) {
  static const std::regex state_line("^  ([A-Z_]+ [0-9]+ (█)+ ?)+\\s*$");  // █ is 3 bytes: grouped
  std::vector<std::string> out;
  for (auto l : frame) {
    if (!std::regex_match(l, state_line)) continue;
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out.push_back(l);
  }
  return out;
}

bool shows_grown_seeds(const std::vector<std::string>& frame) {
  static const std::regex grown(
      "(GERMINATED|TRAINING|GRAFTING|STABILIZATION|EVALUATING|FINE_TUNING|FOSSILIZED) [0-9]+ █");
  for (const auto& l : state_lines(frame)) {
    if (std::regex_search(l, grown)) return true;
  }
  return false;
}

std::string endpoint_of(const std::string& line, const std::string& key) {
  const auto p = line.find(key + "=");
  if (p == std::string::npos) return {};
  const auto e = line.find(' ', p);
  return line.substr(p + key.size() + 1, e == std::string::npos ? std::string::npos : e - p - key.size() - 1);
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

class TopCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "esper-top-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    base_ = "ipc://" + (std::filesystem::temp_directory_path() / name_).string();
    dir_ = std::filesystem::temp_directory_path() / (name_ + ".d");
    std::filesystem::create_directories(dir_);
  }
  // The broker leaves its ipc files behind (.cmd, .pub, .sub, .evt).
  void TearDown() override {
    std::error_code ec;
    for (const char* suffix : {".cmd", ".pub", ".sub", ".evt"}) {
      std::filesystem::remove(std::filesystem::temp_directory_path() / (name_ + suffix), ec);
    }
    std::filesystem::remove_all(dir_, ec);
  }
  std::string name_, base_;
  std::filesystem::path dir_;  // for the job's report
};

// Quits on `keys` ('q', or Ctrl-C: SIGINT from the terminal) with status 0 and gives the terminal
// back: cursor shown, main screen, canonical echoing input.
void expect_quits_cleanly(PtyProcess& top, const std::string& keys, const char* who) {
  top.type(keys);
  const auto st = top.wait(3s);
  ASSERT_TRUE(st) << who << " did not quit";
  EXPECT_EQ(exit_code(st), 0) << who;
  EXPECT_NE(top.output().rfind(kShowCursor), std::string::npos) << who << ": the cursor was not shown again";
  EXPECT_GT(top.output().rfind("\x1b[?1049l"), top.output().rfind(kFrameEnd)) << who << ": alternate screen left last";
  termios t{};
  ASSERT_EQ(::tcgetattr(top.master(), &t), 0);
  EXPECT_TRUE((t.c_lflag & ICANON) != 0 && (t.c_lflag & ECHO) != 0) << who << ": terminal modes not restored";
}

// A build without MPI has no job to watch: the test is not compiled there (never skipped).
#ifdef ESPER_HAVE_MPI
TEST_F(TopCommand, ShowsTheStatesOfARunningJobInATerminalFromTheStartAndAsALateJoiner) {
  esper::testing::allow_mpirun();
  ::unsetenv("NO_COLOR");

  ChildProcess broker({ESPER_CLI, "broker", "--bind", base_, "--stats-every", "0"});
  StopOnExit stop_broker(broker, SIGTERM, 10s);
  const auto line = broker.read_line_starting("endpoints", 10s);
  ASSERT_TRUE(line) << broker.output();
  const std::string cmd = endpoint_of(*line, "cmd");
  ASSERT_FALSE(cmd.empty()) << *line;

  // The first top joins before the job starts, so it sees every event, decisions included.
  PtyProcess top({ESPER_CLI, "top", "--broker", cmd});
  ASSERT_TRUE(top.read_until([](const std::string& o) { return !last_frame(o).empty(); }, 15s))
      << "no frame: " << top.output();
  EXPECT_NE(join(last_frame(top.output())).find("no layers seen yet"), std::string::npos) << top.output();
  {
    termios t{};
    ASSERT_EQ(::tcgetattr(top.master(), &t), 0);
    EXPECT_EQ(t.c_lflag & (ICANON | ECHO), 0u) << "keys are read unbuffered and unechoed";
  }

  ChildProcess job({ESPER_MPIEXEC, "--oversubscribe", "-np", "2", ESPER_CLI, "run", "--broker", cmd, "--steps",
                    "200000", "--policy", "aggressive", "--progress-every", "1000", "--report",
                    (dir_ / "report.json").string()});
  StopOnExit stop_job(job, SIGTERM, 30s);
  const auto started = std::chrono::steady_clock::now();
  const bool grown = top.read_until(
      [](const std::string& o) {
        const auto f = last_frame(o);
        return shows_grown_seeds(f) && join(f).find("commands p50") != std::string::npos;
      },
      60s);
  ASSERT_TRUE(grown) << "top never showed grown seeds and decisions; job: " << job.output() << "\nscreen:\n"
                     << join(last_frame(top.output()));
  std::printf("[ info ] grown seeds shown %.1f s after the job started\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  const auto frame = last_frame(top.output());
  const auto text = join(frame);
  EXPECT_NE(text.find("layer 0"), std::string::npos) << text;
  EXPECT_NE(text.find("layer 1"), std::string::npos) << text;
  EXPECT_NE(text.find("ranks [0,1]"), std::string::npos) << text;
  EXPECT_NE(text.find("recent events ("), std::string::npos) << text;
  EXPECT_EQ(text.find("  none yet"), std::string::npos) << "the job's events are listed:\n" << text;
  EXPECT_NE(text.find("seed state"), std::string::npos) << text;

  // At least two frames a second: at least 3 frame starts in 2 s (the default is 2 a second).
  const auto before = count(top.output(), kHome);
  top.read_for(2000ms);
  const auto frames = count(top.output(), kHome) - before;
  EXPECT_GE(frames, 3u) << "frames in 2 s";
  std::printf("[ info ] %zu frames in 2 s\n", frames);

  // A late joiner (the job has been running for a while) shows the same states.
  PtyProcess late({ESPER_CLI, "top", "--broker", cmd, "--interval-ms", "200"});
  std::vector<std::string> mine, theirs;
  const bool same = late.read_until(
      [&](const std::string& o) {
        const auto f = last_frame(o);
        if (!shows_grown_seeds(f)) return false;
        top.read_for(0ms);
        mine = state_lines(f);
        theirs = state_lines(last_frame(top.output()));
        return mine == theirs;
      },
      30s);
  EXPECT_TRUE(same) << "late joiner:\n" << join(mine) << "first top:\n" << join(theirs);

  expect_quits_cleanly(late, "\x03", "the late joiner (Ctrl-C)");
  expect_quits_cleanly(top, "q", "the first top ('q')");

  const auto job_status = stop_job.stop();
  EXPECT_TRUE(job_status) << "the job did not stop on SIGTERM: " << job.output();
  EXPECT_EQ(exit_code(stop_broker.stop()), 0) << broker.output();
}
#endif

TEST_F(TopCommand, OnceThroughAPipePrintsOnePlainFrame) {
  ChildProcess broker({ESPER_CLI, "broker", "--bind", base_, "--stats-every", "0"});
  StopOnExit stop_broker(broker, SIGTERM, 10s);
  const auto line = broker.read_line_starting("endpoints", 10s);
  ASSERT_TRUE(line) << broker.output();
  ChildProcess top({ESPER_CLI, "top", "--broker", endpoint_of(*line, "cmd"), "--once"});
  const auto st = top.wait(10s);
  ASSERT_TRUE(st) << top.output();
  EXPECT_EQ(exit_code(st), 0) << top.output();
  EXPECT_EQ(count(top.output(), "esper top — broker"), 1u) << top.output();
  EXPECT_NE(top.output().find("no layers seen yet"), std::string::npos) << top.output();
  EXPECT_NE(top.output().find("commands: no decisions seen yet"), std::string::npos) << top.output();
  EXPECT_EQ(top.output().find('\x1b'), std::string::npos) << "no escapes when stdout is not a terminal";
}

TEST_F(TopCommand, BadArgumentsAndAnAbsentBrokerFailWithAClearMessage) {
  ChildProcess no_broker({ESPER_CLI, "top"});
  const auto st = no_broker.wait(10s);
  EXPECT_NE(exit_code(st), 0) << no_broker.output();
  EXPECT_NE(no_broker.output().find("--broker"), std::string::npos) << no_broker.output();

  ChildProcess slow({ESPER_CLI, "top", "--broker", "ipc:///tmp/x", "--interval-ms", "1000"});
  EXPECT_NE(exit_code(slow.wait(10s)), 0) << slow.output();
  EXPECT_NE(slow.output().find("--interval-ms"), std::string::npos) << slow.output();

  const auto t0 = std::chrono::steady_clock::now();
  ChildProcess absent({ESPER_CLI, "top", "--broker", base_ + "-nobody", "--connect-timeout-ms", "300"});
  const auto absent_st = absent.wait(10s);
  EXPECT_EQ(exit_code(absent_st), 1) << absent.output();
  EXPECT_NE(absent.output().find("did not answer"), std::string::npos) << absent.output();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);

  // On a terminal too: the error comes out and the terminal is left as it was.
  PtyProcess tty_absent({ESPER_CLI, "top", "--broker", base_ + "-nobody", "--connect-timeout-ms", "300"});
  const auto tty_st = tty_absent.wait(10s);
  EXPECT_EQ(exit_code(tty_st), 1) << tty_absent.output();
  EXPECT_NE(tty_absent.output().find("did not answer"), std::string::npos) << tty_absent.output();
  termios t{};
  ASSERT_EQ(::tcgetattr(tty_absent.master(), &t), 0);
  EXPECT_TRUE((t.c_lflag & ICANON) != 0 && (t.c_lflag & ECHO) != 0);
}

}  // namespace
}  // namespace esper
