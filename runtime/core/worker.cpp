#include "core/worker.hpp"

#include <unistd.h>

#include <array>

#include "core/error.hpp"

namespace esper {
namespace {

const std::string& this_host_name() {
  static const std::string host = [] {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) return std::string("unknown-host");
    return std::string(buf.data());
  }();
  return host;
}

// The worker whose body runs on this thread: stop() from there must not wait for itself.
thread_local const Worker* t_current = nullptr;

}  // namespace

std::string ThreadFailure::message() const { return "the " + thread + " thread on " + host + " failed: " + what; }

Worker::~Worker() { stop(); }

void Worker::start(std::string name, Body body, OnFailure on_failure) {
  if (started_.exchange(true, std::memory_order_acq_rel)) throw Error("worker '" + name + "' was started twice");
  name_ = std::move(name);
  (void)this_host_name();  // resolved here, not in a failing thread
  stop_ = std::stop_source();  // before the thread exists: request_stop() from its body reads it
  thread_ = std::jthread([this, token = stop_.get_token(), body = std::move(body), on_failure = std::move(on_failure)] {
    run(token, body, on_failure);
  });
}

void Worker::run(const std::stop_token& token, const Body& body, const OnFailure& on_failure) {
  t_current = this;
  std::optional<ThreadFailure> failure;
  try {
    body(token);
  } catch (const std::exception& e) {
    failure = ThreadFailure{name_, this_host_name(), e.what(), std::current_exception()};
  } catch (...) {
    failure = ThreadFailure{name_, this_host_name(), "an exception not derived from std::exception",
                            std::current_exception()};
  }
  if (failure) {
    {
      std::lock_guard lock(mu_);
      failure_ = *failure;
    }
    failed_.store(true, std::memory_order_release);
    if (on_failure) {
      try {
        on_failure(*failure);
      } catch (...) {  // documented: dropped, the failure stays recorded
      }
    }
  }
  ended_.store(true, std::memory_order_release);
}

void Worker::request_stop() noexcept { stop_.request_stop(); }

void Worker::stop() noexcept {
  stop_.request_stop();
  if (t_current == this) return;  // from its own thread: it cannot wait for itself
  std::lock_guard lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

bool Worker::running() const noexcept { return started() && !ended_.load(std::memory_order_acquire); }

std::optional<ThreadFailure> Worker::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

}  // namespace esper
