// The command path through a real broker over inproc, ipc and tcp: round trips, fan-out, priority,
// retries with exactly-once application, timeouts, and expected outcomes as values.
#include "fabric/fabric_fixture.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

class CommandPath : public ::testing::TestWithParam<std::string> {
 protected:
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options(GetParam())};
};

TEST_P(CommandPath, CommandRoundTripReturnsTheRanksResult) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(1), [](const IncomingCommand& in) {
    const auto* t = in.command.body_as_TransitionSeeds();
    return wire::command_result(wire::Status::OK, 1, "",
                                {wire::seed_outcome(3, wire::Status::OK, wire::SeedState::DORMANT, t->target())});
  });
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd);
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
}

TEST_P(CommandPath, BroadcastToNRanksYieldsNResults) {
  std::vector<std::unique_ptr<ServedNode>> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.push_back(std::make_unique<ServedNode>(ctx_, broker_.endpoints().cmd,
                                                 node_options(r, {static_cast<std::uint32_t>(r % 2)}), ok_handler(r)));
  }
  ASSERT_TRUE(wait_for_ranks(broker_, 3));
  Client client(ctx_, broker_.endpoints().cmd);

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
}

TEST_P(CommandPath, CommandToAnUnknownTargetEndsAtOnceWithTheReason) {
  ServedNode rank(ctx_, broker_.endpoints().cmd, node_options(0), ok_handler(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd);
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

INSTANTIATE_TEST_SUITE_P(Transports, CommandPath, ::testing::Values("inproc", "ipc", "tcp"),
                         [](const auto& p) { return p.param; });

class Commands : public ::testing::Test {
 protected:
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options("inproc")};
};

TEST_F(Commands, CriticalOvertakesQueuedNormal) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  Client client(ctx_, broker_.endpoints().cmd);
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

TEST_F(Commands, LostResultsAreRetriedAndTheCommandIsAppliedOnce) {
  auto o = node_options(0);
  o.faults.drop_results = 2;
  std::atomic<int> applied{0};
  ServedNode rank(ctx_, broker_.endpoints().cmd, o, ok_handler(0, &applied));
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 30ms;
  Client client(ctx_, broker_.endpoints().cmd, co);
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "once"));
  ASSERT_EQ(out.targets.size(), 1u);
  ASSERT_TRUE(out.targets[0].has_result) << out.targets[0].detail;
  EXPECT_GE(out.targets[0].attempts, 3u);
  EXPECT_EQ(applied.load(), 1) << "a retried command must be applied exactly once";
  EXPECT_GE(client.counters().commands_retried, 2u);
  EXPECT_GE(rank.node().counters().commands_deduplicated, 2u);
  EXPECT_EQ(rank.node().counters().commands_applied, 1u);
}

TEST_F(Commands, ImmediateHandlerAnswersOnTheNodesThreadAndStillAppliesOnce) {
  auto o = node_options(0);
  o.faults.drop_results = 1;
  std::atomic<int> applied{0};
  std::thread::id handler_thread;
  o.immediate_handler = [&](const IncomingCommand&) {
    ++applied;
    handler_thread = std::this_thread::get_id();
    return wire::command_result(wire::Status::OK, 0);
  };
  Node node(ctx_, broker_.endpoints().cmd, o);
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 30ms;
  Client client(ctx_, broker_.endpoints().cmd, co);
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "now"));
  ASSERT_TRUE(out.all_ok());
  EXPECT_GE(out.targets[0].attempts, 2u) << "the first result was dropped, so the command was retried";
  EXPECT_EQ(applied.load(), 1);
  EXPECT_NE(handler_thread, std::this_thread::get_id());
  EXPECT_EQ(node.queued_commands(), 0u) << "nothing waits for poll_commands()";
}

TEST_F(Commands, UnansweredCommandEndsWithTimeoutAndIsNotAppliedLater) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));  // nobody polls its commands
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  ClientOptions co;
  co.retry.first = 50ms;
  Client client(ctx_, broker_.endpoints().cmd, co);
  const auto out = client.call(wire::shutdown(wire::to_rank(0), "late", 0, wire::CommandOptions{200, -1}));
  ASSERT_EQ(out.targets.size(), 1u);
  EXPECT_FALSE(out.targets[0].has_result);
  EXPECT_TRUE(out.targets[0].failure == wire::FailureReason::TIMEOUT ||
              out.targets[0].failure == wire::FailureReason::RETRIES_EXHAUSTED);
  int applied = 0;
  node.poll_commands([&](const IncomingCommand&) {
    ++applied;
    return wire::command_result(wire::Status::OK, 0);
  });
  EXPECT_EQ(applied, 0) << "a command past its timeout is answered TIMEOUT, not applied";
}

TEST_F(Commands, FullPendingTableIsAnExpectedOutcome) {
  ClientOptions co;
  co.max_pending = 2;
  Client client(ctx_, broker_.endpoints().cmd, co);
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

TEST_F(Commands, GarbageFramesAreCountedAndTheBrokerKeepsServing) {
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
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (broker_.counters().frames_rejected < 4 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(broker_.counters().frames_rejected, 4u);
  const auto rejected = broker_.rejects().recent();
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_NE(rejected[1].reason.find("frame"), std::string::npos) << rejected[1].reason;
  EXPECT_NE(rejected[2].reason.find("wrong file identifier"), std::string::npos) << rejected[2].reason;
  EXPECT_NE(rejected[3].reason.find("unknown frame type"), std::string::npos) << rejected[3].reason;
  EXPECT_EQ(rejected[0].size, garbage.size());
}

TEST_F(Commands, GarbageSentToANodeIsCountedAndTheNodeKeepsServing) {
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

}  // namespace
}  // namespace esper::fabric
