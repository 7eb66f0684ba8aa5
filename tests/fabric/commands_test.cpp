// The command paths — straight to the ranks and through the broker — over inproc, ipc and tcp: round
// trips, fan-out, priority, retries with exactly-once application, timeouts, route-table changes,
// and expected outcomes as values.
#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

class CommandPath : public ::testing::TestWithParam<std::tuple<std::string, Path>> {
 protected:
  Path path() const { return std::get<1>(GetParam()); }
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options(std::get<0>(GetParam()))};
};

TEST_P(CommandPath, CommandRoundTripReturnsTheRanksResult) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(1), [](const IncomingCommand& in) {
    const auto* t = in.command.body_as_TransitionSeeds();
    return wire::command_result(wire::Status::OK, 1, "",
                                {wire::seed_outcome(3, wire::Status::OK, wire::SeedState::DORMANT, t->target())});
  });
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd, client_options(path()));
  ASSERT_TRUE(ready(client, path(), 1));
  const auto out = client.call(wire::transition_seeds(wire::to_rank(1), 0, wire::seed_ids({3}),
                                                      wire::SeedState::GERMINATED, "wake"));
  ASSERT_EQ(out.targets.size(), 1u);
  const auto& t = out.targets[0];
  ASSERT_TRUE(t.has_result) << t.detail;
  EXPECT_EQ(t.rank, 1);
  EXPECT_EQ(t.result.status, wire::Status::OK);
  ASSERT_EQ(t.result.outcomes.size(), 1u);
  EXPECT_EQ(t.result.outcomes[0]->to, wire::SeedState::GERMINATED);
  EXPECT_GT(t.latency.count(), 0);
  EXPECT_TRUE(out.all_ok());
  EXPECT_EQ(client.pending(), 0u);
  EXPECT_EQ(client.sent_direct(), path() == Path::Direct ? 1u : 0u);
  EXPECT_EQ(client.sent_via_broker(), path() == Path::Broker ? 1u : 0u);
  EXPECT_EQ(broker_.counters().commands_sent, path() == Path::Broker ? 1u : 0u) << "the broker forwards only what it is sent";
}

TEST_P(CommandPath, BroadcastToNRanksYieldsNResults) {
  std::vector<std::unique_ptr<ServedNode>> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.push_back(std::make_unique<ServedNode>(ctx_, broker_.endpoints().cmd,
                                                 node_options(r, {static_cast<std::uint32_t>(r % 2)}), ok_handler(r)));
  }
  ASSERT_TRUE(wait_for_ranks(broker_, 3));
  Client client(ctx_, broker_.endpoints().cmd, client_options(path()));
  ASSERT_TRUE(ready(client, path(), 3));

  auto all = client.call(wire::shutdown(wire::to_all(), "test"));
  ASSERT_EQ(all.targets.size(), 3u);
  std::vector<int> seen;
  for (const auto& t : all.targets) seen.push_back(t.rank);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(all.all_ok());

  // Layer 0 is held by ranks 0 and 2.
  auto layer = client.call(wire::emergency_stop(wire::to_layer(0), wire::StopScope::LAYER, 0, 0, "test"));
  seen.clear();
  for (const auto& t : layer.targets) seen.push_back(t.rank);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 2}));
  EXPECT_TRUE(layer.all_ok());
  EXPECT_EQ(client.sent_direct(), path() == Path::Direct ? 2u : 0u);
}

TEST_P(CommandPath, CommandToAnUnknownTargetEndsAtOnceWithTheReason) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd, client_options(path()));
  ASSERT_TRUE(ready(client, path(), 1));
  const auto to_rank = client.call(wire::shutdown(wire::to_rank(9), "x"));
  ASSERT_EQ(to_rank.targets.size(), 1u);
  EXPECT_FALSE(to_rank.targets[0].has_result);
  EXPECT_EQ(to_rank.targets[0].rank, 9);
  EXPECT_EQ(to_rank.targets[0].failure, wire::FailureReason::RANK_LOST);
  EXPECT_NE(to_rank.targets[0].detail.find("rank 9"), std::string::npos) << to_rank.targets[0].detail;

  const auto to_layer = client.call(wire::shutdown(wire::to_layer(42), "x"));
  ASSERT_EQ(to_layer.targets.size(), 1u);
  EXPECT_EQ(to_layer.targets[0].failure, wire::FailureReason::REJECTED);
  EXPECT_NE(to_layer.targets[0].detail.find("layer 42"), std::string::npos) << to_layer.targets[0].detail;
}

