// Fuzz target: a real fabric::Node (runtime/fabric/node.hpp) fed command frames on its direct
// command socket, the way a client sends them, and answering with poll_commands().
//
// One setup for the whole run (a fresh node per input would cost a broker handshake each): a
// Broker on inproc (the node asks it for its endpoints and sends it heartbeats) and a Node whose
// direct command ROUTER two DEALERs here ("clients" a and b) send to. State carries across inputs,
// as it does in a long-running rank: the invariants below hold for any history.
//
// The input is a sequence of frames (fuzz_support.hpp); each frame is sent as ['C'][frame] by the
// client of control bit 0, once or, with bit 1, twice back to back (a re-send before the answer).
// Then a sentinel (a ['Z'] message the node rejects as unexpected) on the same connection: once the
// node's reject log ends with it, the node has finished with the frame (one socket, one order) —
// no sleep. Then poll_commands() runs a handler that reads the command's body and builds a result
// with the wire builders.
//
//  - accounting: every copy of the frame lands in exactly one counter: frames_rejected (not a
//    Command envelope), commands_invalid_id, values_rejected, commands_id_reused,
//    commands_deduplicated or the queue;
//  - answers: rejected copies and duplicates of an answered command are answered at once, a
//    queued command once by poll_commands, nothing else; each answer comes back to the client that
//    sent the copy, is a CommandResult that passes the client's range checks (wire::check), with
//    the command's msg_id as correlation id; a duplicate's answer is the cached one, byte for byte;
//  - nothing applied twice: the handler never sees a msg_id the node still remembers (the last
//    kDedupWindow commands it queued); a reused msg_id is never applied.
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fabric/broker.hpp"
#include "fabric/node.hpp"
#include "fuzz_support.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/validate.hpp"

namespace esper::fuzz {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using fabric::MsgIdKey;
constexpr std::size_t kDedupWindow = 64;
constexpr auto kPatience = 10s;  // a node that has not answered by then is stuck: a crash
constexpr std::int32_t kRank = 2;

struct Harness {
  zmq::context_t ctx;
  std::unique_ptr<fabric::Broker> broker;
  std::unique_ptr<fabric::Node> node;
  std::unique_ptr<zmq::socket_t> clients[2];
  wire::Decoder decoder;  // the clients'
  // What the node remembers, mirrored: the last kDedupWindow msg_ids it queued (all answered by
  // the time the next frame arrives), with their cached answers.
  std::deque<MsgIdKey> remembered;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<std::uint8_t>> answers;

  Harness() {
    // The broker's and the node's threads start with asynchronous signals held, so that
    // libFuzzer's timer signals never reach them: Node::run() ends its I/O thread on any
    // zmq::error_t but ETERM, an EINTR included (tests/fuzz/README.md, "Findings").
    HoldSignals held;
    start();
  }

