// Ids and real values on the wire: a command without a valid msg_id, or reusing one for another
// command, is rejected and never remembered (at the rank and at the broker); the broker's own
// events carry its pid and the job's world size; telemetry batches carry the layer's step time and
// throughput.
#include <cmath>

#include "bench/telemetry_generator.hpp"
#include "fabric/fabric_fixture.hpp"
#include "wire/validate.hpp"

namespace esper::fabric {
namespace {

using namespace testing;

std::vector<std::uint8_t> encoded(const wire::CommandT& c, wire::MsgId id) {
  wire::Encoder enc;
  wire::Header h;
  h.msg_id = id;
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = enc.encode(h, c);
  return {f.begin(), f.end()};
}

// An envelope that carries a command but no msg_id at all (the Encoder always writes one).
std::vector<std::uint8_t> encoded_without_id(const wire::CommandT& c) {
  flatbuffers::FlatBufferBuilder fbb;
  const auto body = wire::Command::Pack(fbb, &c);
  const wire::SchemaVersion version(wire::kSchemaMajor, wire::kSchemaMinor);
  wire::EnvelopeBuilder b(fbb);
  b.add_version(&version);
  b.add_timestamp_ns(wire::wall_clock_ns());
  b.add_body_type(wire::Body::Command);
  b.add_body(body.Union());
  fbb.Finish(b.Finish(), wire::kFileIdentifier);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

// A bare DEALER on a rank's direct command socket or the broker's command socket.
class RawPeer {
 public:
  RawPeer(zmq::context_t& ctx, const std::string& endpoint) : socket_(ctx, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 5000);
    socket_.connect(endpoint);
  }
  void send(char type, std::span<const std::uint8_t> bytes) {
    socket_.send(type_frame(type), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(bytes.data(), bytes.size()));
  }
  // The next message (empty after 5 s without one).
  std::vector<zmq::message_t> receive() {
    std::vector<zmq::message_t> parts;
    (void)zmq::recv_multipart(socket_, std::back_inserter(parts));
    return parts;
  }

 private:
  zmq::socket_t socket_;
};

// A rank's answer on its direct socket, decoded.
struct Answer {
  wire::MsgId correlation{};
  wire::Status status = wire::Status::OK;
  std::string error;
};

Answer answer_from(RawPeer& peer) {
  const auto parts = peer.receive();
  EXPECT_EQ(parts.size(), 2u);
  if (parts.size() != 2) return {wire::MsgId(), wire::Status::FAILED, "no answer"};
  EXPECT_EQ(type_of(parts[0]), frame::kResult);
  wire::Decoder dec;
  auto msg = dec.decode(bytes(parts[1]));
  EXPECT_TRUE(msg) << msg.error().message();
  if (!msg || msg->body<wire::CommandResult>() == nullptr) return {wire::MsgId(), wire::Status::FAILED, "not a result"};
  const auto* r = msg->body<wire::CommandResult>();
  return {*msg->envelope().correlation_id(), r->status(), r->error() ? r->error()->str() : ""};
}

class Ids : public ::testing::Test {
 protected:
  zmq::context_t ctx_;
  Broker broker_{ctx_, broker_options("inproc")};
};

TEST_F(Ids, ACommandWithoutAValidMsgIdIsRejectedAndNeverRemembered) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));
  RawPeer peer(ctx_, node.command_endpoint());
  // The zero id twice, for two different commands: each is answered on its own, neither is
  // taken for a duplicate of the other.
  peer.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "zero id"), wire::MsgId(0, 0)));
  auto a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_NE(a.error.find("seq 0"), std::string::npos) << a.error;
  peer.send(frame::kCommand,
            encoded(wire::emergency_stop(wire::to_rank(0), wire::StopScope::JOB, 0, 0, "zero id"), wire::MsgId(0, 0)));
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_NE(a.error.find("seq 0"), std::string::npos) << a.error;
  // A sender but no sequence number: still nothing a generator produces.
  peer.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "no seq"), wire::MsgId(77, 0)));
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_EQ(a.correlation.sender(), 77u);
  peer.send(frame::kCommand, encoded_without_id(wire::shutdown(wire::to_rank(0), "no id")));
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_NE(a.error.find("no msg_id"), std::string::npos) << a.error;

  const auto c = node.counters();
  EXPECT_EQ(c.commands_invalid_id, 4u);
  EXPECT_EQ(c.commands_deduplicated, 0u);
  EXPECT_EQ(c.commands_applied, 0u);
  EXPECT_EQ(node.queued_commands(), 0u) << "none of them reaches the application";
  const auto rejected = node.rejects().recent();
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_EQ(rejected[0].where, "node direct");
  EXPECT_NE(rejected[3].reason.find("no msg_id"), std::string::npos) << rejected[3].reason;

  // The rank goes on serving valid ids.
  peer.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "valid"), wire::MsgId(77, 1)));
  ASSERT_TRUE(node.wait_for_command(5s));
  EXPECT_EQ(node.poll_commands([](const IncomingCommand&) { return wire::command_result(wire::Status::OK, 0); }), 1u);
  EXPECT_EQ(answer_from(peer).status, wire::Status::OK);
}