INSTANTIATE_TEST_SUITE_P(Transports, CommandPath,
                         ::testing::Combine(::testing::Values("inproc", "ipc", "tcp"),
                                            ::testing::Values(Path::Direct, Path::Broker)),
                         [](const auto& p) { return std::get<0>(p.param) + "_" + name(std::get<1>(p.param)); });

class Commands : public ::testing::TestWithParam<Path> {
 protected:
  Path path() const { return GetParam(); }
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options("inproc")};
};

// The garbage tests and the route-table tests need no path parameter.
class Fabric : public ::testing::Test {
 protected:
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options("inproc")};
};

TEST_P(Commands, CriticalOvertakesQueuedNormal) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd, client_options(path()));
  ASSERT_TRUE(ready(client, path(), 1));
  std::vector<std::string> reasons;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client.send(wire::shutdown(wire::to_rank(0), "normal-" + std::to_string(i))));
  }
  ASSERT_TRUE(client.send(wire::shutdown(wire::to_rank(0), "critical"), wire::Priority::CRITICAL));
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (node.queued_commands() < 11 && std::chrono::steady_clock::now() < until) (void)client.poll(5ms);
  ASSERT_EQ(node.queued_commands(), 11u);
  node.poll_commands([&](const IncomingCommand& in) {
    reasons.push_back(in.command.body_as_Shutdown()->reason()->str());
    return wire::command_result(wire::Status::OK, 0);
  });
  ASSERT_EQ(reasons.size(), 11u);
  EXPECT_EQ(reasons.front(), "critical");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(reasons[static_cast<std::size_t>(i) + 1], "normal-" + std::to_string(i));
}

TEST_P(Commands, LostResultsAreRetriedAndTheCommandIsAppliedOnce) {
  auto o = node_options(0);
  o.faults.drop_results = 2;
  std::atomic<int> applied{0};
  ServedNode rank(ctx_, broker_.endpoints().cmd, o, ok_handler(0, &applied));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 30ms;
  Client client(ctx_, broker_.endpoints().cmd, client_options(path(), co));
  ASSERT_TRUE(ready(client, path(), 1));
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "once"));
  ASSERT_EQ(out.targets.size(), 1u);
  ASSERT_TRUE(out.targets[0].has_result) << out.targets[0].detail;
  EXPECT_GE(out.targets[0].attempts, 3u);
  EXPECT_EQ(applied.load(), 1) << "a retried command must be applied exactly once";
  EXPECT_GE(client.counters().commands_retried, 2u);
  EXPECT_GE(rank.node().counters().commands_deduplicated, 2u);
  EXPECT_EQ(rank.node().counters().commands_applied, 1u);
}

TEST_P(Commands, ImmediateHandlerAnswersOnTheNodesThreadAndStillAppliesOnce) {
  auto o = node_options(0);
  o.faults.drop_results = 1;
  std::atomic<int> applied{0};
  std::atomic<std::thread::id> handler_thread;  // written on the node's thread, read here (TSan)
  o.immediate_handler = [&](const IncomingCommand&) {
    ++applied;
    handler_thread = std::this_thread::get_id();
    return wire::command_result(wire::Status::OK, 0);
  };
  Node node(ctx_, broker_.endpoints().cmd, o);
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 30ms;
  Client client(ctx_, broker_.endpoints().cmd, client_options(path(), co));
  ASSERT_TRUE(ready(client, path(), 1));
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "now"));
  ASSERT_TRUE(out.all_ok());
  EXPECT_GE(out.targets[0].attempts, 2u) << "the first result was dropped, so the command was retried";
  EXPECT_EQ(applied.load(), 1);
  EXPECT_NE(handler_thread.load(), std::this_thread::get_id());
  EXPECT_EQ(node.queued_commands(), 0u) << "nothing waits for poll_commands()";
}

