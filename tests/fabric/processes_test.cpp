// The fabric across real processes: ranks and publishers are separate executables (fabric_peer)
// talking to a broker over ipc and tcp.
#include <csignal>

#include "fabric/fabric_fixture.hpp"
#include "support/process.hpp"

namespace esper::fabric {
namespace {

using namespace testing;
using esper::testing::ChildProcess;
using esper::testing::field;

std::vector<std::string> peer(std::vector<std::string> args) {
  args.insert(args.begin(), ESPER_FABRIC_PEER);
  return args;
}

class KilledRank : public ::testing::TestWithParam<Path> {};

// Through the broker, the broker fails what the rank owes; straight to the rank, the client fails
// it when the broker's route table drops the rank. Either way within three heartbeat intervals.
TEST_P(KilledRank, EndsAsRankLostWithinThreeHeartbeats) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("tcp"));
  constexpr auto kInterval = 500ms;  // detection lands 1.5-2.5 intervals after the kill: the margin is half an interval
  ChildProcess rank(peer({"rank", "--broker", broker.endpoints().cmd, "--rank", "4", "--heartbeat-ms",
                          std::to_string(kInterval.count()), "--no-poll", "1"}));
  ASSERT_TRUE(rank.read_line_starting("ready", 10s));
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  Client client(ctx, broker.endpoints().cmd, client_options(GetParam()));
  ASSERT_TRUE(ready(client, GetParam(), 1));
  // The rank never polls: the command stays in flight until the rank dies.
  const auto id = client.send(wire::shutdown(wire::to_rank(4), "never answered", 0, wire::CommandOptions{30'000, -1}));
  ASSERT_TRUE(id);
  (void)client.poll(100ms);
  const auto killed = std::chrono::steady_clock::now();
  rank.signal(SIGKILL);
  std::vector<CommandOutcome> done;
  while (done.empty() && std::chrono::steady_clock::now() - killed < 5s) done = client.poll(10ms);
  const auto elapsed = std::chrono::steady_clock::now() - killed;
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].targets.size(), 1u);
  EXPECT_EQ(done[0].targets[0].rank, 4);
  EXPECT_FALSE(done[0].targets[0].has_result);
  EXPECT_EQ(done[0].targets[0].failure, wire::FailureReason::RANK_LOST);
  EXPECT_LE(elapsed, 3 * kInterval) << "lost after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                                    << " ms";
  EXPECT_EQ(broker.counters().ranks_lost, 1u);
  EXPECT_TRUE(broker.live_ranks().empty());
  EXPECT_EQ(client.sent_direct(), GetParam() == Path::Direct ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Paths, KilledRank, ::testing::Values(Path::Direct, Path::Broker),
                         [](const auto& p) { return std::string(name(p.param)); });

TEST(Processes, RankProcessAppliesARetriedCommandOnce) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("ipc"));
  ChildProcess rank(peer({"rank", "--broker", broker.endpoints().cmd, "--rank", "2", "--heartbeat-ms", "100",
                          "--drop-results", "2"}));
  ASSERT_TRUE(rank.read_line_starting("ready", 10s));
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  ClientOptions co;
  co.retry.first = 30ms;
  Client client(ctx, broker.endpoints().cmd, co);
  ASSERT_TRUE(ready(client, Path::Direct, 1));
  const auto out = client.call(wire::shutdown(wire::to_rank(2), "once"));
  ASSERT_TRUE(out.all_ok());
  EXPECT_EQ(client.sent_direct(), 1u);
  EXPECT_GE(out.targets[0].attempts, 3u);
  rank.signal(SIGTERM);
  ASSERT_TRUE(rank.wait(5s));
  const auto line = rank.read_line_starting("done", 1s);
  ASSERT_TRUE(line);
  EXPECT_EQ(field(*line, "applied"), 1u);
}