TEST_F(Ids, AMsgIdReusedForADifferentCommandIsRejectedAndTheFirstResultStays) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));
  RawPeer peer(ctx_, node.command_endpoint());
  const wire::MsgId id(5, 1);
  const auto first = encoded(wire::shutdown(wire::to_rank(0), "first"), id);
  peer.send(frame::kCommand, first);
  ASSERT_TRUE(node.wait_for_command(5s));

  // Another body kind under the same id, while the first is still queued.
  peer.send(frame::kCommand, encoded(wire::emergency_stop(wire::to_rank(0), wire::StopScope::JOB, 0, 0, "other"), id));
  auto a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_NE(a.error.find("msg_id reused for a different command"), std::string::npos) << a.error;

  std::vector<std::string> applied;
  node.poll_commands([&](const IncomingCommand& in) {
    applied.push_back(wire::EnumNameCommandBody(in.command.body_type()));
    return wire::command_result(wire::Status::OK, 0, "the first command's result");
  });
  EXPECT_EQ(applied, std::vector<std::string>{"Shutdown"});
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::OK);

  // The same kind to another target, once the first is answered.
  peer.send(frame::kCommand, encoded(wire::shutdown(wire::to_all(), "first"), id));
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::REJECTED);
  EXPECT_NE(a.error.find("msg_id reused"), std::string::npos) << a.error;

  // A true retry still gets the first command's cached result.
  peer.send(frame::kCommand, first);
  a = answer_from(peer);
  EXPECT_EQ(a.status, wire::Status::OK);
  EXPECT_EQ(a.error, "the first command's result");

  const auto c = node.counters();
  EXPECT_EQ(c.commands_id_reused, 2u);
  EXPECT_EQ(c.commands_deduplicated, 1u);
  EXPECT_EQ(c.commands_applied, 1u);
  EXPECT_EQ(node.rejects().recent().size(), 2u);
}