// One deadline: the client re-sends at most max_attempts times, then waits silently; it reports a
// target that never answered only at timeout_ms + result_grace, when the rank no longer applies it.
TEST_P(Commands, UnansweredCommandEndsWithTimeoutAndIsNotAppliedLater) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));  // nobody polls its commands
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 20ms;
  co.retry.max_attempts = 3;
  co.result_grace = 150ms;
  Client client(ctx_, broker_.endpoints().cmd, client_options(path(), co));
  ASSERT_TRUE(ready(client, path(), 1));
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "late", 0, wire::CommandOptions{300, -1}));
  ASSERT_EQ(out.targets.size(), 1u);
  const auto& t = out.targets[0];
  EXPECT_FALSE(t.has_result);
  EXPECT_EQ(t.failure, wire::FailureReason::TIMEOUT) << t.detail;
  EXPECT_GE(t.latency, 300ms + 150ms) << "reported before the rank's deadline plus the result's grace";
  EXPECT_EQ(t.attempts, 3u) << "max_attempts caps the sends";
  EXPECT_EQ(client.counters().commands_retried, 2u);
  EXPECT_EQ(node.counters().commands_deduplicated, 2u) << "every copy reached the rank";
  int applied = 0;
  node.poll_commands([&](const IncomingCommand&) {
    ++applied;
    return wire::command_result(wire::Status::OK, 0);
  });
  EXPECT_EQ(applied, 0) << "a command past its timeout is answered TIMEOUT, not applied";
}

// A rank that takes its commands late — here 6.5 s after the send, past the old retry schedule's
// give-up at about 5.75 s — but within timeout_ms applies the command, and its client gets that
// result: no failure comes first.
TEST_P(Commands, ALateAnswerWithinTheTimeoutIsTheOutcomeNotAFailure) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));  // its application thread comes late
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd, client_options(path()));  // the default retry policy
  ASSERT_TRUE(ready(client, path(), 1));
  const auto sent = std::chrono::steady_clock::now();
  const auto id = client.send(wire::shutdown(wire::to_rank(0), "late", 0, wire::CommandOptions{20'000, -1}));
  ASSERT_TRUE(id);
  while (std::chrono::steady_clock::now() - sent < 6500ms) {
    const auto early = client.poll(20ms);
    ASSERT_TRUE(early.empty()) << "an outcome before the rank answered: "
                               << (early[0].targets.empty() ? std::string("none") : early[0].targets[0].detail);
  }
  ASSERT_EQ(node.poll_commands([](const IncomingCommand&) { return wire::command_result(wire::Status::OK, 0); }), 1u);
  std::vector<CommandOutcome> done;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (done.empty() && std::chrono::steady_clock::now() < until) done = client.poll(10ms);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id.seq(), id->seq());
  ASSERT_EQ(done[0].targets.size(), 1u);
  ASSERT_TRUE(done[0].targets[0].has_result) << done[0].targets[0].detail;
  EXPECT_EQ(done[0].targets[0].result.status, wire::Status::OK);
  EXPECT_EQ(done[0].targets[0].attempts, 5u) << "every allowed send was spent, then the client waited";
  EXPECT_EQ(node.counters().commands_applied, 1u);
}

TEST_P(Commands, FullPendingTableIsAnExpectedOutcome) {
  ClientOptions co;
  co.max_pending = 2;
  Client client(ctx_, broker_.endpoints().cmd, client_options(path(), co));
  ASSERT_TRUE(ready(client, path(), 0));  // an empty table: commands go to the broker, which rejects them
  ASSERT_TRUE(client.send(wire::shutdown(wire::to_all(), "a")));
  ASSERT_TRUE(client.send(wire::shutdown(wire::to_all(), "b")));
  const auto third = client.send(wire::shutdown(wire::to_all(), "c"));
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, SendErrc::TooManyPending);
  // No rank is connected: both end as rejected, and the table has room again.
  std::size_t done = 0;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (done < 2 && std::chrono::steady_clock::now() < until) {
    for (const auto& o : client.poll(50ms)) {
      ++done;
      ASSERT_EQ(o.targets.size(), 1u);
      EXPECT_EQ(o.targets[0].failure, wire::FailureReason::REJECTED);
    }
  }
  EXPECT_EQ(done, 2u);
  EXPECT_TRUE(client.send(wire::shutdown(wire::to_all(), "c")));
}

