// Fuzz target: a real fabric::Client (runtime/fabric/client.hpp) fed what a broker sends it:
// dispatch answers ('D', CommandDispatch), results ('R'), failures ('F', CommandFailed events),
// route tables ('T') and keepalive answers ('K', the broker's epoch: a new one is a restart).
//
// Each input gets a ROUTER standing in for the broker and a fresh Client (single-threaded, no
// thread of its own), which connects and asks for the route table ([T]), and first sends command 0
// of kCommands (the broker's ROUTER reads it when it goes that way). The
// input is a sequence of frames (fuzz_support.hpp); a frame's control byte:
//   bits 0-1  the type it is delivered as: D, R, F, T
//   bit 2     aimed at a command this client sent: the frame's correlation id (R), command (D) or
//             command_id (F) is overwritten in place with the msg_id of sent command k (the
//             client's ids are random: seeds could not name them)
//   bits 3-4  k (modulo the commands sent)
//   bit 5     before delivering it, the client sends its next command (through the broker, or
//             straight to the ranks once a route table names reachable ones)
//   bit 6     delivered malformed: a third frame after [type][bytes]
//   bit 7     delivered as 'K' (the bytes as the epoch frame) instead of the type of bits 0-1
// After each frame the client is polled until it has counted it (frames_received), no sleep.
//
//  - every outcome is for a command sent, completes it once, with at most one outcome per rank,
//    each a result that passed the range checks or a known failure reason;
//  - a frame that does not decode as its type's kind, or has a value out of range (wire::check),
//    or is malformed, is counted in frames_rejected or values_rejected (exactly once); a valid
//    dispatch, failure or route table is counted in neither;
//  - a route table that is rejected leaves the routes as they were; an accepted one becomes the
//    routes (rank, layers, endpoint; a rank listed twice: the last entry), has_routes() is true,
//    and a rank is reached directly only at a non-empty endpoint of the client's own transport.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fabric/client.hpp"
#include "fuzz_support.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/validate.hpp"

namespace esper::fuzz {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr auto kPatience = 10s;
constexpr std::size_t kCommands = 4;

// One per input, its context included: a context's sockets are closed by its reaper thread after
// they are destroyed, so a client that connected to hundreds of ranks would leave the next input
// too few of the context's 1023; the context's end waits for them all. Over ipc, not inproc: the
// end of a context with connections to inproc endpoints nobody bound (route tables name any)
// binds each with a socket of its own, and asserts when it cannot make one.
struct Harness {
  zmq::context_t ctx;
  zmq::socket_t router{ctx, zmq::socket_type::router};
  std::string endpoint = "ipc://" + (std::filesystem::temp_directory_path() /
                                     ("esper-fuzz-client-" + std::to_string(::getpid()))).string();
  wire::Decoder decoder;
  Harness() {
    router.set(zmq::sockopt::linger, 0);
    router.bind(endpoint);
  }
};

wire::CommandT command(std::size_t i) {
  switch (i) {
    case 0: return wire::transition_seeds(wire::to_rank(0), 0, wire::seed_ids({1, 2}), wire::SeedState::GERMINATED, "wake");
    case 1: return wire::shutdown(wire::to_all(), "done");
    case 2: return wire::request_snapshot(wire::to_layer(1), {1}, "snap");
    default: return wire::emergency_stop(wire::to_rank(1), wire::StopScope::SEED, 0, 3, "stop");
  }
}

// Reads what the client sent the broker; returns the routing id of its last message, if any.
void drain(Harness& h, std::string& route, bool wait_for_one) {
  for (bool first = true;; first = false) {
    if (first && wait_for_one) {
      zmq::pollitem_t item{h.router.handle(), 0, ZMQ_POLLIN, 0};
      FUZZ_CHECK(zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kPatience)) == 1,
                 "the client's message never reached the broker");
    }
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(h.router, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    if (wait_for_one && first) route = parts[0].to_string();
  }
}

// Overwrites the MsgId at `field` with `id` when `field` lies inside `buf` (not in a copy the
// decoder made).
bool patch(std::vector<std::uint8_t>& buf, const wire::MsgId* field, const wire::MsgId& id) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(field);
  if (field == nullptr || p < buf.data() || p + sizeof(wire::MsgId) > buf.data() + buf.size()) return false;
  std::memcpy(buf.data() + (p - buf.data()), &id, sizeof id);
  return true;
}

bool same(const std::vector<fabric::Route>& a, const std::vector<fabric::Route>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].rank != b[i].rank || a[i].layers != b[i].layers || a[i].endpoint != b[i].endpoint || a[i].direct != b[i].direct) {
      return false;
    }
  }
  return true;
}

