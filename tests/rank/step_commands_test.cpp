// Step-consistent commands on one MPI rank (a singleton MPI process: no launcher needed): a command
// for a past step is answered STALE and not applied; one for a future step waits for exactly that
// step; one without a step is applied at the next boundary; at a boundary that agrees to stop,
// nothing is applied and the job's end answers what was taken.
#include <gtest/gtest.h>

#include "fabric/fabric_fixture.hpp"
#include "mpi/bootstrap.hpp"
#include "rank/step_commands.hpp"

namespace esper::rank {
namespace {

using namespace fabric::testing;

// One MPI session per process, whichever tests it runs.
mpi::Session& mpi_session() {
  static int argc = 0;
  static char** argv = nullptr;
  static mpi::Session session(argc, argv);
  return session;
}

// One rank with its node on an inproc broker, a client, and the rank's StepCommands.
class StepCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(wait_for_ranks(broker, 1)); }
  // Polls the client until the node holds `n` commands (at most 5 s).
  void wait_queued(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (node.queued_commands() < n && std::chrono::steady_clock::now() < until) (void)client.poll(5ms);
    ASSERT_EQ(node.queued_commands(), n);
  }

  mpi::Session& session = mpi_session();
  zmq::context_t ctx;
  fabric::Broker broker{ctx, broker_options("inproc")};
  fabric::Node node{ctx, broker.endpoints().cmd, node_options(0)};
  fabric::Client client{ctx, broker.endpoints().cmd};
  StepCommands commands{&node, 0, {0}, session.comm()};
};

TEST_F(StepCommandsTest, PastStepIsStaleFutureStepWaitsForIt) {

  auto at = [](std::int64_t step) { return wire::CommandOptions{10'000, step}; };
  const auto stale = client.send(wire::shutdown(wire::to_rank(0), "past", 0, at(3)));
  const auto future = client.send(wire::shutdown(wire::to_rank(0), "future", 0, at(7)));
  const auto now = client.send(wire::shutdown(wire::to_rank(0), "now", 0, at(-1)));
  ASSERT_TRUE(stale && future && now);
  wait_queued(3);

  std::vector<std::pair<std::string, std::uint64_t>> applied;
  std::uint64_t step = 5;
  auto apply = [&](const wire::Command& c, const wire::Envelope&) {
    applied.emplace_back(c.body_as_Shutdown()->reason()->str(), step);
    return wire::command_result(wire::Status::OK, 0);
  };
  std::map<std::string, fabric::TargetOutcome> outcome;
  auto collect = [&] {
    for (auto& o : client.poll(20ms)) {
      const std::string name = o.id.seq() == stale->seq() ? "past" : o.id.seq() == future->seq() ? "future" : "now";
      outcome[name] = o.targets.at(0);
    }
  };
  for (; step <= 8; ++step) {
    commands.boundary(step, apply);
    for (int i = 0; i < 5; ++i) collect();
  }
  // The results travel back on the node's thread: wait for them, not for a fixed number of polls
  // (a slow machine, or ThreadSanitizer, can take longer than the boundaries above).
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (outcome.size() < 3 && std::chrono::steady_clock::now() < until) collect();
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0], (std::pair<std::string, std::uint64_t>{"now", 5}));
  EXPECT_EQ(applied[1], (std::pair<std::string, std::uint64_t>{"future", 7}));
  ASSERT_EQ(outcome.size(), 3u);
  EXPECT_EQ(outcome["past"].result.status, wire::Status::STALE);
  EXPECT_NE(outcome["past"].result.error.find("re-issue"), std::string::npos) << outcome["past"].result.error;
  EXPECT_EQ(outcome["future"].result.applied_at_step, 7);
  EXPECT_EQ(outcome["now"].result.applied_at_step, 5);
  EXPECT_EQ(commands.counts().stale, 1u);
  EXPECT_EQ(commands.counts().applied, 2u);

  // A stop agreed at a boundary applies nothing; a command taken there is answered by finish().
  const auto stopping = client.send(wire::shutdown(wire::to_rank(0), "stopping", 0, at(-1)));
  ASSERT_TRUE(stopping);
  wait_queued(1);
  bool stop = true;
  EXPECT_EQ(commands.boundary(step, apply, &stop), 0u);
  EXPECT_TRUE(stop);

  // After the end, nothing more is applied: queued and later commands are answered REJECTED.
  commands.finish(step);
  fabric::TargetOutcome stopped;
  for (int i = 0; i < 50 && !stopped.has_result; ++i) {
    for (auto& o : client.poll(20ms)) {
      if (o.id.seq() == stopping->seq()) stopped = o.targets.at(0);
    }
  }
  ASSERT_TRUE(stopped.has_result);
  EXPECT_EQ(stopped.result.status, wire::Status::REJECTED) << stopped.result.error;
  const auto late = client.call(wire::shutdown(wire::to_rank(0), "late"));
  ASSERT_TRUE(late.targets.at(0).has_result);
  EXPECT_EQ(late.targets[0].result.status, wire::Status::REJECTED);
  EXPECT_EQ(applied.size(), 2u);
}

// The plan of one boundary: CRITICAL before HIGH before NORMAL, then in the order sent.
TEST_F(StepCommandsTest, OneBoundaryAppliesByPriorityThenInTheOrderSent) {

  const wire::CommandOptions at2{10'000, 2};
  const std::vector<std::pair<std::string, wire::Priority>> sent = {
      {"normal-1", wire::Priority::NORMAL}, {"low", wire::Priority::LOW},       {"normal-2", wire::Priority::NORMAL},
      {"high", wire::Priority::HIGH},       {"critical", wire::Priority::CRITICAL}, {"normal-3", wire::Priority::NORMAL}};
  for (const auto& [name, p] : sent) ASSERT_TRUE(client.send(wire::shutdown(wire::to_rank(0), name, 0, at2), p));
  wait_queued(sent.size());

  std::vector<std::string> applied;
  auto apply = [&](const wire::Command& c, const wire::Envelope&) {
    applied.push_back(c.body_as_Shutdown()->reason()->str());
    return wire::command_result(wire::Status::OK, 0);
  };
  for (std::uint64_t step = 0; step <= 2; ++step) commands.boundary(step, apply);
  EXPECT_EQ(applied, (std::vector<std::string>{"critical", "high", "normal-1", "normal-2", "normal-3", "low"}));
  commands.finish(3);
}

}  // namespace
}  // namespace esper::rank