INSTANTIATE_TEST_SUITE_P(Paths, Commands, ::testing::Values(Path::Direct, Path::Broker),
                         [](const auto& p) { return std::string(name(p.param)); });

TEST_F(Fabric, GarbageFramesAreCountedAndTheBrokerKeepsServing) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);
  raw.connect(broker_.endpoints().cmd);
  const std::string garbage = "this is not a flatbuffer";
  raw.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(garbage));                                          // garbage
  raw.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(std::string("\x10\0\0\0ESPR\x01", 9)));             // truncated
  raw.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(std::string("\x10\0\0\0XXXX\0\0\0\0\0\0\0\0", 16)));  // wrong identifier
  raw.send(type_frame('?'), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(garbage));                                          // unknown type
  Client client(ctx_, broker_.endpoints().cmd);
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "still serving"));
  EXPECT_TRUE(out.all_ok());
  EXPECT_TRUE(eventually([&] { return broker_.counters().frames_rejected >= 4; }, 2s));
  EXPECT_EQ(broker_.counters().frames_rejected, 4u);
  const auto rejected = broker_.rejects().recent();
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_NE(rejected[1].reason.find("frame"), std::string::npos) << rejected[1].reason;
  EXPECT_NE(rejected[2].reason.find("wrong file identifier"), std::string::npos) << rejected[2].reason;
  EXPECT_NE(rejected[3].reason.find("unknown frame type"), std::string::npos) << rejected[3].reason;
  EXPECT_EQ(rejected[0].size, garbage.size());
}

TEST_F(Fabric, GarbageSentToANodeIsCountedAndTheNodeKeepsServing) {
  // A fake broker: answers the node's info request, then sends it junk and one real command.
  zmq::socket_t fake(ctx_, zmq::socket_type::router);
  fake.bind("inproc://esper-fake-broker");
  std::thread broker_side([&] {
    zmq::socket_t fake_pub(ctx_, zmq::socket_type::xsub);
    fake_pub.bind("inproc://esper-fake-pub");
    const std::uint8_t subscribe_all = 1;
    fake_pub.send(zmq::buffer(&subscribe_all, 1));
    std::vector<zmq::message_t> hello;
    (void)zmq::recv_multipart(fake, std::back_inserter(hello));
    const std::string peer = hello[0].to_string();
    fake.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    fake.send(type_frame(frame::kInfo), zmq::send_flags::sndmore);
    fake.send(zmq::buffer(std::string("inproc://esper-fake-pub")), zmq::send_flags::sndmore);
    fake.send(zmq::buffer(std::string("inproc://esper-fake-sub")));
    // A socket handles a new peer only when its thread touches it: poll so the node gets its subscription.
    zmq::pollitem_t item{fake_pub.handle(), 0, ZMQ_POLLIN, 0};
    for (int i = 0; i < 20; ++i) zmq::poll(&item, 1, 10ms);
    for (const std::string& junk : {std::string("junk"), std::string("\x08\0\0\0ESPR", 8)}) {
      fake.send(zmq::buffer(peer), zmq::send_flags::sndmore);
      fake.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
      fake.send(zmq::buffer(junk));
    }
    wire::Encoder enc;
    const auto f = enc.encode(wire::Header{wire::MsgId(1, 1)}, wire::shutdown(wire::to_rank(0), "real"));
    fake.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    fake.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
    fake.send(zmq::buffer(f.data(), f.size()));
  });
  Node node(ctx_, "inproc://esper-fake-broker", node_options(0));
  broker_side.join();
  ASSERT_TRUE(node.wait_for_command(5s));
  int served = 0;
  node.poll_commands([&](const IncomingCommand& in) {
    EXPECT_EQ(in.command.body_as_Shutdown()->reason()->str(), "real");
    ++served;
    return wire::command_result(wire::Status::OK, 0);
  });
  EXPECT_EQ(served, 1);
  EXPECT_EQ(node.counters().frames_rejected, 2u);
  EXPECT_EQ(node.rejects().recent().size(), 2u);
}