// A fault in a node's I/O thread (test hook: it throws instead of sending its 3rd heartbeat) is
// handed to the process that owns the node, which exits with status 1 naming the thread, the host
// and the cause, instead of std::terminate.
TEST(Processes, AFailedNodeThreadEndsItsProcessWithStatusOneAndTheCause) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("ipc"));
  ChildProcess rank(peer({"rank", "--broker", broker.endpoints().cmd, "--rank", "3", "--heartbeat-ms", "50",
                          "--fail-at-heartbeat", "3"}));
  const auto st = rank.wait(10s);
  ASSERT_TRUE(st) << "the rank process still runs: " << rank.output();
  EXPECT_TRUE(WIFEXITED(*st)) << "killed by signal " << (WIFSIGNALED(*st) ? WTERMSIG(*st) : 0) << ": " << rank.output();
  EXPECT_EQ(WIFEXITED(*st) ? WEXITSTATUS(*st) : -1, 1) << rank.output();
  const auto& out = rank.output();
  EXPECT_NE(out.find("ready rank=3"), std::string::npos) << out;
  EXPECT_NE(out.find("failed: the node I/O thread on "), std::string::npos) << out;
  EXPECT_NE(out.find("injected failure at heartbeat 3"), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
}

class PublisherProcesses : public ::testing::TestWithParam<std::string> {};

TEST_P(PublisherProcesses, EveryRecordFromTwoPublishersArrives) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options(GetParam()));
  Subscriber sub(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(sub.wait_ready(5s));
  constexpr std::uint64_t kPerPublisher = 30'000;
  std::vector<std::unique_ptr<ChildProcess>> pubs;
  for (int r = 0; r < 2; ++r) {
    pubs.push_back(std::make_unique<ChildProcess>(peer({"publish", "--broker", broker.endpoints().cmd, "--rank",
                                                        std::to_string(r), "--layer", std::to_string(r), "--records",
                                                        std::to_string(kPerPublisher), "--hwm", "100000",
                                                        "--max-queued", "1000"})));
  }
  std::uint64_t got = 0;
  std::map<int, std::uint64_t> per_rank;
  while (got < 2 * kPerPublisher) {
    auto d = sub.next(5s);
    ASSERT_TRUE(d) << "received " << got << " of " << 2 * kPerPublisher;
    if (const auto* b = d->message->body<wire::TelemetryBatch>()) {
      got += b->seeds()->size();
      per_rank[b->rank()] += b->seeds()->size();
    }
  }
  for (auto& p : pubs) {
    ASSERT_TRUE(p->wait(10s));
    const auto line = p->read_line_starting("done", 1s);
    ASSERT_TRUE(line);
    EXPECT_EQ(field(*line, "sent"), kPerPublisher);
    EXPECT_EQ(field(*line, "dropped"), 0u);
  }
  EXPECT_EQ(per_rank[0], kPerPublisher);
  EXPECT_EQ(per_rank[1], kPerPublisher);
  EXPECT_EQ(sub.telemetry_batches_missing(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, PublisherProcesses, ::testing::Values("ipc", "tcp"),
                         [](const auto& p) { return p.param; });

TEST(Processes, ForcedDropsAcrossProcessesAreAccountedForEveryRecord) {
  zmq::context_t ctx;
  BrokerOptions bo = broker_options("ipc");
  bo.pub_hwm = 2;
  Broker broker(ctx, bo);
  SubscriberOptions so;
  so.rcvhwm = 2;
  Subscriber sub(ctx, broker.endpoints().cmd, so);
  ASSERT_TRUE(sub.wait_ready(5s));
  constexpr std::uint64_t kPerPublisher = 40'000;
  std::vector<std::unique_ptr<ChildProcess>> pubs;
  for (int r = 0; r < 2; ++r) {
    pubs.push_back(std::make_unique<ChildProcess>(peer({"publish", "--broker", broker.endpoints().cmd, "--rank",
                                                        std::to_string(r), "--records", std::to_string(kPerPublisher),
                                                        "--hwm", "2"})));
  }
  std::uint64_t dropped_at_publishers = 0;
  for (auto& p : pubs) {
    ASSERT_TRUE(p->wait(20s));
    const auto line = p->read_line_starting("done", 1s);
    ASSERT_TRUE(line);
    EXPECT_EQ(field(*line, "sent"), kPerPublisher);
    dropped_at_publishers += field(*line, "dropped");
  }
  std::uint64_t received = 0;
  while (auto d = sub.next(500ms)) {
    if (const auto* b = d->message->body<wire::TelemetryBatch>()) received += b->seeds()->size();
  }
  const auto dropped_at_broker = broker.counters().telemetry_records_dropped;
  EXPECT_GT(dropped_at_publishers + dropped_at_broker, 0u);
  EXPECT_EQ(received + dropped_at_publishers + dropped_at_broker, 2 * kPerPublisher)
      << "received " << received << ", dropped at publishers " << dropped_at_publishers << ", at broker "
      << dropped_at_broker;
}

}  // namespace
}  // namespace esper::fabric
