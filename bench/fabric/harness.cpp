#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "core/error.hpp"

extern char** environ;

namespace esper::bench {
namespace {

std::string g_self_exe;
constexpr std::size_t kWidth = 162;

std::string si(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (a >= 1e4) std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else if (a >= 100) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

// --- results

void print_header() {
  std::printf("%-9s %-32s %-6s %3s | %9s %-5s | %9s %-22s | %6s | %-21s | %-4s | %7s %5s %5s %5s\n", "group", "what",
              "trans", "np", "esper", "unit", "baseline", "(baseline is)", "ratio", "target", "met", "lost", "dup",
              "reord", "wrong");
  std::printf("%s\n", std::string(kWidth, '-').c_str());
}

void print_row(const Row& r) {
  const std::string base = r.base_value > 0 ? si(r.base_value) : "-";
  char ratio[16];
  if (r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", r.ratio);
  else std::snprintf(ratio, sizeof ratio, "-");
  const char* met = r.met < 0 ? "-" : (r.met ? "yes" : "NO");
  std::printf("%-9s %-32s %-6s %3d | %9s %-5s | %9s %-22s | %6s | %-21s | %-4s | %7llu %5llu %5llu %5llu\n",
              r.group.c_str(), r.what.c_str(), r.transport.c_str(), r.procs, si(r.value).c_str(), r.unit.c_str(),
              base.c_str(), r.baseline.c_str(), ratio, r.target.c_str(), met, static_cast<unsigned long long>(r.lost),
              static_cast<unsigned long long>(r.dup), static_cast<unsigned long long>(r.reord),
              static_cast<unsigned long long>(r.wrong));
  std::fflush(stdout);
}

void print_footer(const Report& rep) {
  int with_target = 0, met = 0, bad = 0;
  for (const auto& r : rep.rows) {
    if (r.met >= 0) {
      ++with_target;
      met += r.met;
    }
    if (r.lost + r.dup + r.reord + r.wrong > 0) ++bad;
  }
  std::printf("%s\n", std::string(kWidth, '-').c_str());
  std::printf("# targets met: %d of %d;  rows with lost/dup/reord/wrong > 0: %d;  %.0f s;  mode %s\n", met, with_target,
              bad, rep.seconds, rep.mode.c_str());
  std::printf("# loadavg at start: %s\n# loadavg at end:   %s\n", rep.loadavg_start.c_str(), rep.loadavg_end.c_str());
  std::fflush(stdout);
}

void write_json(const Report& rep, const std::string& path) {
  // Non-finite figures (a row without a baseline) are written as null.
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : rep.rows) {
    nlohmann::json row = {{"group", r.group},     {"what", r.what},        {"transport", r.transport},
                          {"procs", r.procs},     {"unit", r.unit},        {"value", number(r.value)},
                          {"baseline", r.baseline}, {"baseline_value", number(r.base_value)},
                          {"ratio", number(r.ratio)}, {"target", r.target}, {"lost", r.lost},
                          {"dup", r.dup},         {"reord", r.reord},      {"wrong", r.wrong}};
    row["met"] = r.met < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.met == 1);
    for (const auto& [k, v] : r.extra) row[k] = number(v);
    rows.push_back(std::move(row));
  }
  const nlohmann::json doc = {{"benchmark", "fabric_bench"}, {"mode", rep.mode},
                              {"seconds", number(rep.seconds)}, {"loadavg_start", rep.loadavg_start},
                              {"loadavg_end", rep.loadavg_end}, {"rows", std::move(rows)}};
  std::ofstream f(path);
  if (!f) throw Error("cannot write " + path);
  f << doc.dump(2) << "\n";
  if (!f) throw Error("cannot write " + path);
}

// --- statistics

Latency summarize(std::vector<double> us) {
  Latency l;
  l.n = us.size();
  if (us.empty()) return l;
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(us.size()))) ;
    return us[std::min(us.size() - 1, i == 0 ? 0 : i - 1)];
  };
  l.p50 = at(0.50);
  l.p90 = at(0.90);
  l.p99 = at(0.99);
  l.p999 = at(0.999);
  l.max = us.back();
  l.mean = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  return l;
}

// --- system

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string s;
  std::getline(f, s);
  return s;
}

std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

double cpu_seconds_self() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void set_self_exe(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  g_self_exe = ec ? std::string(argv0) : p.string();
}