TEST_F(Fabric, GarbageOnANodesDirectSocketIsCountedAndTheNodeKeepsServing) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0));
  ASSERT_FALSE(rank.node().command_endpoint().empty());
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);
  raw.connect(rank.node().command_endpoint());
  raw.send(type_frame(frame::kCommand), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(std::string("not a flatbuffer")));          // garbage
  raw.send(type_frame(frame::kResult), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(std::string("\x10\0\0\0ESPR\x01", 9)));   // wrong type (and truncated)
  raw.send(zmq::buffer(std::string("a single frame")));             // no type frame
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd);
  ASSERT_TRUE(ready(client, Path::Direct, 1));
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_rank(0), "still serving")).all_ok());
  EXPECT_EQ(client.sent_direct(), 1u);
  EXPECT_EQ(rank.node().counters().frames_rejected, 3u);
  const auto rejected = rank.node().rejects().recent();
  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected[1].where, "node direct");
  EXPECT_NE(rejected[2].reason.find("expected ['C'][command]"), std::string::npos) << rejected[2].reason;
}

// The route table follows the ranks: a rank that joins later is reached directly; a rank reported
// lost fails what it owes at once; a rank restarted under the same number is reached at its new
// endpoint.
TEST_F(Fabric, TheRouteTableFollowsRanksThatJoinLeaveAndRestart) {
  auto first = std::make_unique<Node>(ctx_, broker_.endpoints().cmd, node_options(0));  // never polls
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd);
  ASSERT_TRUE(ready(client, Path::Direct, 1));
  const auto old_endpoint = client.routes().at(0).endpoint;
  EXPECT_EQ(old_endpoint, first->command_endpoint());

  ServedNode later(ctx_, broker_.endpoints().cmd, node_options(1, {7}), ok_handler(1));
  ASSERT_TRUE(ready(client, Path::Direct, 2));
  const auto to_layer = client.call(wire::shutdown(wire::to_layer(7), "joined later"));
  ASSERT_TRUE(to_layer.all_ok());
  EXPECT_EQ(to_layer.targets.at(0).rank, 1);

  const auto owed = client.send(wire::shutdown(wire::to_rank(0), "owed", 0, wire::CommandOptions{30'000, -1}));
  ASSERT_TRUE(owed);
  (void)client.poll(20ms);
  first.reset();  // stops heartbeating: lost after 2.5 intervals of 50 ms
  std::vector<CommandOutcome> done;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (done.empty() && std::chrono::steady_clock::now() < until) done = client.poll(10ms);
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].targets.size(), 1u);
  EXPECT_EQ(done[0].targets[0].failure, wire::FailureReason::RANK_LOST);
  EXPECT_NE(done[0].targets[0].detail.find("rank 0"), std::string::npos) << done[0].targets[0].detail;
  EXPECT_EQ(client.sent_via_broker(), 0u);

  std::atomic<int> applied{0};
  ServedNode restarted(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0, &applied));
  const auto moved = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < moved) {
    const auto routes = client.routes();
    if (routes.size() == 2 && routes[0].endpoint != old_endpoint) break;
    (void)client.poll(5ms);
  }
  ASSERT_EQ(client.routes().at(0).endpoint, restarted.node().command_endpoint());
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_rank(0), "restarted")).all_ok());
  EXPECT_EQ(applied.load(), 1);
  EXPECT_EQ(client.sent_via_broker(), 0u);
}

