// Commands inside a running job (issue 11), with real processes: `mpirun` with 2-3 ranks of
// `esper run`, its embedded broker (found from rank 0's first line), a fabric client and the
// `esper ctl` / `esper watch` tools. Every target is applied by every replica; every kind works;
// a CRITICAL stop overtakes NORMAL commands; a command outlasting the retry schedule is applied and
// reported OK; and every error path ends the whole job in bounded time with the rank, host and
// cause.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "fabric/client.hpp"
#include "support/mpi_env.hpp"
#include "support/process.hpp"
#include "wire/builders.hpp"

namespace esper {
namespace {

using esper::testing::ChildProcess;
using json = nlohmann::json;
using namespace std::chrono_literals;
using State = wire::SeedState;

class CommandsInJob : public testing::MpiJobTest {
 protected:
  CommandsInJob() : MpiJobTest("commands-in-job") {}

  // Two layers of four seeds; only the test's commands move seeds, unless it asks for a policy.
  std::vector<std::string> mpirun(int ranks, std::vector<std::string> args) const {
    std::vector<std::string> prefix{"--layers", "2", "--chunks", "4"};
    if (std::find(args.begin(), args.end(), "--policy") == args.end()) prefix.insert(prefix.end(), {"--policy", "none"});
    return MpiJobTest::mpirun(ranks, prefix, args);
  }