std::string self_exe() { return g_self_exe; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "esper-fabric-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw Error("mkdtemp failed: " + std::string(std::strerror(errno)));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw Error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string base_endpoint(const std::string& transport, const TempDir& dir, const std::string& name) {
  if (transport == "tcp") return "tcp://127.0.0.1:0";
  if (transport == "ipc") return "ipc://" + dir.path() + "/" + name;
  if (transport == "inproc") return "inproc://" + name;
  throw Error("unknown transport " + transport);
}

// --- child processes

Child::Child(const std::vector<std::string>& args) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) throw Error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::vector<std::string> all{self_exe(), "child"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    throw Error("posix_spawn " + all[0] + " failed: " + std::strerror(rc));
  }
  in_fd_ = in[1];
  out_fd_ = out[0];
}

Child::~Child() {
  if (!exited_ && !finish(std::chrono::milliseconds(3000))) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
}

bool Child::send_line(const std::string& line) {
  if (in_fd_ < 0) return false;
  const std::string l = line + "\n";
  return ::write(in_fd_, l.data(), l.size()) == static_cast<ssize_t>(l.size());
}

bool Child::drain(std::chrono::milliseconds timeout) {
  pollfd p{out_fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buf[4096];
  const auto n = ::read(out_fd_, buf, sizeof buf);
  if (n <= 0) return false;
  out_.append(buf, static_cast<std::size_t>(n));
  return true;
}

std::optional<std::string> Child::read_line_starting(const std::string& prefix, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  for (;;) {
    for (std::size_t start = 0; start < out_.size();) {
      const auto nl = out_.find('\n', start);
      if (nl == std::string::npos) break;
      const auto line = out_.substr(start, nl - start);
      if (line.rfind(prefix, 0) == 0) return line;
      start = nl + 1;
    }
    const auto now = Clock::now();
    if (now >= until) {
      if (!drain(std::chrono::milliseconds(0))) return std::nullopt;
      continue;
    }
    if (!drain(std::chrono::duration_cast<std::chrono::milliseconds>(until - now)) && reap(false)) {
      while (drain(std::chrono::milliseconds(0))) {
      }
      if (out_.find(prefix) == std::string::npos) return std::nullopt;
    }
  }
}

bool Child::reap(bool block) {
  if (exited_) return true;
  int st = 0;
  rusage u{};
  const pid_t r = ::wait4(pid_, &st, block ? 0 : WNOHANG, &u);
  if (r != pid_) return false;
  exited_ = true;
  cpu_ = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  return true;
}

bool Child::finish(std::chrono::milliseconds timeout) {
  if (in_fd_ >= 0) {
    send_line("exit");
    ::close(in_fd_);
    in_fd_ = -1;
  }
  const auto until = Clock::now() + timeout;
  while (!reap(false)) {
    if (Clock::now() >= until) return false;
    if (!drain(std::chrono::milliseconds(5))) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  while (drain(std::chrono::milliseconds(0))) {
  }
  return true;
}

double field(const std::string& line, const std::string& key) {
  const auto pos = line.find(" " + key + "=");
  if (pos == std::string::npos) return 0;
  return std::strtod(line.c_str() + pos + key.size() + 2, nullptr);
}

std::string text_field(const std::string& line, const std::string& key) {
  const auto pos = line.find(" " + key + "=");
  if (pos == std::string::npos) return "";
  const auto start = pos + key.size() + 2;
  return line.substr(start, line.find(' ', start) - start);
}

ParentLink::ParentLink() {
  reader_ = std::thread([this] {
    std::string buf;
    char c[256];
    for (;;) {
      const auto n = ::read(STDIN_FILENO, c, sizeof c);
      if (n <= 0) break;
      buf.append(c, static_cast<std::size_t>(n));
      for (auto nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n')) {
        const auto line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line == "go") go_.store(true);
        if (line == "exit") {
          stop_.store(true);
          return;
        }
      }
    }
    stop_.store(true);  // EOF: the parent is gone or done
  });
  reader_.detach();  // blocked in read(); ends with the process
}

ParentLink::~ParentLink() = default;

void ParentLink::say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

bool ParentLink::wait_go(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (!go_.load() && !stop_.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::microseconds(200));
  return go_.load();
}

bool ParentLink::wait_stop(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (!stop_.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return stop_.load();
}

Args::Args(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) continue;
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      a_[k] = argv[++i];
    } else {
      a_[k] = "1";
    }
  }
}

std::string Args::str(const std::string& k, const std::string& def) const {
  const auto it = a_.find(k);
  return it == a_.end() ? def : it->second;
}

long long Args::num(const std::string& k, long long def) const {
  const auto it = a_.find(k);
  return it == a_.end() ? def : std::stoll(it->second);
}

}  // namespace esper::bench
