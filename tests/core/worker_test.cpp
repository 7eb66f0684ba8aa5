// esper::Worker: an exception in the body is captured and handed to the owner (callback and
// failure()), never std::terminate; the thread stops on destruction; stop() is idempotent and safe
// from several threads and from the worker's own thread. Synchronised on promises and the stop
// token, never on sleeps.
#include "core/worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.hpp"

namespace esper {
namespace {

using namespace std::chrono_literals;

// Blocks the body until the stop token says stop; returns whether it did.
bool wait_for_stop(const std::stop_token& stop) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  (void)cv.wait(lock, stop, [] { return false; });  // returns once a stop is requested
  return stop.stop_requested();
}

TEST(Worker, AnExceptionIsCapturedAndHandedToTheOwner) {
  std::promise<ThreadFailure> handed;
  std::promise<std::thread::id> body_thread;
  std::thread::id callback_thread;
  Worker w;
  w.start(
      "test loop",
      [&](const std::stop_token&) {
        body_thread.set_value(std::this_thread::get_id());
        throw Error("the body broke");
      },
      [&](const ThreadFailure& f) {
        callback_thread = std::this_thread::get_id();
        handed.set_value(f);
      });
  auto got = handed.get_future();
  ASSERT_EQ(got.wait_for(10s), std::future_status::ready);
  const auto f = got.get();
  EXPECT_EQ(f.thread, "test loop");
  EXPECT_NE(f.what.find("the body broke"), std::string::npos) << f.what;
  EXPECT_FALSE(f.host.empty());
  EXPECT_EQ(f.message().rfind("the test loop thread on " + f.host + " failed: ", 0), 0u) << f.message();
  EXPECT_EQ(callback_thread, body_thread.get_future().get()) << "on_failure runs on the worker's thread";
  // failure() holds the same, with the exception itself, from any thread.
  w.stop();
  EXPECT_TRUE(w.failed());
  EXPECT_FALSE(w.running());
  const auto kept = w.failure();
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->what, f.what);
  ASSERT_TRUE(kept->exception);
  EXPECT_THROW(std::rethrow_exception(kept->exception), Error);
}

TEST(Worker, AnExceptionNotDerivedFromStdExceptionIsCapturedToo) {
  Worker w;
  w.start("odd", [](const std::stop_token&) { throw 42; });
  w.stop();  // the body has returned (by throwing): stop() waits for that
  const auto f = w.failure();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->what, "an exception not derived from std::exception");
  EXPECT_THROW(std::rethrow_exception(f->exception), int);
}

TEST(Worker, ABodyThatReturnsIsNoFailure) {
  std::atomic<bool> ran{false};
  Worker w;
  w.start("quick", [&](const std::stop_token&) { ran = true; });
  w.stop();
  EXPECT_TRUE(ran);
  EXPECT_FALSE(w.failed());
  EXPECT_FALSE(w.failure());
  EXPECT_FALSE(w.running());
}

TEST(Worker, TheDestructorStopsAndJoinsTheThread) {
  std::atomic<bool> saw_stop{false};
  std::promise<void> started;
  {
    Worker w;
    w.start("loop", [&](const std::stop_token& stop) {
      started.set_value();
      saw_stop = wait_for_stop(stop);
    });
    started.get_future().wait();
    EXPECT_TRUE(w.running());
  }  // ~Worker: asks the body to stop and waits for it
  EXPECT_TRUE(saw_stop);
}

TEST(Worker, StopIsIdempotentAndSafeFromSeveralThreads) {
  std::atomic<int> bodies_ended{0};
  std::promise<void> started;
  Worker w;
  w.start("loop", [&](const std::stop_token& stop) {
    started.set_value();
    (void)wait_for_stop(stop);
    ++bodies_ended;
  });
  started.get_future().wait();
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&] { w.stop(); });
  for (auto& t : stoppers) t.join();
  EXPECT_EQ(bodies_ended, 1);
  EXPECT_FALSE(w.running());
  w.stop();
  w.request_stop();
  w.stop();
  EXPECT_EQ(bodies_ended, 1);
  EXPECT_FALSE(w.failed());
}

TEST(Worker, StopFromTheFailureCallbackDoesNotWaitForItself) {
  std::promise<void> handed;
  Worker w;
  w.start(
      "self", [](const std::stop_token&) { throw std::runtime_error("x"); },
      [&](const ThreadFailure&) {
        w.stop();  // on the worker's own thread: only requests the stop
        handed.set_value();
      });
  ASSERT_EQ(handed.get_future().wait_for(10s), std::future_status::ready);
  w.stop();
  EXPECT_TRUE(w.failed());
}

TEST(Worker, AnExceptionFromTheCallbackIsDroppedAndTheFailureKept) {
  Worker w;
  w.start(
      "cb", [](const std::stop_token&) { throw std::runtime_error("first"); },
      [](const ThreadFailure&) { throw std::runtime_error("second"); });
  w.stop();
  ASSERT_TRUE(w.failure());
  EXPECT_EQ(w.failure()->what, "first");
}

TEST(Worker, StartingTwiceIsRefusedAndAWorkerNeverStartedStopsQuietly) {
  Worker w;
  w.start("once", [](const std::stop_token&) {});
  EXPECT_THROW(w.start("twice", [](const std::stop_token&) {}), Error);
  w.stop();
  Worker idle;
  EXPECT_FALSE(idle.started());
  EXPECT_FALSE(idle.running());
  idle.stop();
  idle.stop();
}

}  // namespace
}  // namespace esper