  void start() {
    const std::string base = "inproc://esper-fuzz-node-" + std::to_string(::getpid());
    fabric::BrokerOptions bo;
    bo.bind = base;
    broker = std::make_unique<fabric::Broker>(ctx, bo);
    fabric::NodeOptions no;
    no.rank = kRank;
    no.world_size = 4;
    no.layers = {0, 1};
    no.job_id = "fuzz";
    no.host = "fuzzhost";
    no.dedup_window = kDedupWindow;
    no.command_endpoint = base + ".direct";
    node = std::make_unique<fabric::Node>(ctx, broker->endpoints().cmd, no);
    for (int i = 0; i < 2; ++i) {
      clients[i] = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
      clients[i]->set(zmq::sockopt::linger, 0);
      clients[i]->set(zmq::sockopt::routing_id, std::string(i == 0 ? "client-a" : "client-b"));
      clients[i]->connect(node->command_endpoint());
    }
  }
};

Harness& harness() {
  static Harness h;
  return h;
}

bool remembered(const Harness& h, const MsgIdKey& k) {
  return std::find(h.remembered.begin(), h.remembered.end(), k) != h.remembered.end();
}

// The handler: reads what the command says and answers as a rank would, with valid values only.
wire::CommandResultT handle(const fabric::IncomingCommand& in, Sink& sink) {
  const auto& c = in.command;
  sink(c.timeout_ms());
  sink(c.apply_at_step());
  std::vector<wire::SeedOutcomeT> outcomes;
  switch (c.body_type()) {
    case wire::CommandBody::TransitionSeeds: {
      const auto* t = c.body_as_TransitionSeeds();
      sink(t->layer());
      sink(t->reason());
      const auto to = wire::is_known(t->target()) ? t->target() : wire::SeedState::DORMANT;
      for (std::uint32_t s = 0; s < 8; ++s) {
        if (wire::contains(t->seeds(), s)) outcomes.push_back(wire::seed_outcome(s, wire::Status::OK, wire::SeedState::DORMANT, to));
      }
      break;
    }
    case wire::CommandBody::SetBlueprint: {
      const auto* b = c.body_as_SetBlueprint();
      sink(b->seed());
      sink(b->learning_rate());
      if (b->params() != nullptr) {
        for (const auto* p : *b->params()) {
          sink(p->name());
          sink(p->value());
        }
      }
      break;
    }
    case wire::CommandBody::BatchCommand: {
      const auto* b = c.body_as_BatchCommand();
      sink(b->atomic());
      if (b->commands() != nullptr) sink(std::uint64_t{b->commands()->size()});
      break;
    }
    case wire::CommandBody::EmergencyStop: sink(c.body_as_EmergencyStop()->reason()); break;
    case wire::CommandBody::RequestSnapshot: sink(c.body_as_RequestSnapshot()->layers()); break;
    case wire::CommandBody::Shutdown: sink(c.body_as_Shutdown()->grace_ms()); break;
    default: return wire::command_result(wire::Status::REJECTED, kRank, "unknown command kind");
  }
  return wire::command_result(wire::Status::OK, kRank, "", std::move(outcomes));
}

struct Answer {
  wire::MsgId correlation;
  std::vector<std::uint8_t> bytes;
};

// Waits (bounded) for one answer on `client` and checks it as the client would.
Answer receive_answer(Harness& h, zmq::socket_t& client) {
  zmq::pollitem_t item{client.handle(), 0, ZMQ_POLLIN, 0};
  FUZZ_CHECK(zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kPatience)) == 1,
             "an answer the node owes never came");
  std::vector<zmq::message_t> parts;
  FUZZ_CHECK(zmq::recv_multipart(client, std::back_inserter(parts)).has_value(), "cannot read an answer");
  FUZZ_CHECK(parts.size() == 2 && fabric::type_of(parts[0]) == fabric::frame::kResult, "an answer is not ['R'][result]");
  auto msg = h.decoder.decode(fabric::bytes(parts[1]));
  FUZZ_CHECK(msg.has_value() && msg->kind() == wire::Body::CommandResult, "an answer is not a CommandResult");
  const auto problem = wire::check(*msg);
  if (problem) std::fprintf(stderr, "the client rejects the node's answer: %s\n", problem->c_str());
  FUZZ_CHECK(!problem, "the node answered with a value its client rejects");
  FUZZ_CHECK(msg->body<wire::CommandResult>()->rank() == kRank, "an answer from another rank");
  const auto* c = msg->envelope().correlation_id();
  const auto b = fabric::bytes(parts[1]);
  return Answer{c != nullptr ? *c : wire::MsgId(), std::vector<std::uint8_t>(b.begin(), b.end())};
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  using namespace esper::fuzz;
  HoldSignals held;  // no EINTR in this thread's waits
  auto& h = harness();
  auto& node = *h.node;
  Sink sink;
  Frames frames({data, size});
  for (Frame f; frames.next(f);) {
    auto& client = *h.clients[f.control & 1];
    const int copies = (f.control & 2) ? 2 : 1;
    // Nothing may be waiting from before: every answer owed was read.
    {
      zmq::message_t stray;
      FUZZ_CHECK(!client.recv(stray, zmq::recv_flags::dontwait), "an answer nobody was owed");
    }
    // What the copies are, read as the node reads them (the msg_id only, for the checks).
    wire::MsgId id;
    bool has_id = false;
    if (auto m = h.decoder.decode(f.bytes); m && m->kind() == wire::Body::Command && m->envelope().msg_id()) {
      id = *m->envelope().msg_id();
      has_id = true;
    }

    const auto before = node.counters();
    const auto rejects_before = node.rejects().total();
    for (int i = 0; i < copies; ++i) {
      client.send(fabric::type_frame(fabric::frame::kCommand), zmq::send_flags::sndmore);
      client.send(zmq::buffer(f.bytes.data(), f.bytes.size()), zmq::send_flags::none);
    }
    client.send(fabric::type_frame('Z'), zmq::send_flags::none);
    const auto until = Clock::now() + kPatience;
    for (;;) {
      if (node.rejects().total() > rejects_before) {
        const auto recent = node.rejects().recent();
        if (!recent.empty() && recent.back().reason.find("type 'Z'") != std::string::npos) break;
      }
      FUZZ_CHECK(Clock::now() < until, "the node did not take the frame");
      std::this_thread::yield();
    }
    const auto after = node.counters();
    const auto queued = node.queued_commands();

    using fabric::CounterValues;
    const auto d = [&](std::uint64_t CounterValues::*field) { return after.*field - before.*field; };
    const std::uint64_t not_command = d(&CounterValues::frames_rejected) - 1;  // less the sentinel
    const std::uint64_t invalid = d(&CounterValues::commands_invalid_id), values = d(&CounterValues::values_rejected),
                        reused = d(&CounterValues::commands_id_reused), dups = d(&CounterValues::commands_deduplicated);
    FUZZ_CHECK(d(&CounterValues::frames_received) == static_cast<std::uint64_t>(copies) + 1, "frames_received");
    FUZZ_CHECK(queued <= 1, "one msg_id queued more than once");
    FUZZ_CHECK(not_command + invalid + values + reused + dups + queued == static_cast<std::uint64_t>(copies),
               "a copy of the frame is not accounted for exactly once");
    FUZZ_CHECK(not_command == 0 || not_command == static_cast<std::uint64_t>(copies), "copies of one frame taken differently");

    // Answers now: every rejected copy; every duplicate, unless its first copy is still queued.
    const bool cached = queued == 0 && dups > 0;
    const std::uint64_t owed_now = invalid + values + reused + (cached ? dups : 0);
    const wire::MsgId expect_id = has_id ? id : wire::MsgId();
    for (std::uint64_t i = 0; i < owed_now; ++i) {
      const auto got = receive_answer(h, client);
      FUZZ_CHECK(got.correlation.sender() == expect_id.sender() && got.correlation.seq() == expect_id.seq(),
                 "an answer to another command");
      if (cached) {
        const auto it = h.answers.find({id.sender(), id.seq()});
        FUZZ_CHECK(it != h.answers.end(), "a duplicate of a command the node should have forgotten");
        FUZZ_CHECK(got.bytes == it->second, "a duplicate was not answered with the cached result");
      }
    }

    // The queued command, applied once.
    std::size_t applied = 0;
    const auto handled = node.poll_commands([&](const fabric::IncomingCommand& in) {
      FUZZ_CHECK(!remembered(h, fabric::key_of(in.id())), "a command applied twice");
      ++applied;
      return handle(in, sink);
    });
    FUZZ_CHECK(handled == queued, "poll_commands did not handle what was queued");
    FUZZ_CHECK(applied <= handled, "the handler ran more often than commands were handled");
    if (handled == 1) {
      FUZZ_CHECK(has_id, "a command applied that does not decode");
      const auto got = receive_answer(h, client);
      FUZZ_CHECK(got.correlation.sender() == id.sender() && got.correlation.seq() == id.seq(),
                 "an answer to another command");
      h.remembered.push_back(fabric::key_of(id));
      h.answers[{id.sender(), id.seq()}] = got.bytes;
      while (h.remembered.size() > kDedupWindow) {
        h.answers.erase({h.remembered.front().sender, h.remembered.front().seq});
        h.remembered.pop_front();
      }
    }
  }
  sink.publish();
  return 0;
}