// Through the broker: an invalid id is refused at once, and a different command under a pending
// msg_id is neither forwarded nor allowed to take over the first one's results.
TEST_F(Ids, TheBrokerRefusesInvalidAndReusedMsgIds) {
  Node node(ctx_, broker_.endpoints().cmd, node_options(0));  // polled by the test
  ASSERT_TRUE(wait_for_ranks(broker_, 1));
  RawPeer client(ctx_, broker_.endpoints().cmd);
  wire::Decoder decoder;
  // The broker's 'D' answer: a CommandDispatch envelope naming the command it answers.
  const auto dispatch_reason = [&](std::string* why, wire::MsgId command) {
    const auto parts = client.receive();
    EXPECT_EQ(parts.size(), 2u);
    if (parts.size() != 2 || type_of(parts[0]) != frame::kDispatch) return -1;
    const auto msg = decoder.decode(bytes(parts[1]));
    if (!msg || msg->body<wire::CommandDispatch>() == nullptr) return -1;
    const auto& d = *msg->body<wire::CommandDispatch>();
    EXPECT_EQ(wire::check(*msg), std::nullopt);
    EXPECT_TRUE(d.command() != nullptr && d.command()->sender() == command.sender() && d.command()->seq() == command.seq());
    *why = d.detail() ? d.detail()->str() : "";
    return static_cast<int>(d.reason());
  };
  std::string why;
  client.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "zero id"), wire::MsgId(0, 0)));
  EXPECT_EQ(dispatch_reason(&why, wire::MsgId(0, 0)), static_cast<int>(wire::DispatchReason::INVALID_ID));
  EXPECT_NE(why.find("seq 0"), std::string::npos) << why;

  client.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "first"), wire::MsgId(9, 1)));
  EXPECT_EQ(dispatch_reason(&why, wire::MsgId(9, 1)), static_cast<int>(wire::DispatchReason::OK));
  client.send(frame::kCommand,
              encoded(wire::emergency_stop(wire::to_rank(0), wire::StopScope::JOB, 0, 0, "other"), wire::MsgId(9, 1)));
  EXPECT_EQ(dispatch_reason(&why, wire::MsgId(9, 1)), static_cast<int>(wire::DispatchReason::ID_REUSED));
  EXPECT_NE(why.find("msg_id reused for a different command"), std::string::npos) << why;
  client.send(frame::kCommand, encoded(wire::shutdown(wire::to_rank(0), "second"), wire::MsgId(9, 2)));
  EXPECT_EQ(dispatch_reason(&why, wire::MsgId(9, 2)), static_cast<int>(wire::DispatchReason::OK));

  ASSERT_TRUE(eventually([&] { return node.queued_commands() == 2; }));
  std::vector<std::string> reasons;
  node.poll_commands([&](const IncomingCommand& in) {
    const auto* s = in.command.body_as_Shutdown();
    reasons.push_back(s != nullptr ? s->reason()->str() : wire::EnumNameCommandBody(in.command.body_type()));
    return wire::command_result(wire::Status::OK, 0);
  });
  EXPECT_EQ(reasons, (std::vector<std::string>{"first", "second"})) << "the reused id was not forwarded";
  EXPECT_EQ(broker_.counters().commands_invalid_id, 1u);
  EXPECT_EQ(broker_.counters().commands_id_reused, 1u);
  EXPECT_EQ(broker_.rejects().recent().size(), 2u);
  // The first command's result still goes to its sender.
  for (int i = 0; i < 2; ++i) {
    const auto parts = client.receive();
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(type_of(parts[0]), frame::kResult);
  }
}

// The broker's own events carry its pid and host; RankJoined the job's world size as the rank
// announces it; RankLost when the rank's last heartbeat was. broker.lost() names rank, host, cause.
TEST_F(Ids, TheBrokersEventsCarryItsPidAndTheJobsWorldSize) {
  SubscriberOptions events_only;
  events_only.topics = {"evt/"};
  Subscriber sub(ctx_, broker_.endpoints().cmd, events_only);
  ASSERT_TRUE(sub.wait_ready(5s));
  auto o = node_options(2);
  o.world_size = 4;
  auto node = std::make_unique<Node>(ctx_, broker_.endpoints().cmd, o);
  const auto event = [&](wire::EventBody kind) -> std::optional<Delivery> {
    while (auto d = sub.next(5s)) {
      if (const auto* e = d->message->body<wire::Event>(); e != nullptr && e->body_type() == kind) return d;
    }
    return std::nullopt;
  };
  const auto joined = event(wire::EventBody::RankJoined);
  ASSERT_TRUE(joined);
  const auto* src = joined->message->envelope().source();
  ASSERT_NE(src, nullptr);
  EXPECT_EQ(src->role(), wire::Role::BROKER);
  EXPECT_EQ(src->pid(), static_cast<std::uint32_t>(::getpid()));
  ASSERT_FALSE(this_host().empty());
  EXPECT_EQ(src->host() ? src->host()->str() : "", this_host());
  const auto* j = joined->message->body<wire::Event>()->body_as_RankJoined();
  EXPECT_EQ(j->rank(), 2);
  EXPECT_EQ(j->world_size(), 4);
  EXPECT_EQ(j->pid(), static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(j->host() ? j->host()->str() : "", this_host()) << "NodeOptions::host empty: this host's name";

  node.reset();  // heartbeats stop: lost after 2.5 intervals of 50 ms
  const auto lost = event(wire::EventBody::RankLost);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->message->envelope().source()->pid(), static_cast<std::uint32_t>(::getpid()));
  const auto* l = lost->message->body<wire::Event>()->body_as_RankLost();
  EXPECT_EQ(l->rank(), 2);
  EXPECT_GT(l->last_heartbeat_ns(), 0u);
  EXPECT_LE(l->last_heartbeat_ns(), wire::wall_clock_ns());
  EXPECT_GE(l->missed_heartbeats(), 2u);
  ASSERT_NE(l->reason(), nullptr);
  EXPECT_NE(l->reason()->str().find("no heartbeat for"), std::string::npos) << l->reason()->str();
  const auto named = broker_.lost();
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named[0].rank, 2);
  EXPECT_EQ(named[0].host, this_host());
  EXPECT_EQ(named[0].reason, l->reason()->str());
  EXPECT_FALSE(named[0].self_reported);
}

