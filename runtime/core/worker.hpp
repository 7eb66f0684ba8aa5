// One worker type for every background loop of esper (the broker's thread, a node's I/O thread,
// the controller's thread, the rank program's schedule and watchdog; docs/threads.md).
//
// A Worker owns one thread (std::jthread) that runs a body `void(std::stop_token)` until the body
// returns. It stops on destruction: stop() asks the body to return (the stop token) and joins it.
// An exception that leaves the body does not reach std::terminate: it is captured — the exception
// itself and its message — and handed to the owner: an `on_failure` callback runs on the worker's
// thread as it ends, and failure() returns it from any thread afterwards. The owner decides what a
// failure means (the process that owns a broker exits non-zero naming the thread, host and cause).
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

namespace esper {

// Why a worker's thread ended early.
struct ThreadFailure {
  std::string thread;  // the worker's name, e.g. "broker" or "node I/O"
  std::string host;    // where it ran
  std::string what;    // the exception's message ("an exception not derived from std::exception" otherwise)
  std::exception_ptr exception;

  // "the broker thread on HOST failed: WHAT"
  [[nodiscard]] std::string message() const;
};

class Worker {
 public:
  using Body = std::function<void(std::stop_token)>;
  // Runs on the worker's thread once a failure is recorded (failure() already returns it). It must
  // not block on the worker itself (no stop() of this worker: a request_stop() is fine); an
  // exception it throws is dropped.
  using OnFailure = std::function<void(const ThreadFailure&)>;

  Worker() noexcept = default;  // no thread until start()
  ~Worker();                    // stop()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  Worker(Worker&&) = delete;
  Worker& operator=(Worker&&) = delete;

  // Starts the thread; throws esper::Error if this worker was started before.
  void start(std::string name, Body body, OnFailure on_failure = {});

  // Asks the body to return (its stop token turns true). Thread-safe, idempotent, never blocks.
  void request_stop() noexcept;
  // request_stop(), then waits for the thread to end. Idempotent and thread-safe; from the worker's
  // own thread (an on_failure callback, the body) it only requests the stop.
  void stop() noexcept;

  [[nodiscard]] bool started() const noexcept { return started_.load(std::memory_order_acquire); }
  // Started and its body has not returned yet.
  [[nodiscard]] bool running() const noexcept;
  [[nodiscard]] bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  // The captured failure, if the body threw. Thread-safe.
  [[nodiscard]] std::optional<ThreadFailure> failure() const;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  void run(const std::stop_token& token, const Body& body, const OnFailure& on_failure);

  std::string name_;  // written by start() before the thread exists
  std::atomic<bool> started_{false}, ended_{false}, failed_{false};
  mutable std::mutex mu_;
  std::optional<ThreadFailure> failure_;  // guarded by mu_
  std::mutex join_mu_;                    // one joiner at a time
  std::stop_source stop_{std::nostopstate};  // the body's stop token comes from it
  std::jthread thread_;                   // last: destroyed (joined) first
};

}  // namespace esper
