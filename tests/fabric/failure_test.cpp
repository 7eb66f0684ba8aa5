// A rank's own failure notice (Node::report_failure): the broker marks the rank lost at once, with
// its cause, without waiting for missed heartbeats; what the rank owes fails as RANK_LOST.
#include <pthread.h>

#include <csignal>

#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

class FailureNotice : public ::testing::TestWithParam<Path> {};

TEST_P(FailureNotice, ARanksOwnFailureEndsItAtOnceWithItsCause) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("ipc"));
  // Heartbeats every 10 s: a loss found by missing them would take 25 s.
  auto slow = [](std::int32_t rank) {
    auto o = node_options(rank);
    o.heartbeat_interval = 10s;
    return o;
  };
  ServedNode healthy(ctx, broker.endpoints().cmd, slow(0), ok_handler(0));
  auto o = slow(1);
  o.host = "node-b";
  Node failing(ctx, broker.endpoints().cmd, o);  // never polls: what it is sent stays owed
  ASSERT_TRUE(wait_for_ranks(broker, 2));
  SubscriberOptions events_only;
  events_only.topics = {"evt/"};
  Subscriber sub(ctx, broker.endpoints().cmd, events_only);
  ASSERT_TRUE(sub.wait_ready(5s));
  Client client(ctx, broker.endpoints().cmd, client_options(GetParam()));
  ASSERT_TRUE(ready(client, GetParam(), 2));
  const auto owed = client.send(wire::shutdown(wire::to_rank(1), "owed", 0, wire::CommandOptions{30'000, -1}));
  ASSERT_TRUE(owed);
  ASSERT_TRUE(failing.wait_for_command(5s));

  const std::string cause = "CUDA error: out of memory at step 12";
  const auto reported = std::chrono::steady_clock::now();
  ASSERT_TRUE(failing.report_failure(cause, 5s));
  std::vector<CommandOutcome> done;
  while (done.empty() && std::chrono::steady_clock::now() - reported < 10s) done = client.poll(10ms);
  const auto elapsed = std::chrono::steady_clock::now() - reported;
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].targets.size(), 1u);
  const auto& t = done[0].targets[0];
  EXPECT_EQ(t.rank, 1);
  EXPECT_FALSE(t.has_result);
  EXPECT_EQ(t.failure, wire::FailureReason::RANK_LOST) << t.detail;
  if (GetParam() == Path::Broker) {
    EXPECT_NE(t.detail.find(cause), std::string::npos) << t.detail;
  }
  EXPECT_LT(elapsed, 5s) << "not by missed heartbeats (25 s)";

  const auto lost = broker.lost();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].rank, 1);
  EXPECT_EQ(lost[0].host, "node-b");
  EXPECT_NE(lost[0].reason.find(cause), std::string::npos) << lost[0].reason;
  EXPECT_TRUE(lost[0].self_reported);
  EXPECT_EQ(broker.counters().ranks_lost, 1u);
  EXPECT_EQ(broker.live_ranks(), std::vector<std::int32_t>{0});

  // Forwarded to subscribers like every event, as the rank sent it.
  std::optional<Delivery> d;
  while ((d = sub.next(5s))) {
    const auto* e = d->message->body<wire::Event>();
    if (e != nullptr && e->body_as_RankLost() != nullptr) break;
  }
  ASSERT_TRUE(d);
  const auto* notice = d->message->body<wire::Event>()->body_as_RankLost();
  EXPECT_EQ(notice->rank(), 1);
  EXPECT_EQ(notice->reason()->str(), cause);
  EXPECT_EQ(d->message->envelope().source()->rank(), 1);
  EXPECT_EQ(d->message->envelope().source()->host()->str(), "node-b");

  EXPECT_TRUE(client.call(wire::shutdown(wire::to_rank(0), "the other rank still serves")).all_ok());
}

INSTANTIATE_TEST_SUITE_P(Paths, FailureNotice, ::testing::Values(Path::Direct, Path::Broker),
                         [](const auto& p) { return std::string(name(p.param)); });