TEST_F(Ids, AWorldSizeThatDoesNotHoldTheRankIsRefused) {
  auto o = node_options(4);
  o.world_size = 4;
  EXPECT_THROW(Node(ctx_, broker_.endpoints().cmd, o), Error);
  o.world_size = -1;
  EXPECT_THROW(Node(ctx_, broker_.endpoints().cmd, o), Error);
  // The broker checks what arrives all the same.
  wire::Encoder rank5(wire::SourceInfo{5, wire::Role::RANK, "", "", 0});
  const auto f = rank5.encode(wire::Header{wire::MsgId(1, 1)}, wire::heartbeat(0, 50, 0, 0, 0, {0}, "", 3));
  RawPeer raw(ctx_, broker_.endpoints().cmd);
  raw.send(frame::kHeartbeat, f);
  ASSERT_TRUE(eventually([&] { return broker_.counters().frames_rejected == 1; }));
  EXPECT_NE(broker_.rejects().recent().at(0).reason.find("world size 3"), std::string::npos)
      << broker_.rejects().recent().at(0).reason;
  EXPECT_TRUE(broker_.live_ranks().empty());
}

TEST(NodeTelemetry, EveryBatchOfALayerCarriesItsLatestStepTimeAndThroughput) {
  zmq::context_t ctx;
  Broker broker(ctx, broker_options("inproc"));
  SubscriberOptions telemetry_only;
  telemetry_only.topics = {"tel/"};
  Subscriber sub(ctx, broker.endpoints().cmd, telemetry_only);
  ASSERT_TRUE(sub.wait_ready(5s));
  Node node(ctx, broker.endpoints().cmd, node_options(0, {0, 1}));
  bench::TelemetryGenerator gen(4);
  // Sends one batch per layer and returns layer 0's LayerMetrics (and checks layer 1 has none).
  const auto next_stats = [&]() -> std::vector<wire::LayerMetrics> {
    node.publish(0, gen.batch(4));
    node.publish(1, gen.batch(4));
    node.flush();
    std::vector<wire::LayerMetrics> out;
    for (int batches = 0; batches < 2;) {
      auto d = sub.next(5s);
      if (!d) {
        ADD_FAILURE() << "a batch did not arrive";
        return out;
      }
      const auto* b = d->message->body<wire::TelemetryBatch>();
      if (b == nullptr) continue;
      ++batches;
      if (b->layer() == 1) {
        EXPECT_TRUE(b->layers() == nullptr || b->layers()->size() == 0) << "no stats were set for layer 1";
      } else if (b->layers() != nullptr) {
        for (const auto* lm : *b->layers()) out.push_back(*lm);
      }
    }
    return out;
  };
  node.set_step(7);
  node.set_layer_stats(0, 0.25, 1024.0);
  auto m = next_stats();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].step(), 7u);
  EXPECT_EQ(m[0].step_time_ns(), 250'000'000u);
  EXPECT_FLOAT_EQ(m[0].samples_per_s(), 1024.0f);
  EXPECT_TRUE(std::isnan(m[0].loss())) << "the node is not told the loss";

  m = next_stats();  // nothing new set: the latest values go into this batch too
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].step_time_ns(), 250'000'000u);

  node.set_step(8);
  node.set_layer_stats(0, 0.5, 2048.0);
  m = next_stats();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].step(), 8u);
  EXPECT_EQ(m[0].step_time_ns(), 500'000'000u);
  EXPECT_FLOAT_EQ(m[0].samples_per_s(), 2048.0f);

  node.set_layer_stats(0, -1.0, std::numeric_limits<double>::infinity());
  m = next_stats();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].step_time_ns(), 0u) << "unknown";
  EXPECT_TRUE(std::isnan(m[0].samples_per_s())) << "unknown";
}

}  // namespace
}  // namespace esper::fabric