  // The embedded broker's endpoint, from "rank 0/N pid P on HOST broker ENDPOINT device D".
  static std::string broker_of(ChildProcess& job) {
    const auto line = job.read_line_starting("rank 0/", 60s);
    if (!line) return {};
    const auto at = line->find(" broker ");
    const auto end = line->find(" device ");
    return at == std::string::npos ? "" : line->substr(at + 8, end - at - 8);
  }
  // A client with the route table of every rank.
  static std::unique_ptr<fabric::Client> client_for(zmq::context_t& ctx, const std::string& broker, std::size_t ranks) {
    fabric::ClientOptions o;
    o.retry.first = 100ms;
    auto c = std::make_unique<fabric::Client>(ctx, broker, o);
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (c->routes().size() < ranks && std::chrono::steady_clock::now() < until) (void)c->poll(20ms);
    return c;
  }
  static std::vector<std::string> ctl(const std::string& broker, std::vector<std::string> args) {
    std::vector<std::string> argv{ESPER_CLI, "ctl", "send", "--broker", broker};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // Runs `esper ctl send ...` to completion; returns {exit code, output}.
  static std::pair<int, std::string> run_ctl(const std::string& broker, std::vector<std::string> args) {
    ChildProcess p(ctl(broker, std::move(args)));
    const auto st = p.wait(60s);
    return {exit_code(st), p.output()};
  }
  static const wire::SeedStatus* seed_of(const wire::CommandResultT& r, std::uint32_t layer, std::uint32_t seed) {
    if (!r.snapshot) return nullptr;
    for (const auto& l : r.snapshot->layers) {
      if (l && l->layer == layer && seed < l->seeds.size()) return &l->seeds[seed];
    }
    return nullptr;
  }
};

TEST_F(CommandsInJob, EveryTargetIsAppliedByEveryReplicaAtTheSameStepWithOneResultPerTargetRank) {
  ChildProcess job(mpirun(3, {"--steps", "1000000", "--progress-every", "1000000"}));
  const auto broker = broker_of(job);
  ASSERT_FALSE(broker.empty()) << job.output();
  zmq::context_t ctx;
  auto client = client_for(ctx, broker, 3);
  ASSERT_EQ(client->routes().size(), 3u) << job.output();

  auto one = client->call(
      wire::transition_seeds(wire::to_rank(1), 0, wire::seed_ids({0}), State::GERMINATED, "rank:1", false, {20'000}));
  ASSERT_EQ(one.targets.size(), 1u) << "one result: rank 1's";
  EXPECT_EQ(one.targets[0].rank, 1);
  ASSERT_TRUE(one.targets[0].has_result) << one.targets[0].detail;
  EXPECT_EQ(one.targets[0].result.status, wire::Status::OK) << one.targets[0].result.error;

  auto check_all = [](const fabric::CommandOutcome& o) {
    ASSERT_EQ(o.targets.size(), 3u);
    std::set<std::int32_t> ranks;
    for (const auto& t : o.targets) {
      ranks.insert(t.rank);
      ASSERT_TRUE(t.has_result) << "rank " << t.rank << ": " << t.detail;
      EXPECT_EQ(t.result.status, wire::Status::OK) << t.result.error;
      EXPECT_EQ(t.result.applied_at_step, o.targets[0].result.applied_at_step) << "the same boundary on every rank";
      EXPECT_GT(t.result.execution_ns, 0u);
      EXPECT_GT(t.answered_ns, 0u) << "the rank's clock when it answered";
    }
    EXPECT_EQ(ranks.size(), 3u) << "one result per target rank";
  };
  check_all(client->call(
      wire::transition_seeds(wire::to_layer(1), 1, wire::seed_ids({1}), State::GERMINATED, "layer:1", false, {20'000})));
  check_all(client->call(
      wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({2}), State::GERMINATED, "all", false, {20'000})));

  // Every replica holds every change, whichever rank received it.
  const auto snap = client->call(wire::request_snapshot(wire::to_all(), {}, "", {20'000}));
  ASSERT_EQ(snap.targets.size(), 3u);
  for (const auto& t : snap.targets) {
    ASSERT_TRUE(t.has_result && t.result.snapshot) << "rank " << t.rank;
    for (const auto& [layer, seed, want] : {std::tuple{0u, 0u, State::GERMINATED}, std::tuple{1u, 1u, State::GERMINATED},
                                            std::tuple{0u, 2u, State::GERMINATED}, std::tuple{0u, 1u, State::DORMANT}}) {
      const auto* s = seed_of(t.result, layer, seed);
      ASSERT_NE(s, nullptr);
      EXPECT_EQ(s->state(), want) << "rank " << t.rank << " layer " << layer << " seed " << seed;
    }
  }

  check_all(client->call(wire::shutdown(wire::to_all(), "test done", 20'000, {20'000})));
  const auto st = job.wait(60s);
  ASSERT_EQ(exit_code(st), 3) << job.output();
  const auto r = report();
  EXPECT_NE(r.value("status", "").find("shutdown: test done"), std::string::npos) << r.value("status", "");
  EXPECT_TRUE(r["digests"]["equal"].get<bool>()) << r["digests"].dump();
}

TEST_F(CommandsInJob, EachKindThroughEsperCtlWithItsOutcomeInTheReportAndTheEvents) {
  ChildProcess job(mpirun(2, {"--steps", "1000000", "--progress-every", "1000000"}));
  const auto broker = broker_of(job);
  ASSERT_FALSE(broker.empty()) << job.output();
  ChildProcess watch({ESPER_CLI, "watch", "--broker", broker, "--topic", "evt/"});
  ASSERT_TRUE(watch.read_line_starting("watching", 30s)) << watch.output();
  {
    zmq::context_t ctx;
    ASSERT_EQ(client_for(ctx, broker, 2)->routes().size(), 2u);
  }

  auto [code, out] = run_ctl(broker, {"--target", "rank:1", "set-blueprint", "--layer", "0", "--seed", "0", "--rank",
                                      "2", "--learning-rate", "0.02", "--grafting", "adaptive", "--param", "gain_max=2"});
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = run_ctl(broker, {"transition", "--layer", "0", "--seeds", "0", "--to", "GERMINATED"});
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = run_ctl(broker, {"set-blueprint", "--layer", "0", "--seed", "0"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("blueprint_needs_dormant"), std::string::npos) << out;

  std::tie(code, out) = run_ctl(broker, {"batch", "--atomic", "--command", "transition --layer 0 --seeds 1 --to GERMINATED",
                                         "--command", "transition --layer 0 --seeds 2 --to FOSSILIZED"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("nothing applied"), std::string::npos) << out;
  EXPECT_NE(out.find("member 1: REJECTED"), std::string::npos) << out;
  std::tie(code, out) = run_ctl(broker, {"--target", "rank:0", "snapshot", "--layers", "0"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("seed 0 GERMINATED"), std::string::npos) << out;
  EXPECT_NE(out.find("seed 1 DORMANT"), std::string::npos) << "the atomic batch changed nothing: " << out;

  std::tie(code, out) = run_ctl(broker, {"batch", "--command", "transition --layer 0 --seeds 1 --to GERMINATED",
                                         "--command", "transition --layer 0 --seeds 1 --to TRAINING"});
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = run_ctl(broker, {"--priority", "critical", "emergency-stop", "--scope", "seed", "--layer", "0",
                                         "--seed", "0", "--reason", "seed 0 misbehaves"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("GERMINATED -> CANCELLED"), std::string::npos) << out;
  std::tie(code, out) = run_ctl(broker, {"emergency-stop", "--scope", "layer", "--layer", "1"});
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = run_ctl(broker, {"transition", "--layer", "1", "--seeds", "3", "--to", "GERMINATED"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("emergency_stopped"), std::string::npos) << out;
  std::tie(code, out) = run_ctl(broker, {"transition", "--layer", "0", "--seeds", "2", "--to", "GERMINATED"});
  EXPECT_EQ(code, 0) << "the job goes on outside the stopped scopes: " << out;

  std::tie(code, out) = run_ctl(broker, {"shutdown", "--reason", "ctl test", "--grace-ms", "20000"});
  EXPECT_EQ(code, 0) << out;
  ASSERT_EQ(exit_code(job.wait(60s)), 3) << job.output();
  const auto r = report();
  EXPECT_NE(r.value("status", "").find("shutdown: ctl test"), std::string::npos) << r.value("status", "");
  EXPECT_TRUE(r["digests"]["equal"].get<bool>());
  EXPECT_EQ(r["layers"][0]["seed_states"][0], "CANCELLED");
  EXPECT_EQ(r["layers"][0]["seed_states"][1], "TRAINING");
  EXPECT_EQ(r["layers"][0]["seed_states"][2], "GERMINATED");
  EXPECT_EQ(r["layers"][0]["held_by_emergency_stop"], json::array({0}));
  EXPECT_EQ(r["layers"][1]["held_by_emergency_stop"], json::array({0, 1, 2, 3}));
  EXPECT_GE(r["commands"]["applied"].get<int>(), 8);

  // The events: each seed that moved, with what moved it.
  ASSERT_TRUE(watch.read_line_starting("evt/0 #", 10s)) << watch.output();
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (watch.output().find("emergency_stop") == std::string::npos && std::chrono::steady_clock::now() < until) {
    (void)watch.read_line_starting("never", 100ms);
  }
  EXPECT_NE(watch.output().find("emergency_stop"), std::string::npos) << watch.output();
  EXPECT_NE(watch.output().find("CANCELLED"), std::string::npos) << watch.output();
  watch.signal(SIGINT);
  EXPECT_EQ(exit_code(watch.wait(20s)), 0) << watch.output();
}

TEST_F(CommandsInJob, ACriticalStopOvertakesTwoHundredNormalCommandsAndTheJobGoesOn) {
  ChildProcess job(mpirun(2, {"--steps", "1000000", "--progress-every", "1000000", "--step-sleep-ms", "50"}));
  const auto broker = broker_of(job);
  ASSERT_FALSE(broker.empty()) << job.output();
  zmq::context_t ctx;
  auto client = client_for(ctx, broker, 2);
  const auto now = client->call(wire::request_snapshot(wire::to_rank(0), {}, "", {20'000}));
  ASSERT_TRUE(now.targets.at(0).has_result) << now.targets[0].detail;
  // All of them queued for one boundary 3 s ahead (60 steps of 50 ms): 200 NORMAL commands that
  // would germinate seed 3, then the CRITICAL stop of that seed.
  const auto at = now.targets[0].result.applied_at_step + 60;
  const wire::CommandOptions opts{30'000, at};
  std::map<std::uint64_t, bool> normal;  // seq -> outcome seen
  for (int i = 0; i < 200; ++i) {
    auto id = client->send(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({3}), State::GERMINATED, "normal",
                                                  false, opts));
    while (!id) {
      (void)client->poll(5ms);
      id = client->send(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({3}), State::GERMINATED, "normal",
                                               false, opts));
    }
    normal[id->seq()] = false;
  }
  const auto stop = client->send(
      wire::emergency_stop(wire::to_all(), wire::StopScope::SEED, 0, 3, "critical", opts), wire::Priority::CRITICAL);
  ASSERT_TRUE(stop);
  std::optional<fabric::CommandOutcome> stopped;
  std::size_t rejected_by_stop = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while ((!stopped || normal.size() > 0) && std::chrono::steady_clock::now() < until) {
    for (auto& o : client->poll(20ms)) {
      if (o.id.seq() == stop->seq()) {
        stopped = std::move(o);
        continue;
      }
      ASSERT_EQ(normal.erase(o.id.seq()), 1u);
      for (const auto& t : o.targets) {
        ASSERT_TRUE(t.has_result) << t.detail;
        EXPECT_EQ(t.result.applied_at_step, at) << t.result.error;
        ASSERT_EQ(t.result.outcomes.size(), 1u);
        rejected_by_stop += t.result.outcomes[0]->error.rfind("emergency_stopped", 0) == 0 ? 1 : 0;
      }
    }
  }
  ASSERT_TRUE(stopped) << job.output();
  ASSERT_EQ(normal.size(), 0u) << "every NORMAL command has its outcome";
  for (const auto& t : stopped->targets) {
    ASSERT_TRUE(t.has_result);
    EXPECT_EQ(t.result.status, wire::Status::OK) << t.result.error;
    EXPECT_EQ(t.result.applied_at_step, at);
    ASSERT_EQ(t.result.outcomes.size(), 1u);
    EXPECT_EQ(t.result.outcomes[0]->from, State::DORMANT) << "applied before any NORMAL command germinated seed 3";
  }
  EXPECT_EQ(rejected_by_stop, 400u) << "all 200 NORMAL commands came after the stop, on both ranks";

  // The other seeds keep training.
  for (const auto to : {State::GERMINATED, State::TRAINING}) {
    const auto o = client->call(wire::transition_seeds(wire::to_all(), 0, wire::seed_ids({1}), to, "go on", false, {20'000}));
    EXPECT_TRUE(o.all_ok()) << (o.targets.at(0).has_result ? o.targets[0].result.error : o.targets[0].detail);
  }
  std::uint32_t trained = 0;
  for (int i = 0; i < 200 && trained < 5; ++i) {
    const auto s = client->call(wire::request_snapshot(wire::to_rank(1), {0}, "", {20'000}));
    const auto* seed = s.targets.at(0).has_result ? seed_of(s.targets[0].result, 0, 1) : nullptr;
    ASSERT_NE(seed, nullptr);
    ASSERT_EQ(seed->state(), State::TRAINING);
    trained = seed->steps_in_state();
  }
  EXPECT_GE(trained, 5u);
  EXPECT_TRUE(client->call(wire::shutdown(wire::to_all(), "done", 20'000, {20'000})).all_ok());
  ASSERT_EQ(exit_code(job.wait(60s)), 3) << job.output();
  const auto r = report();
  EXPECT_EQ(r["layers"][0]["held_by_emergency_stop"], json::array({3}));
  EXPECT_EQ(r["layers"][0]["seed_states"][3], "DORMANT");
  EXPECT_TRUE(r["digests"]["equal"].get<bool>());
}

TEST_F(CommandsInJob, ACommandOutlastingTheRetryScheduleIsAppliedAndReportedOkOnce) {
  // Steps of 6.5 s: slower than the client's whole retry schedule (about 5.75 s), well inside
  // the command's 20 s timeout.
  ChildProcess job(mpirun(2, {"--steps", "1000000", "--progress-every", "1", "--step-sleep-ms", "6500"}));
  const auto broker = broker_of(job);
  ASSERT_FALSE(broker.empty()) << job.output();
  ASSERT_TRUE(job.read_line_starting("step 0/", 60s)) << job.output();
  const auto [code, out] =
      run_ctl(broker, {"--timeout-ms", "20000", "transition", "--layer", "0", "--seeds", "0", "--to", "GERMINATED"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out.find("FAILED"), std::string::npos) << out;
  EXPECT_EQ(out.find("RETRIES_EXHAUSTED"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 0: OK at step"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1: OK at step"), std::string::npos) << out;
  // The scenario: the answer took longer than the retry schedule (else this proves nothing).
  const auto ms_at = out.rfind(" ms]");
  ASSERT_NE(ms_at, std::string::npos) << out;
  EXPECT_GT(std::stod(out.substr(out.rfind('[', ms_at) + 1)), 5750.0) << out;

  zmq::context_t ctx;
  auto client = client_for(ctx, broker, 2);
  EXPECT_TRUE(client->call(wire::shutdown(wire::to_all(), "done", 30'000, {30'000})).all_ok());
  ASSERT_EQ(exit_code(job.wait(60s)), 3) << job.output();
  EXPECT_EQ(report()["commands"]["timed_out"], 0);
}

// Each error path ends the whole job within 30 s, non-zero, naming the rank, host and cause.
// `--compression always` packs telemetry on one host too (what an outsider's decoder needs to see),
// where `auto` sends it as it is over ipc.
TEST_F(CommandsInJob, CompressionAlwaysPacksTelemetryOnOneHostWhereAutoDoesNot) {
  for (const std::string mode : {"always", "auto"}) {
    SCOPED_TRACE(mode);
    ChildProcess job(mpirun(1, {"--steps", "1000000", "--progress-every", "1000000", "--transport", "ipc",
                                "--compression", mode}));
    const auto broker = broker_of(job);
    ASSERT_FALSE(broker.empty()) << job.output();
    ChildProcess watch({ESPER_CLI, "watch", "--broker", broker, "--topic", "tel/", "--count", "6"});
    ASSERT_EQ(exit_code(watch.wait(60s)), 0) << watch.output();
    std::size_t batches = 0, packed = 0;
    std::istringstream lines(watch.output());
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("tel/", 0) != 0) continue;
      ++batches;
      if (line.find(" packed") != std::string::npos) ++packed;
    }
    EXPECT_EQ(batches, 6u) << watch.output();
    if (mode == "always") {
      EXPECT_GE(packed, 1u) << watch.output();
    } else {
      EXPECT_EQ(packed, 0u) << watch.output();
    }
    zmq::context_t ctx;
    (void)client_for(ctx, broker, 1)->call(wire::shutdown(wire::to_all(), "test done", 20'000, {20'000}));
    EXPECT_EQ(exit_code(job.wait(60s)), 3) << job.output();
  }
}

class JobFailure : public CommandsInJob {
 protected:
  std::string run_failing(int ranks, std::vector<std::string> args, const std::string& expect) {
    ChildProcess job(mpirun(ranks, std::move(args)));
    const auto st = job.wait(30s);
    EXPECT_TRUE(st) << "mpirun still running after 30 s: " << job.output();
    EXPECT_TRUE(st && !(WIFEXITED(*st) && WEXITSTATUS(*st) == 0)) << job.output();
    EXPECT_NE(job.output().find(expect), std::string::npos) << job.output();
    return job.output();
  }
};

TEST_F(JobFailure, ABadOptionValueIsRefusedBeforeAnyRankTrains) {
  const auto out = run_failing(2, {"--schedule", "random:abc"}, "'abc' is not a number of commands");
  EXPECT_EQ(out.find("step 0/"), std::string::npos) << out;
}

TEST_F(JobFailure, ABrokerThatCannotBeReachedEndsTheJobWithAFailedReport) {
  // A port that nothing listens on: bound, never listened, closed at the end.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const auto port = std::to_string(ntohs(a.sin_port));
  run_failing(2, {"--broker", "tcp://127.0.0.1:" + port, "--connect-timeout-ms", "1500"}, "rank 0 on ");
  ::close(fd);
  const auto r = report();
  EXPECT_EQ(r["status"], "failed");
  EXPECT_NE(r.value("error", "").find("rank 0 on "), std::string::npos) << r.dump();
  EXPECT_NE(r.value("error", "").find("127.0.0.1:" + port), std::string::npos) << r.dump();
}

TEST_F(JobFailure, AControllerThatCannotJoinEndsTheJob) {
  run_failing(2, {"--policy", "balanced", "--fail-controller-join", "--connect-timeout-ms", "1500"},
              "the controller could not join");
  const auto r = report();
  EXPECT_EQ(r["status"], "failed");
  EXPECT_NE(r.value("error", "").find("rank 0 on "), std::string::npos) << r.dump();
}

TEST_F(JobFailure, AnExceptionOnOneRankMidTrainingEndsTheWholeJob) {
  const auto out = run_failing(3, {"--steps", "1000000", "--progress-every", "10", "--fail-at-step", "30",
                                   "--fail-rank", "1"},
                               "injected failure at step 30");
  EXPECT_NE(out.find("rank 1 on "), std::string::npos) << out;
  const auto r = report();
  EXPECT_EQ(r.value("status", "").rfind("failed: rank 1 on ", 0), 0u) << r.dump();
  EXPECT_NE(r.value("status", "").find("injected failure at step 30"), std::string::npos) << r.dump();
  EXPECT_GE(r["steps_run"].get<int>(), 30);
}

// An exception in a fabric thread (test hook --fail-thread: it throws at the 3rd heartbeat) ends
// the job like any other failure on a rank: non-zero, the rank, host, thread and cause in the
// output and in rank 0's report; never std::terminate.
TEST_F(JobFailure, AFailedNodeThreadOnOneRankEndsTheWholeJob) {
  const auto out = run_failing(2, {"--steps", "1000000", "--progress-every", "10", "--heartbeat-ms", "100",
                                   "--fail-thread", "node", "--fail-rank", "1"},
                               "injected failure at heartbeat 3");
  EXPECT_NE(out.find("esper run: failed: rank 1 on "), std::string::npos) << out;
  EXPECT_NE(out.find("the node I/O thread on "), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
  EXPECT_EQ(out.find("signal 6"), std::string::npos) << out;
  // The node's own thread is gone: the rank sent its failure notice itself, and rank 0 reported it.
  const auto r = report();
  EXPECT_EQ(r.value("status", "").rfind("failed: rank 1 on ", 0), 0u) << r.dump();
  EXPECT_NE(r.value("error", "").find("injected failure at heartbeat 3"), std::string::npos) << r.dump();
}

TEST_F(JobFailure, AFailedBrokerThreadEndsTheWholeJob) {
  const auto out = run_failing(2, {"--steps", "1000000", "--progress-every", "10", "--heartbeat-ms", "100",
                                   "--fail-thread", "broker"},
                               "injected failure at heartbeat 3");
  EXPECT_NE(out.find("rank 0 on "), std::string::npos) << out;
  EXPECT_NE(out.find("the broker thread on "), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
  EXPECT_EQ(out.find("signal 6"), std::string::npos) << out;
  const auto r = report();
  EXPECT_NE(r.value("error", "").find("rank 0 on "), std::string::npos) << r.dump();
  EXPECT_NE(r.value("error", "").find("the broker thread on "), std::string::npos) << r.dump();
}

TEST_F(JobFailure, AnExceptionOnRankZeroEndsTheWholeJob) {
  run_failing(2, {"--steps", "1000000", "--progress-every", "10", "--fail-at-step", "20", "--fail-rank", "0"},
              "injected failure at step 20");
  const auto r = report();
  EXPECT_EQ(r.value("status", "").rfind("failed: rank 0 on ", 0), 0u) << r.dump();
}

}  // namespace
}  // namespace esper
