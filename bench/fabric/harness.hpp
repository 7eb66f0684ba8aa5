// The shared harness of fabric_bench: result rows (printed as one fixed table and written as JSON),
// latency statistics, child processes (this same executable in a child mode, driven over its stdin
// and stdout), and small helpers for time, memory and load. Metrics: docs/performance.md, "Fabric".
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace esper::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// --- results

// One measurement: a figure for esper and the same figure for a baseline measured in the same run.
struct Row {
  std::string group;      // telemetry, rtt, sustained, memory
  std::string what;       // e.g. "records/s zstd", "p99"
  std::string transport;  // inproc, ipc, tcp
  int procs = 1;          // publisher processes, or ranks
  std::string unit;       // "rec/s", "us", "cmd/s", "MB"
  double value = 0;       // esper
  std::string baseline;   // what the baseline is ("raw PUB/SUB", "raw DEALER/ROUTER", "Redis Streams", ...)
  double base_value = 0;  // 0: no baseline
  double ratio = 0;       // value / base_value, or a derived ratio (documented per row)
  std::string target;     // as text, e.g. ">= 0.5x raw"
  int met = -1;           // 1 met, 0 missed, -1 no target
  std::uint64_t lost = 0, dup = 0, reord = 0, wrong = 0;
  // The row drives the fabric past its capacity on purpose: records may drop, and the row is
  // right when every one that did was counted (its target), not when none did.
  bool loss_expected = false;
  std::map<std::string, double> extra;  // everything else, for the JSON
};

struct Report {
  std::vector<Row> rows;
  std::string loadavg_start, loadavg_end;
  std::string mode;
  double seconds = 0;
};

void print_header();
void print_row(const Row& r);
void print_footer(const Report& r);
void write_json(const Report& r, const std::string& path);

// --- statistics

struct Latency {
  std::size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;  // microseconds
};
Latency summarize(std::vector<double> us);

// --- system

std::string loadavg();
std::size_t rss_bytes();          // /proc/self/statm resident pages x page size
double cpu_seconds_self();        // user + system of this process, all threads
std::string self_exe();           // /proc/self/exe, resolved once at start
void set_self_exe(const char* argv0);

// A private temporary directory (ipc sockets, the Redis socket), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A free TCP port on 127.0.0.1 (bind to 0, read, close: good enough for a private benchmark).
int free_tcp_port();

// --- child processes

// This executable started as `<exe> child <args...>`, stdin and stdout piped. The child answers
// with lines ("ready ...", "done k=v ..."); the parent sends lines ("go", "exit"). Closing stdin
// (or the parent dying) stops the child. The destructor ends a child still running: EOF on stdin,
// then SIGKILL after a grace period.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  bool send_line(const std::string& line);
  std::optional<std::string> read_line_starting(const std::string& prefix, std::chrono::milliseconds timeout);
  // Closes stdin and waits for the exit; true if it exited in time. cpu_seconds() is then valid.
  bool finish(std::chrono::milliseconds timeout);
  [[nodiscard]] double cpu_seconds() const { return cpu_; }

 private:
  bool drain(std::chrono::milliseconds timeout);
  bool reap(bool block);

  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1;
  bool exited_ = false;
  double cpu_ = 0;
  std::string out_;
};

// Parses "key=value" fields from a line like "done sent=100 dropped=3" (0 when absent).
double field(const std::string& line, const std::string& key);
std::string text_field(const std::string& line, const std::string& key);

// The child's side: a thread watching stdin sets stop() on "exit" or EOF; wait_go() blocks for "go".
class ParentLink {
 public:
  ParentLink();
  ~ParentLink();
  ParentLink(const ParentLink&) = delete;
  ParentLink& operator=(const ParentLink&) = delete;
  void say(const std::string& line);  // one line to stdout, flushed
  bool wait_go(std::chrono::milliseconds timeout);
  [[nodiscard]] bool stop() const { return stop_.load(std::memory_order_relaxed); }
  [[nodiscard]] const std::atomic<bool>& stop_flag() const { return stop_; }
  bool wait_stop(std::chrono::milliseconds timeout);

 private:
  std::atomic<bool> go_{false}, stop_{false};
  std::thread reader_;
};

// Parsed "--key value" arguments.
class Args {
 public:
  Args(int argc, char** argv, int first);
  [[nodiscard]] std::string str(const std::string& k, const std::string& def = "") const;
  [[nodiscard]] long long num(const std::string& k, long long def) const;
  [[nodiscard]] bool has(const std::string& k) const { return a_.count(k) != 0; }

 private:
  std::map<std::string, std::string> a_;
};

// Run configuration shared by the measurements.
struct Config {
  bool quick = false;
  bool redis = true;
  int reps = 3;                           // telemetry repetitions (the median is reported)
  std::uint64_t telemetry_records = 0;    // per run, all publishers together
  std::size_t rtt_samples = 0;            // per series
  std::uint64_t sustained_commands = 0;
  std::size_t sustained_window = 256;
  std::size_t pending_commands = 10'000;
  std::vector<std::string> transports{"ipc", "tcp"};
};

// Endpoint for a transport: tcp://127.0.0.1:0, ipc://<dir>/<name>, inproc://<name>.
std::string base_endpoint(const std::string& transport, const TempDir& dir, const std::string& name);

}  // namespace esper::bench