// The failing rank's node may heartbeat until its process exits: that does not bring it back. A
// restarted rank (a new connection) joins again.
TEST(FailureNoticeHeartbeats, HeartbeatsAfterTheNoticeDoNotReviveTheRank) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  auto failing = std::make_unique<Node>(ctx, broker.endpoints().cmd, node_options(0));  // heartbeats every 50 ms (test_heartbeat())
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  ASSERT_TRUE(failing->report_failure("diverged", 5s));
  ASSERT_TRUE(eventually([&] { return broker.lost().size() == 1; }));
  const auto heartbeats = broker.counters().heartbeats;
  ASSERT_TRUE(eventually([&] { return broker.counters().heartbeats >= heartbeats + 3; }));
  EXPECT_TRUE(broker.live_ranks().empty());
  EXPECT_EQ(broker.counters().ranks_lost, 1u);
  EXPECT_EQ(broker.lost().size(), 1u);

  failing.reset();
  Node restarted(ctx, broker.endpoints().cmd, node_options(0));
  EXPECT_TRUE(wait_for_ranks(broker, 1));
}

TEST(FailureNoticeHeartbeats, NothingIsSentOnceTheNodeHasStopped) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  Node node(ctx, broker.endpoints().cmd, node_options(0));
  node.stop();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(node.report_failure("too late", 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "returns at once: nothing will hand it over";
  EXPECT_TRUE(broker.lost().empty());
}

std::atomic<int> g_signals{0};

// A signal for the process lands on a thread that does not block it. Here only one fabric thread
// can take SIGUSR1 — the node's I/O thread, then the broker's (each created while the test thread
// left it unblocked, the other while it blocked it; libzmq's own threads block every signal) — and
// 200 of them interrupt its zmq::poll (EINTR: no SA_RESTART). The thread runs the handler and goes
// on: it does not fail, and a command still comes back.
TEST(SignalsOnFabricThreads, ASignalLandingOnTheNodeOrBrokerThreadEndsNeither) {
  struct sigaction on_usr1 {}, before {};
  on_usr1.sa_handler = [](int) { g_signals.fetch_add(1); };
  sigemptyset(&on_usr1.sa_mask);
  on_usr1.sa_flags = 0;  // no SA_RESTART: a blocking call returns EINTR
  ASSERT_EQ(::sigaction(SIGUSR1, &on_usr1, &before), 0);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr1, &old), 0);
  const auto with_usr1 = [&](bool unblocked, const auto& make) {
    ::pthread_sigmask(unblocked ? SIG_UNBLOCK : SIG_BLOCK, &usr1, nullptr);
    auto made = make();  // its thread inherits this mask
    ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    return made;
  };
  for (const bool node_takes_it : {true, false}) {
    SCOPED_TRACE(node_takes_it ? "the node's thread" : "the broker's thread");
    zmq::context_t ctx;
    auto broker = with_usr1(!node_takes_it, [&] { return std::make_unique<Broker>(ctx, broker_options("inproc")); });
    auto node = with_usr1(node_takes_it, [&] {
      auto o = node_options(0);
      o.immediate_handler = [](const IncomingCommand&) { return wire::command_result(wire::Status::OK, 0); };
      return std::make_unique<Node>(ctx, broker->endpoints().cmd, o);
    });
    ASSERT_TRUE(wait_for_ranks(*broker, 1));
    g_signals = 0;
    for (int i = 1; i <= 200; ++i) {
      ::kill(::getpid(), SIGUSR1);
      ASSERT_TRUE(eventually([&] { return g_signals.load() >= i; }, 5s)) << "signal " << i << " was not handled";
    }
    EXPECT_FALSE(node->failure()) << node->failure()->message();
    EXPECT_FALSE(broker->failure()) << broker->failure()->message();
    Client client(ctx, broker->endpoints().cmd);
    ASSERT_TRUE(ready(client, Path::Direct, 1));
    const auto out = client.call(wire::shutdown(wire::to_rank(0), "after the signals"));
    ASSERT_EQ(out.targets.size(), 1u);
    EXPECT_TRUE(out.all_ok()) << out.targets[0].detail;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::sigaction(SIGUSR1, &before, nullptr);
}

}  // namespace
}  // namespace esper::fabric
