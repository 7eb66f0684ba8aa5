// A child process for multi-process tests: started with posix_spawn, stdout and stderr captured through a
// pipe, killed with SIGKILL and reaped by the destructor if still running. Never outlives a test.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <poll.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace esper::testing {

class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);  // one stream, as a user sees it
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      throw std::runtime_error("posix_spawn " + argv[0] + " failed: " + std::to_string(rc));
    }
    out_fd_ = fds[0];
  }
  ~ChildProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Waits for exit; returns the raw wait status, or nothing on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = st;
        break;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      drain(std::chrono::milliseconds(5));
    }
    drain(std::chrono::milliseconds(0));
    return status_;
  }

  // Reads stdout until a line starting with `prefix` appears; returns that line.
  std::optional<std::string> read_line_starting(const std::string& prefix, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (std::size_t start = 0; start < out_.size();) {
        const auto nl = out_.find('\n', start);
        if (nl == std::string::npos) break;
        const auto line = out_.substr(start, nl - start);
        if (line.rfind(prefix, 0) == 0) return line;
        start = nl + 1;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return std::nullopt;
      if (!drain(std::chrono::duration_cast<std::chrono::milliseconds>(until - now))) {
        if (status_ || exited()) return std::nullopt;
      }
    }
  }

  // Reads stdout until `text` appears anywhere in it; false on timeout or exit without it.
  bool read_until_contains(const std::string& text, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (out_.find(text) == std::string::npos) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return false;
      if (!drain(std::chrono::duration_cast<std::chrono::milliseconds>(until - now)) && (status_ || exited())) return false;
    }
    return true;
  }

  [[nodiscard]] const std::string& output() const { return out_; }

 private:
  bool exited() {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return status_.has_value();
  }
  bool drain(std::chrono::milliseconds timeout) {
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buf[4096];
    const auto n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::optional<int> status_;
  std::string out_;
};

// Parses "key=value" pairs from a line like "done sent=100 dropped=3".
inline std::uint64_t field(const std::string& line, const std::string& key) {
  const auto pos = line.find(" " + key + "=");
  if (pos == std::string::npos) throw std::runtime_error("no " + key + " in: " + line);
  return std::stoull(line.substr(pos + key.size() + 2));
}

}  // namespace esper::testing