// Past max_direct_ranks ranks a client keeps no connection per rank: everything goes through the
// broker, and still arrives.
TEST_F(Fabric, PastMaxDirectRanksCommandsGoThroughTheBroker) {
  ServedNode a(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0));
  ServedNode b(ctx_, broker_.endpoints().cmd, node_options(1), ok_handler(1));
  ASSERT_TRUE(wait_for_ranks(broker_, 2));
  ClientOptions co;
  co.max_direct_ranks = 1;
  Client client(ctx_, broker_.endpoints().cmd, co);
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (client.routes().size() < 2 && std::chrono::steady_clock::now() < until) (void)client.poll(5ms);
  const auto routes = client.routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_FALSE(routes[0].direct);
  EXPECT_FALSE(routes[1].direct);
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_all(), "two ranks, one allowed")).all_ok());
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_rank(1), "one rank")).all_ok());
  EXPECT_EQ(client.sent_direct(), 0u);
  EXPECT_EQ(client.sent_via_broker(), 2u);
}

// A rank bound on every interface announces tcp://0.0.0.0:PORT; the broker completes the address
// with the one the rank's heartbeats come from, and clients reach it there.
TEST(FabricTcp, ARankOnEveryInterfaceIsReachedAtTheAddressTheBrokerSees) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("tcp"));
  auto o = node_options(3);
  o.command_endpoint = "tcp://0.0.0.0:0";
  ServedNode rank(ctx, broker.endpoints().cmd, o, ok_handler(3));
  const auto announced = rank.node().command_endpoint();
  ASSERT_EQ(announced.rfind("tcp://0.0.0.0:", 0), 0u) << announced;
  ASSERT_TRUE(wait_for_ranks(broker, 1));
  Client client(ctx, broker.endpoints().cmd);
  ASSERT_TRUE(ready(client, Path::Direct, 1));
  const auto routes = client.routes();
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0].endpoint, "tcp://127.0.0.1:" + announced.substr(announced.rfind(':') + 1));
  EXPECT_TRUE(client.call(wire::shutdown(wire::to_rank(3), "over tcp")).all_ok());
  EXPECT_EQ(client.sent_direct(), 1u);
}

// libzmq leaves an ipc socket's file behind when the socket closes: the broker and the node remove
// theirs when they stop.
TEST(FabricIpc, SocketFilesAreRemovedWhenTheBrokerAndTheNodeStop) {
  zmq::context_t ctx;
  std::vector<std::string> files;
  {
    Broker broker(ctx, broker_options("ipc"));
    Node node(ctx, broker.endpoints().cmd, node_options(0));
    for (const auto& e : {broker.endpoints().cmd, broker.endpoints().pub, broker.endpoints().sub, node.command_endpoint()}) {
      ASSERT_EQ(e.rfind("ipc://", 0), 0u) << e;
      files.push_back(e.substr(6));
      EXPECT_TRUE(std::filesystem::exists(files.back())) << files.back();
    }
  }
  for (const auto& f : files) EXPECT_FALSE(std::filesystem::exists(f)) << f << " was left behind";
}

// A client that goes away before its result does not stall the rank: the result is dropped and
// the next client is served.
TEST_F(Fabric, AClientThatLeavesBeforeItsResultDoesNotStallTheRank) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  {
    Client gone(ctx_, broker_.endpoints().cmd);
    ASSERT_TRUE(ready(gone, Path::Direct, 1));
    ASSERT_TRUE(gone.send(wire::shutdown(wire::to_rank(0), "for a client that leaves")));
    ASSERT_TRUE(node.wait_for_command(5s));
  }
  const auto ok = [](const IncomingCommand&) { return wire::command_result(wire::Status::OK, 0); };
  EXPECT_EQ(node.poll_commands(ok), 1u);
  Client next(ctx_, broker_.endpoints().cmd);
  ASSERT_TRUE(ready(next, Path::Direct, 1));
  ASSERT_TRUE(next.send(wire::shutdown(wire::to_rank(0), "next")));
  ASSERT_TRUE(node.wait_for_command(5s));
  EXPECT_EQ(node.poll_commands(ok), 1u);
  std::vector<CommandOutcome> done;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (done.empty() && std::chrono::steady_clock::now() < until) done = next.poll(10ms);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].all_ok());
}

}  // namespace
}  // namespace esper::fabric