struct Verdict {
  bool judged = false;   // false: whether it is counted depends on the client's state
  bool counted = false;  // rejected: counted in frames_rejected or values_rejected
};

// Whether the client must count the frame as rejected, decided from the frame alone.
Verdict judge(Harness& h, char type, std::span<const std::uint8_t> bytes, bool malformed) {
  // A keepalive answer [K][epoch][...]: any frames after the epoch are ignored; an epoch that is
  // not 8 bytes, or is 0, is rejected.
  if (type == 'K') return {true, bytes.size() != 8 || std::all_of(bytes.begin(), bytes.end(), [](auto b) { return b == 0; })};
  if (malformed) return {true, true};
  auto m = h.decoder.decode(bytes);
  if (!m) return {true, true};
  switch (type) {
    case 'D': {
      if (m->kind() != wire::Body::CommandDispatch) return {true, true};
      if (wire::check(*m)) return {true, true};
      return {true, m->body<wire::CommandDispatch>()->command() == nullptr};
    }
    case 'T': return {true, m->kind() != wire::Body::RouteTable || wire::check(*m).has_value()};
    case 'F': {
      const auto* e = m->body<wire::Event>();
      const auto* f = e != nullptr ? e->body_as_CommandFailed() : nullptr;
      if (f == nullptr || f->command_id() == nullptr) return {true, true};
      return {true, wire::check(*m).has_value()};
    }
    default: {  // 'R'
      if (m->kind() != wire::Body::CommandResult) return {true, true};
      if (wire::check_envelope(m->envelope())) return {true, true};
      if (m->envelope().correlation_id() == nullptr) return {true, true};
      if (!wire::check(*m->body<wire::CommandResult>())) return {true, false};
      return {};  // a bad body counts only for a pending command's first answer from that rank
    }
  }
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  using namespace esper::fuzz;
  HoldSignals held;  // no EINTR in the waits (Client::poll throws it: controller::Controller::pump retries)
  Harness h;
  std::string route;
  fabric::ClientOptions options;
  options.job_id = "fuzz";
  fabric::Client client(h.ctx, h.endpoint, options);
  drain(h, route, true);  // its [T]: the broker learns where to answer
  FUZZ_CHECK(!route.empty(), "the client's routing id");

  std::vector<wire::MsgId> sent;
  std::set<std::pair<std::uint64_t, std::uint64_t>> sent_keys, completed;
  Sink sink;
  const auto send_next = [&] {
    if (sent.size() >= kCommands) return;
    const auto via_broker = client.sent_via_broker();
    auto id = client.send(command(sent.size()));
    if (!id) return;  // would block (a direct peer's pipe is full): an expected outcome, not a failure
    sent.push_back(*id);
    sent_keys.insert({id->sender(), id->seq()});
    if (client.sent_via_broker() > via_broker) drain(h, route, true);
  };
  const auto take = [&](std::vector<fabric::CommandOutcome> outcomes) {
    for (const auto& o : outcomes) {
      const std::pair k{o.id.sender(), o.id.seq()};
      FUZZ_CHECK(sent_keys.contains(k), "an outcome for a command never sent");
      FUZZ_CHECK(completed.insert(k).second, "a command completed twice");
      FUZZ_CHECK(!o.targets.empty(), "an outcome without a target");
      std::set<std::int32_t> ranks;
      for (const auto& t : o.targets) {
        FUZZ_CHECK(ranks.insert(t.rank).second, "two outcomes for one rank");
        if (t.has_result) {
          FUZZ_CHECK(wire::is_known(t.result.status), "a result with an unknown status");
          for (const auto& so : t.result.outcomes) {
            FUZZ_CHECK(so == nullptr || (wire::is_known(so->from) && wire::is_known(so->to)), "a seed outcome's state");
          }
          sink(t.result.error);
        } else {
          FUZZ_CHECK(wire::is_known(t.failure), "an unknown failure reason");
          sink(t.detail);
        }
      }
    }
  };
  send_next();

  Frames frames({data, size});
  std::uint64_t delivered = 0;
  for (Frame f; frames.next(f);) {
    static constexpr char kTypes[] = {'D', 'R', 'F', 'T'};
    const char type = (f.control & 0x80) != 0 ? 'K' : kTypes[f.control & 3];
    const bool malformed = (f.control & 0x40) != 0;
    if (f.control & 0x20) send_next();
    std::vector<std::uint8_t> bytes(f.bytes.begin(), f.bytes.end());
    if ((f.control & 4) && !sent.empty()) {
      const auto& id = sent[((f.control >> 3) & 3) % sent.size()];
      if (auto m = h.decoder.decode(bytes)) {
        if (type == 'R') {
          (void)patch(bytes, m->envelope().correlation_id(), id);
        } else if (const auto* d = m->body<wire::CommandDispatch>(); type == 'D' && d != nullptr) {
          (void)patch(bytes, d->command(), id);
        } else if (const auto* e = m->body<wire::Event>(); type == 'F' && e != nullptr && e->body_as_CommandFailed()) {
          (void)patch(bytes, e->body_as_CommandFailed()->command_id(), id);
        }
      }
    }
    const Verdict verdict = judge(h, type, bytes, malformed);
    const auto before = client.counters();
    const auto routes_before = client.routes();
    const bool had_routes = client.has_routes();

    h.router.send(zmq::buffer(route), zmq::send_flags::sndmore);
    h.router.send(fabric::type_frame(type), zmq::send_flags::sndmore);
    h.router.send(zmq::buffer(bytes.data(), bytes.size()), malformed ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (malformed) h.router.send(zmq::message_t(), zmq::send_flags::none);
    ++delivered;
    const auto until = Clock::now() + kPatience;
    while (client.counters().frames_received < delivered) {
      FUZZ_CHECK(Clock::now() < until, "the client did not take the frame");
      take(client.poll(0ms));  // one look at the sockets: returns at once
    }
    take(client.poll(0ms));  // what completes on the timers' turn
    drain(h, route, false);  // re-sends, route requests

    const auto after = client.counters();
    FUZZ_CHECK(after.frames_received == delivered, "frames_received");
    const auto rejected = (after.frames_rejected - before.frames_rejected) + (after.values_rejected - before.values_rejected);
    FUZZ_CHECK(rejected <= 1, "one frame counted as rejected twice");
    if (verdict.judged) {
      if (verdict.counted != (rejected == 1)) {
        std::fprintf(stderr, "type %c: expected %s, counted %llu\n", type, verdict.counted ? "a reject" : "no reject",
                     static_cast<unsigned long long>(rejected));
      }
      FUZZ_CHECK(verdict.counted == (rejected == 1), "a rejected frame not counted, or a valid one counted");
    }
    if (type == 'T') {
      const auto routes = client.routes();
      if (verdict.counted) {
        FUZZ_CHECK(same(routes, routes_before) && client.has_routes() == had_routes, "a rejected route table changed the routes");
      } else {
        FUZZ_CHECK(client.has_routes(), "an accepted route table left the client without routes");
        auto m = h.decoder.decode(bytes);
        std::map<std::int32_t, const wire::RankRoute*> last;
        if (const auto* ranks = m->body<wire::RouteTable>()->ranks()) {
          for (const auto* r : *ranks) last[r->rank()] = r;
        }
        // After a restart (a keepalive answer with a new epoch), ranks the table lacks keep the
        // routes they had for ClientOptions::restart_grace: they have not re-registered yet.
        const bool grace = client.counters().broker_restarts > 0;
        FUZZ_CHECK(grace ? routes.size() >= last.size() : routes.size() == last.size(), "the routes are not the table's ranks");
        for (const auto& r : routes) {
          const auto it = last.find(r.rank);
          if (grace && it == last.end()) {
            FUZZ_CHECK(std::any_of(routes_before.begin(), routes_before.end(), [&](const fabric::Route& b) { return b.rank == r.rank; }),
                       "a route kept through a restart that the client did not have");
            continue;
          }
          FUZZ_CHECK(it != last.end(), "a route for a rank not in the table");
          const auto* e = it->second;
          const std::vector<std::uint32_t> layers =
              e->layers() ? std::vector<std::uint32_t>(e->layers()->begin(), e->layers()->end()) : std::vector<std::uint32_t>{};
          FUZZ_CHECK(r.layers == layers, "a route's layers are not the table's");
          FUZZ_CHECK(r.endpoint == (e->command_endpoint() ? e->command_endpoint()->str() : std::string()),
                     "a route's endpoint is not the table's");
          FUZZ_CHECK(!r.direct || (!r.endpoint.empty() && fabric::scheme_of(r.endpoint) == "ipc"),
                     "a rank reached directly at an endpoint of another transport");
        }
      }
    }
  }
  FUZZ_CHECK(client.pending() + completed.size() == sent.size(), "a command neither pending nor completed");
  sink.publish();
  return 0;
}
