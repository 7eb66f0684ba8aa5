#include "fabric/broker.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include "core/error.hpp"
#include "fabric/job_state.hpp"
#include "wire/builders.hpp"
#include "wire/ids.hpp"
#include "wire/validate.hpp"

namespace esper::fabric {
namespace {

using Clock = std::chrono::steady_clock;
using wire::MsgId;


struct Rank {
  std::string routing_id;
  std::string host;
  std::vector<std::uint32_t> layers;
  std::string endpoint;  // direct command endpoint, connectable; empty: through the broker only
  std::chrono::milliseconds interval{1000};
  Clock::time_point last_seen;
  bool alive = false;
};

struct PendingCommand {
  std::string client;
  std::vector<std::int32_t> owed;  // targets that have not answered
  Clock::time_point expires;
  // What the command is, so that another command reusing its msg_id is not taken for a retry.
  wire::CommandBody kind = wire::CommandBody::NONE;
  wire::CommandTarget target;
  std::uint32_t attempts = 1;      // copies received from the client
};

wire::CommandTarget target_of(const wire::Command& c) {
  return c.target() ? *c.target() : wire::CommandTarget(wire::TargetKind::ALL, -1, 0);
}

}  // namespace

struct Broker::Impl {
  Impl(Broker& b, zmq::context_t& ctx)
      : self(b),
        xsub(ctx, zmq::socket_type::xsub),
        xpub(ctx, zmq::socket_type::xpub),
        evt(ctx, zmq::socket_type::xpub),
        router(ctx, zmq::socket_type::router),
        decoder(b.options_.limits),
        encoder(wire::SourceInfo{-1, wire::Role::BROKER, "", this_host(), static_cast<std::uint32_t>(::getpid())}),
        ids(wire::Role::BROKER, -1) {}

  Broker& self;
  zmq::socket_t xsub, xpub, evt, router;
  // The last event_history events published, oldest first, with their sequence numbers: what a
  // subscriber that missed some has replayed ('V').
  std::deque<std::pair<std::uint64_t, std::vector<std::uint8_t>>> history;
  wire::Decoder decoder;
  wire::Encoder encoder;
  wire::MsgIdGenerator ids;
  std::map<std::int32_t, Rank> ranks;
  std::unordered_map<std::string, std::int32_t> rank_of;  // routing id -> rank
  std::unordered_map<MsgIdKey, PendingCommand, MsgIdHash> pending;
  std::set<std::string> route_subscribers;  // clients that asked for the route table ('T')
  std::set<std::string> failed_routes;      // connections whose rank reported its own failure
  std::uint64_t routes_version = 0;
  JobState state;
  std::uint64_t event_seq = 0;
  Clock::time_point next_tick{};
  std::uint32_t heartbeats_seen = 0;  // for BrokerOptions::fail_at_heartbeat
  const Clock::time_point started = Clock::now();
  // Commands that found no rank while the broker was younger than join_grace (just restarted: the
  // ranks re-register at their next heartbeat), held until a rank joins or the grace ends.
  struct Held {
    std::string client;
    zmq::message_t frame;
    MsgIdKey key;
  };
  std::deque<Held> held;
  bool releasing = false;  // release_held() is taking them again: held anew, they are not counted twice
  std::int32_t world = 0;  // the largest world size the ranks announced (0: none did)
  void release_held();
  // Whether a command that finds no live target now may find one once the ranks have registered:
  // while the broker is young, none registered yet, or (the world size known) some still missing
  // and the target could be one of them.
  bool may_find_later(const wire::CommandTarget* t) const;

  void run(const std::stop_token& stop);
  void forward_publications();
  void drain_subscriptions(zmq::socket_t& s);
  void on_replay(const std::string& from, const std::vector<zmq::message_t>& parts);
  void handle_router();
  void on_heartbeat(const std::string& from, const wire::Message& m, const zmq::message_t& frame);
  void on_command(const std::string& from, const zmq::message_t& frame, const wire::Message& m);
  void on_result(const zmq::message_t& frame, const wire::Message& m);
  void on_event(const std::string& from, const zmq::message_t& frame, const wire::Message& m);
  // Tells the client why a command goes nowhere ('D' with no target) or where it goes.
  void dispatch(const std::string& client, const MsgId& id, wire::DispatchReason reason, const std::vector<std::int32_t>& targets,
                const std::string& why);
  // Declares a live rank lost: counted, recorded, a new route table, and what it owes fails.
  void lose(std::int32_t rank, Rank& r, const std::string& why, bool self_reported);
  void record_lost(std::int32_t rank, const std::string& host, const std::string& why, bool self_reported);
  void publish_event(std::span<const std::uint8_t> envelope, const wire::Event& e, std::int32_t rank);
  void publish_own_event(const wire::EventT& e);
  void fail(const MsgId& command, const PendingCommand& p, std::int32_t rank, wire::FailureReason reason,
            const std::string& detail);
  std::chrono::milliseconds next_wait(Clock::time_point now) const;
  void check_liveness(Clock::time_point now);
  void sweep_expired(Clock::time_point now);  // forgets broker-routed commands past their timeout
  void publish_live_ranks();
  std::vector<std::uint8_t> route_table();  // the live ranks, encoded as a RouteTable envelope
  void send_routes(const std::string& to, std::span<const std::uint8_t> table);
  void routes_changed();
  // When a rank that stays silent is declared lost.
  Clock::time_point lost_at(const Rank& r) const {
    return r.last_seen + std::chrono::duration_cast<Clock::duration>(r.interval * self.options_.lost_after);
  }
  // False when the message could not be queued; *gone set when the peer has disconnected.
  bool send_to(const std::string& peer, char type, std::span<zmq::message_t> rest, bool* gone = nullptr);
  void reject(const std::string& where, const std::string& why, const zmq::message_t& frame) {
    self.rejects_.add(where, why, bytes(frame));
    bump(self.counters_.frames_rejected);
    dead_letter(wire::DeadLetterReason::UNDECODABLE, why, frame, nullptr);
  }
  // A rejected frame kept as a dead letter (BrokerOptions::dead_letters set).
  void dead_letter(wire::DeadLetterReason reason, const std::string& why, const zmq::message_t& frame,
                   const wire::Message* m) {
    if (!self.options_.dead_letters) return;
    wire::DeadLetterT l;
    l.reason = reason;
    l.stage = wire::DeadLetterStage::BROKER;
    l.attempts = 1;
    l.first_ns = l.last_ns = wire::wall_clock_ns();
    l.destination = "broker";
    if (m != nullptr && m->envelope().msg_id() != nullptr) {
      l.sender = m->envelope().msg_id()->sender();
      l.msg_id = std::make_unique<wire::MsgId>(*m->envelope().msg_id());
    }
    l.error = why;
    const auto b = bytes(frame);
    l.original.assign(b.begin(), b.end());
    self.options_.dead_letters->add(l);
  }
  // A well-formed message with a value out of range (wire/validate.hpp): counted, kept, logged,
  // and not acted on.
  ValueRejectLog value_log;
  void reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame) {
    const char* kind = wire::EnumNameBody(m.kind());
    // Kept before counted: whoever sees the count sees the entry.
    self.rejects_.add("broker cmd", std::string("value out of range in ") + kind + ": " + problem, bytes(frame));
    bump(self.counters_.values_rejected);
    const auto* src = m.envelope().source();
    value_log.reject("broker", kind, src ? src->rank() : -1, problem);
    dead_letter(wire::DeadLetterReason::INVALID, std::string("value out of range in ") + kind + ": " + problem, frame, &m);
  }
};

namespace {
// A random non-zero epoch: two runs of a broker never share one (odds 2^-64).
std::uint64_t draw_epoch() {
  std::random_device rd;
  std::uint64_t e = 0;
  while (e == 0) e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ static_cast<std::uint64_t>(::getpid()) << 17;
  return e;
}
}  // namespace

Broker::Broker(zmq::context_t& ctx, BrokerOptions options) : options_(std::move(options)), epoch_(draw_epoch()) {
  impl_ = std::make_unique<Impl>(*this, ctx);
  Endpoints want = bind_addresses(options_.bind);
  if (!options_.pub_bind.empty()) want.pub = options_.pub_bind;
  if (!options_.sub_bind.empty()) want.sub = options_.sub_bind;
  if (!options_.evt_bind.empty()) want.evt = options_.evt_bind;
  auto& i = *impl_;
  i.xsub.set(zmq::sockopt::rcvhwm, options_.pub_hwm);
  i.xpub.set(zmq::sockopt::sndhwm, options_.pub_hwm);
  i.xpub.set(zmq::sockopt::xpub_nodrop, 1);
  i.evt.set(zmq::sockopt::sndhwm, options_.event_hwm);
  i.evt.set(zmq::sockopt::xpub_nodrop, 1);  // a full pipe is reported (EAGAIN) and counted, never silent
  options_.event_history = std::max<std::size_t>(options_.event_history, 1);
  i.router.set(zmq::sockopt::router_mandatory, 1);
  i.router.set(zmq::sockopt::sndhwm, options_.cmd_hwm);
  i.router.set(zmq::sockopt::rcvhwm, options_.cmd_hwm);
  for (auto* s : {&i.xsub, &i.xpub, &i.evt, &i.router}) s->set(zmq::sockopt::linger, 0);
  // The broker takes every publication (subscriptions are filtered at its XPUB), so a publisher
  // learns of a subscriber as soon as it connects and never filters anything away itself.
  const std::uint8_t subscribe_all = 1;
  i.xsub.send(zmq::buffer(&subscribe_all, 1), zmq::send_flags::none);
  bind_or_throw(i.router, want.cmd);
  bind_or_throw(i.xsub, want.pub);
  bind_or_throw(i.xpub, want.sub);
  bind_or_throw(i.evt, want.evt);
  endpoints_ = {i.router.get(zmq::sockopt::last_endpoint), i.xsub.get(zmq::sockopt::last_endpoint),
                i.xpub.get(zmq::sockopt::last_endpoint), i.evt.get(zmq::sockopt::last_endpoint)};
  worker_.start("broker", [this](const std::stop_token& stop) { impl_->run(stop); });
}

Broker::~Broker() { stop(); }

void Broker::stop() noexcept {
  worker_.stop();
  remove_socket_files();
}

void Broker::remove_socket_files() const noexcept {
  for (const auto* e : {&endpoints_.cmd, &endpoints_.pub, &endpoints_.sub, &endpoints_.evt}) remove_ipc_file(*e);
}

std::vector<std::int32_t> Broker::live_ranks() const {
  std::lock_guard lock(ranks_mu_);
  return live_ranks_;
}

std::vector<LostRank> Broker::lost() const {
  std::lock_guard lock(ranks_mu_);
  return lost_;
}

void Broker::Impl::run(const std::stop_token& stop) {
  std::array<zmq::pollitem_t, 4> items{{{xsub.handle(), 0, ZMQ_POLLIN, 0},
                                        {xpub.handle(), 0, ZMQ_POLLIN, 0},
                                        {router.handle(), 0, ZMQ_POLLIN, 0},
                                        {evt.handle(), 0, ZMQ_POLLIN, 0}}};
  Clock::time_point next_sweep{};
  while (!stop.stop_requested()) {
    try {
      zmq::poll(items.data(), items.size(), next_wait(Clock::now()));
      if (items[0].revents & ZMQ_POLLIN) forward_publications();
      if (items[1].revents & ZMQ_POLLIN) drain_subscriptions(xpub);
      if (items[2].revents & ZMQ_POLLIN) handle_router();
      if (items[3].revents & ZMQ_POLLIN) drain_subscriptions(evt);
      const auto now = Clock::now();
      if (now >= next_tick) {  // at most once a millisecond under load
        check_liveness(now);
        next_tick = now + std::chrono::milliseconds(1);
      }
      if (now >= next_sweep) {
        sweep_expired(now);
        next_sweep = now + self.options_.tick;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) throw;
    }
  }
}

// Telemetry and anything else publishers send: [topic][meta][envelope], forwarded as is.
void Broker::Impl::forward_publications() {
  for (int burst = 0; burst < 512; ++burst) {
    std::array<zmq::message_t, 3> parts;
    std::size_t n = 0;
    bool more = true;
    bool first = true;
    while (more) {
      zmq::message_t part;
      if (!xsub.recv(part, first ? zmq::recv_flags::dontwait : zmq::recv_flags::none)) return;
      first = false;
      more = part.more();
      if (n < parts.size()) parts[n] = std::move(part);
      ++n;
    }
    bump(self.counters_.frames_received);
    Meta meta;
    const char* bad_meta = n == 3 ? decode_meta(bytes(parts[1]), meta) : nullptr;
    if (n != 3 || bad_meta != nullptr) {
      reject("broker pub", n != 3 ? "publication has " + std::to_string(n) + " frames; expected [topic][meta][envelope]"
                                  : std::string(bad_meta),
             parts[n > 2 ? 1 : 0]);
      continue;
    }
    // Events are the broker's to publish, stamped with its sequence (on_event): one sent here is
    // not forwarded, so that no publisher can forge one past the broker's checks and order.
    if (std::string_view(static_cast<const char*>(parts[0].data()), parts[0].size()).starts_with(kEventPrefix)) {
      reject("broker pub", "an event published on the telemetry path; events go to the command endpoint ('E')", parts[0]);
      continue;
    }
    if (!xpub.send(parts[0], zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      bump(self.counters_.telemetry_batches_dropped);
      bump(self.counters_.telemetry_records_dropped, meta.records);
      bump(self.counters_.telemetry_records_dropped_broker, meta.records);
      continue;
    }
    xpub.send(parts[1], zmq::send_flags::sndmore);
    xpub.send(parts[2], zmq::send_flags::none);
    bump(self.counters_.frames_sent);
    bump(self.counters_.telemetry_batches);
    bump(self.counters_.telemetry_records, meta.records);
  }
}

// Subscribers' (un)subscriptions: the XPUB filters with them; upstream already gets everything.
void Broker::Impl::drain_subscriptions(zmq::socket_t& s) {
  for (int burst = 0; burst < 512; ++burst) {
    zmq::message_t sub;
    if (!s.recv(sub, zmq::recv_flags::dontwait)) return;
  }
}

bool Broker::Impl::send_to(const std::string& peer, char type, std::span<zmq::message_t> rest, bool* gone) {
  try {
    if (!router.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      bump(self.counters_.send_would_block);
      return false;
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) {  // the peer is gone
      if (gone != nullptr) *gone = true;
      return false;
    }
    throw;
  }
  router.send(type_frame(type), rest.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
  for (std::size_t i = 0; i < rest.size(); ++i) {
    router.send(rest[i], i + 1 < rest.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  bump(self.counters_.frames_sent);
  return true;
}

void Broker::Impl::handle_router() {
  for (int burst = 0; burst < 512; ++burst) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    bump(self.counters_.frames_received);
    if (parts.size() < 2) {
      reject("broker cmd", "message has no type frame", parts.front());
      continue;
    }
    const std::string from = parts[0].to_string();
    const char type = type_of(parts[1]);
    // Any frame from a rank shows it is alive: a heartbeat queued behind a burst of results must
    // not make it look lost.
    if (auto r = rank_of.find(from); r != rank_of.end()) {
      if (auto it = ranks.find(r->second); it != ranks.end() && it->second.routing_id == from) {
        it->second.last_seen = Clock::now();
      }
    }
    if (type == frame::kInfo) {
      // [I] alone is a client from before the event endpoint: it gets the two it can parse.
      const bool with_events = parts.size() == 3 && parts[2].size() == 1 &&
                               *static_cast<const std::uint8_t*>(parts[2].data()) == kInfoWithEvents;
      std::array<zmq::message_t, 3> reply{zmq::message_t(self.endpoints_.pub), zmq::message_t(self.endpoints_.sub),
                                          zmq::message_t(self.endpoints_.evt)};
      send_to(from, frame::kInfo, std::span(reply.data(), with_events ? 3 : 2));
      continue;
    }
    if (type == frame::kReplay) {
      on_replay(from, parts);
      continue;
    }
    if (type == frame::kKeepalive) {
      std::array<zmq::message_t, 2> reply{encode_epoch(self.epoch_), encode_epoch(event_seq)};
      send_to(from, frame::kKeepalive, reply);
      continue;
    }
    if (type == frame::kSnapshot) {
      const auto f = encoder.encode(wire::Header{ids.next()}, state.snapshot());
      std::array<zmq::message_t, 2> reply{encode_meta(Meta{.sequence = state.sequence(), .epoch = self.epoch_}), zmq::message_t(f.data(), f.size())};
      send_to(from, frame::kSnapshot, reply);
      continue;
    }
    if (type == frame::kRoutes) {
      route_subscribers.insert(from);
      send_routes(from, route_table());
      continue;
    }
    if (type == frame::kPing) {
      // Echo on the pub/sub side: a subscriber that sees it knows its subscription is active.
      // Both pub/sub sockets echo it: a subscriber is ready when each of its sockets has seen it.
      const std::string topic = std::string(kPingPrefix) + parts.back().to_string();
      for (auto* s : {&xpub, &evt}) {
        if (!s->send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) continue;
        s->send(encode_meta(Meta{}), zmq::send_flags::sndmore);
        s->send(zmq::message_t(), zmq::send_flags::none);
      }
      continue;
    }
    if (type != frame::kHeartbeat && type != frame::kCommand && type != frame::kResult && type != frame::kEvent) {
      reject("broker cmd", "unknown frame type '" + std::string(1, type) + "'", parts[1]);
      continue;
    }
    if (parts.size() != 3) {
      reject("broker cmd", "message of type '" + std::string(1, type) + "' has " + std::to_string(parts.size() - 1) +
                               " frames after the routing id; expected 2", parts.back());
      continue;
    }
    auto msg = decoder.decode(bytes(parts[2]));
    if (!msg) {
      reject("broker cmd", msg.error().message(), parts[2]);
      continue;
    }
    switch (type) {
      case frame::kHeartbeat:
        if (msg->kind() == wire::Body::Heartbeat) {
          on_heartbeat(from, *msg, parts[2]);
          // The answer tells the rank this broker is there, and which one (a restart is a new epoch).
          std::array<zmq::message_t, 1> ack{encode_epoch(self.epoch_)};
          send_to(from, frame::kHeartbeat, ack);
        } else {
          reject("broker cmd", "'H' frame does not hold a Heartbeat", parts[2]);
        }
        break;
      case frame::kCommand:
        if (msg->kind() == wire::Body::Command) on_command(from, parts[2], *msg);
        else reject("broker cmd", "'C' frame does not hold a Command", parts[2]);
        break;
      case frame::kResult:
        if (msg->kind() == wire::Body::CommandResult) on_result(parts[2], *msg);
        else reject("broker cmd", "'R' frame does not hold a CommandResult", parts[2]);
        break;
      case frame::kEvent:
        if (msg->kind() == wire::Body::Event) {
          on_event(from, parts[2], *msg);
        } else {
          reject("broker cmd", "'E' frame does not hold an Event", parts[2]);
        }
        break;
      default:
        break;
    }
  }
}

namespace {
// A rank that binds its direct command socket on every interface announces tcp://0.0.0.0:PORT;
// the address its heartbeat came from is where clients reach it.
std::string completed_endpoint(std::string endpoint, const zmq::message_t& frame) {
  const std::string any = "tcp://0.0.0.0:";
  if (endpoint.rfind(any, 0) != 0) return endpoint;
  // libzmq reads message properties through a non-const handle; it does not modify the message.
  const char* peer = zmq_msg_gets(const_cast<zmq_msg_t*>(frame.handle()), "Peer-Address");
  if (peer == nullptr || *peer == '\0') return {};  // no address known: the broker path serves this rank
  const std::string host = std::strchr(peer, ':') != nullptr ? "[" + std::string(peer) + "]" : std::string(peer);
  return "tcp://" + host + endpoint.substr(any.size() - 1);
}
}  // namespace

void Broker::Impl::on_heartbeat(const std::string& from, const wire::Message& m, const zmq::message_t& frame) {
  bump(self.counters_.heartbeats);
  if (self.options_.fail_at_heartbeat != 0 && ++heartbeats_seen == self.options_.fail_at_heartbeat) {
    throw Error("injected failure at heartbeat " + std::to_string(heartbeats_seen) + " (test hook --fail-at-heartbeat)");
  }
  const auto* src = m.envelope().source();
  const auto* hb = m.body<wire::Heartbeat>();
  if (src == nullptr || src->rank() < 0) return;
  // A rank that reported its own failure stays lost, though its node may heartbeat until it exits;
  // restarted, it connects anew.
  if (failed_routes.contains(from)) return;
  const std::int32_t announced = hb->world_size();
  if (announced < 0 || (announced > 0 && src->rank() >= announced)) {
    reject("broker cmd", "heartbeat of rank " + std::to_string(src->rank()) + " announces world size " +
                             std::to_string(announced) + ", which does not hold it (0 = unknown)", frame);
    return;
  }
  // Its layers and endpoint go into the route table and the RankJoined event the broker publishes.
  if (auto problem = wire::check(m)) {
    reject_values(m, *problem, frame);
    return;
  }
  world = std::max(world, announced);
  auto& r = ranks[src->rank()];
  std::vector<std::uint32_t> layers;
  if (hb->layers() != nullptr) layers.assign(hb->layers()->begin(), hb->layers()->end());
  std::string endpoint = hb->command_endpoint() ? completed_endpoint(hb->command_endpoint()->str(), frame) : "";
  const bool changed = !r.alive || r.layers != layers || r.endpoint != endpoint;
  r.routing_id = from;
  rank_of[from] = src->rank();
  r.interval = std::chrono::milliseconds(std::max<std::uint32_t>(hb->interval_ms(), 1));
  r.last_seen = Clock::now();
  r.layers = std::move(layers);
  r.endpoint = std::move(endpoint);
  r.host = src->host() ? src->host()->str() : "";
  if (!r.alive) {
    r.alive = true;
    publish_live_ranks();
    publish_own_event(wire::rank_joined(src->rank(), announced, r.host, src->pid(), r.layers));
  }
  if (changed) routes_changed();
}

std::vector<std::uint8_t> Broker::Impl::route_table() {
  wire::RouteTableT table;
  table.version = routes_version;
  for (const auto& [rank, r] : ranks) {
    if (!r.alive) continue;
    auto route = std::make_unique<wire::RankRouteT>();
    route->rank = rank;
    route->layers = r.layers;
    route->command_endpoint = r.endpoint;
    table.ranks.push_back(std::move(route));
  }
  wire::Header h;
  h.msg_id = ids.next();
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = encoder.encode(h, table);
  return {f.begin(), f.end()};
}

void Broker::Impl::send_routes(const std::string& to, std::span<const std::uint8_t> table) {
  std::array<zmq::message_t, 1> body{zmq::message_t(table.data(), table.size())};
  bool gone = false;
  if (!send_to(to, frame::kRoutes, body, &gone) && gone) route_subscribers.erase(to);
}

void Broker::Impl::routes_changed() {
  if (!held.empty()) release_held();
  ++routes_version;
  const auto table = route_table();  // one encoding for every subscriber
  const std::vector<std::string> subscribers(route_subscribers.begin(), route_subscribers.end());
  for (const auto& c : subscribers) send_routes(c, table);
}

void Broker::Impl::dispatch(const std::string& client, const MsgId& id, wire::DispatchReason reason,
                            const std::vector<std::int32_t>& targets, const std::string& why) {
  wire::CommandDispatchT d;
  d.command = std::make_unique<MsgId>(id);
  d.reason = reason;
  d.ranks = targets;
  d.detail = why;
  wire::Header h;
  h.msg_id = ids.next();
  h.correlation_id = id;
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = encoder.encode(h, d);
  std::array<zmq::message_t, 1> body{zmq::message_t(f.data(), f.size())};
  send_to(client, frame::kDispatch, body);
}

void Broker::Impl::on_command(const std::string& from, const zmq::message_t& frame, const wire::Message& m) {
  const auto* cmd = m.body<wire::Command>();
  // Pending commands are keyed by msg_id: one that no generator produces is not forwarded.
  if (!wire::is_valid(m.envelope().msg_id())) {
    const std::string why = "the command's msg_id is missing or has seq 0, which no msg_id generator produces";
    self.rejects_.add("broker cmd", why, bytes(frame));
    bump(self.counters_.commands_invalid_id);
    dead_letter(wire::DeadLetterReason::INVALID, why, frame, &m);
    dispatch(from, m.envelope().msg_id() ? *m.envelope().msg_id() : MsgId(), wire::DispatchReason::INVALID_ID, {}, why);
    return;
  }
  const MsgId id = *m.envelope().msg_id();
  const auto* t = cmd->target();
  const auto kind = t ? t->kind() : wire::TargetKind::ALL;
  // A retry (same msg_id) goes only to the targets that still owe a result; another command under
  // a pending msg_id is refused rather than taken for one.
  auto it = pending.find(key_of(id));
  const bool retry = it != pending.end();
  if (retry) {
    const auto& first = it->second.target;
    const auto target = target_of(*cmd);
    if (it->second.kind != cmd->body_type() || first.kind() != target.kind() || first.rank() != target.rank() ||
        first.layer() != target.layer()) {
      const std::string why = "msg_id reused for a different command (the first with this id was " +
                              std::string(wire::EnumNameCommandBody(it->second.kind)) + " to " +
                              wire::EnumNameTargetKind(first.kind()) + ")";
      self.rejects_.add("broker cmd", why, bytes(frame));
      bump(self.counters_.commands_id_reused);
      dead_letter(wire::DeadLetterReason::INVALID, why, frame, &m);
      dispatch(from, id, wire::DispatchReason::ID_REUSED, {}, why);
      return;
    }
  }
  std::vector<std::int32_t> targets;
  auto reason = wire::DispatchReason::OK;
  std::string why;
  for (const auto& [rank, r] : ranks) {
    if (r.alive && targets_rank(t, rank, r.layers)) targets.push_back(rank);
  }
  if (!retry && may_find_later(t) && (targets.empty() || (kind != wire::TargetKind::RANK && world > 0))) {
    const auto k = key_of(id);
    const auto h = std::find_if(held.begin(), held.end(), [&](const Held& x) { return x.key == k; });
    if (h != held.end()) {
      h->client = from;  // a client's re-send: answer where the latest copy came from
    } else {
      held.push_back(Held{from, zmq::message_t(frame.data(), frame.size()), k});
      if (!releasing) bump(self.counters_.commands_held);
    }
    return;
  }
  if (targets.empty()) {
    if (kind == wire::TargetKind::RANK) {
      reason = wire::DispatchReason::NO_SUCH_RANK;
      why = "rank " + std::to_string(t->rank()) + " is not connected to the broker";
    } else if (kind == wire::TargetKind::LAYER) {
      reason = wire::DispatchReason::NO_RANK_HOLDS_LAYER;
      why = "no connected rank holds layer " + std::to_string(t->layer());
    } else {
      reason = wire::DispatchReason::NO_RANKS;
      why = "no rank is connected";
    }
  }
  if (!retry && !targets.empty()) {
    it = pending.emplace(key_of(id), PendingCommand{from, targets, {}, cmd->body_type(), target_of(*cmd), 1}).first;
  }
  dispatch(from, id, reason, targets, why);
  if (targets.empty()) return;
  it->second.client = from;
  it->second.expires = Clock::now() + std::chrono::milliseconds(cmd->timeout_ms()) + std::chrono::seconds(1);
  if (retry) ++it->second.attempts;
  const auto owed = it->second.owed;
  for (const auto rank : owed) {
    std::array<zmq::message_t, 1> body{zmq::message_t(frame.data(), frame.size())};
    if (send_to(ranks[rank].routing_id, frame::kCommand, body)) {
      bump(self.counters_.commands_sent);
    } else if (!retry) {
      // Unreachable now (disconnected, or its queue is full): the client retries; liveness decides.
      bump(self.counters_.send_would_block);
    }
  }
  if (retry) bump(self.counters_.commands_retried);
}

void Broker::Impl::on_result(const zmq::message_t& frame, const wire::Message& m) {
  bump(self.counters_.results_received);
  if (m.envelope().correlation_id() == nullptr) {  // answers nothing: dereferenced below
    reject("broker cmd", "'R' frame holds a result without a correlation id", frame);
    return;
  }
  const auto it = pending.find(key_of(*m.envelope().correlation_id()));
  const auto* src = m.envelope().source();
  if (it == pending.end() || src == nullptr) return;  // late or duplicate: the client already has it
  auto& owed = it->second.owed;
  const auto pos = std::find(owed.begin(), owed.end(), src->rank());
  if (pos == owed.end()) return;
  owed.erase(pos);
  std::array<zmq::message_t, 1> body{zmq::message_t(frame.data(), frame.size())};
  send_to(it->second.client, frame::kResult, body);
  if (owed.empty()) pending.erase(it);
}

// A rank's event. A RankLost about its sender's own rank is that rank's failure notice: the rank is
// lost now, as if it had missed its heartbeats, with its own cause.
void Broker::Impl::on_event(const std::string& from, const zmq::message_t& frame, const wire::Message& m) {
  const auto& event = *m.body<wire::Event>();
  // Checked before it is stamped, applied to the job state or acted on: an event with a value out
  // of range takes no sequence number and reaches no subscriber.
  if (auto problem = wire::check(m)) {
    reject_values(m, *problem, frame);
    return;
  }
  const auto* src = m.envelope().source();
  const std::int32_t rank = src ? src->rank() : -1;
  const auto* notice = event.body_as_RankLost();
  if (notice == nullptr || rank < 0 || notice->rank() != rank) {
    publish_event(bytes(frame), event, rank);
    return;
  }
  failed_routes.insert(from);
  auto& r = ranks[rank];
  if (src->host() != nullptr) r.host = src->host()->str();
  constexpr std::size_t kMaxCause = 4096;  // what is kept of a cause and copied into failures
  std::string cause = notice->reason() != nullptr ? notice->reason()->str() : "";
  if (cause.size() > kMaxCause) cause = cause.substr(0, kMaxCause) + "...";
  const std::string why = "rank " + std::to_string(rank) + " reported its own failure" + (cause.empty() ? "" : ": " + cause);
  // From another connection than the live rank's (a stale notice of a process since restarted),
  // or for a rank not connected: nothing to end, but the cause is kept.
  if (r.alive && r.routing_id == from) {
    lose(rank, r, why, true);
  } else {
    record_lost(rank, r.host, why, true);
  }
  publish_event(bytes(frame), event, rank);  // after: whoever sees it finds the loss in lost()
}

void Broker::Impl::publish_event(std::span<const std::uint8_t> envelope, const wire::Event& e, std::int32_t rank) {
  const std::uint64_t seq = ++event_seq;
  state.apply(e, rank, seq);
  history.emplace_back(seq, std::vector<std::uint8_t>(envelope.begin(), envelope.end()));
  while (history.size() > self.options_.event_history) history.pop_front();
  const std::string topic = event_topic(e.layer());
  if (!evt.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
    bump(self.counters_.events_dropped);  // subscribers see the gap in the sequence and have it replayed
    return;
  }
  evt.send(encode_meta(Meta{.sequence = seq, .epoch = self.epoch_}), zmq::send_flags::sndmore);
  evt.send(zmq::message_t(envelope.data(), envelope.size()), zmq::send_flags::none);
  bump(self.counters_.events);
}

// [V][from u64 LE] -> [V][status u8][latest u64 LE] and the kept events from `from` on, each as
// [meta][envelope] (at most kReplayMax; the subscriber asks again from after the last).
void Broker::Impl::on_replay(const std::string& from, const std::vector<zmq::message_t>& parts) {
  if (parts.size() != 3 || parts[2].size() != 8) {
    reject("broker cmd", "replay request is not [V][from: 8 bytes]", parts.back());
    return;
  }
  // Sequence numbers start at 1: from 0 asks for everything, as from 1 does.
  const std::uint64_t first = std::max<std::uint64_t>(le::get(static_cast<const std::uint8_t*>(parts[2].data()), 8), 1);
  const std::uint64_t oldest = history.empty() ? event_seq + 1 : history.front().first;
  std::vector<zmq::message_t> reply;
  std::array<std::uint8_t, 9> status{};
  status[0] = first < oldest && first <= event_seq ? kReplayTooOld : kReplayOk;
  le::put(status.data() + 1, event_seq, 8);
  reply.emplace_back(status.data(), status.size());
  if (status[0] == kReplayOk && first <= event_seq) {
    // The history holds consecutive sequence numbers: the index of `first` is its distance from the oldest.
    for (auto i = static_cast<std::size_t>(first - oldest); i < history.size() && reply.size() < 1 + 2 * kReplayMax; ++i) {
      reply.push_back(encode_meta(Meta{.sequence = history[i].first, .epoch = self.epoch_}));
      reply.emplace_back(history[i].second.data(), history[i].second.size());
    }
  }
  bump(self.counters_.event_replays);
  send_to(from, frame::kReplay, reply);
}

void Broker::Impl::publish_own_event(const wire::EventT& e) {
  wire::Header h;
  h.msg_id = ids.next();
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = encoder.encode(h, e);
  const std::vector<std::uint8_t> copy(f.begin(), f.end());
  auto msg = decoder.decode(copy);
  if (msg) publish_event(copy, *msg->body<wire::Event>(), -1);
}

void Broker::Impl::fail(const MsgId& command, const PendingCommand& p, std::int32_t rank, wire::FailureReason reason,
                        const std::string& detail) {
  wire::Header h;
  h.msg_id = ids.next();
  h.correlation_id = command;
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = encoder.encode(h, wire::command_failed(command, rank, reason, detail, p.attempts, false));
  std::array<zmq::message_t, 1> body{zmq::message_t(f.data(), f.size())};
  send_to(p.client, frame::kFailure, body);
  bump(self.counters_.commands_failed);
}

// Idle, the broker sleeps until the next moment a rank could be declared lost, or `tick` at most:
// a few wake-ups a second instead of one every few milliseconds, on a rank 0 that trains.
std::chrono::milliseconds Broker::Impl::next_wait(Clock::time_point now) const {
  auto wait = self.options_.tick;
  for (const auto& [rank, r] : ranks) {
    if (!r.alive) continue;
    wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(lost_at(r) - now) + std::chrono::milliseconds(1));
  }
  return std::max(wait, std::chrono::milliseconds(1));
}

void Broker::Impl::check_liveness(Clock::time_point now) {
  for (auto& [rank, r] : ranks) {
    if (!r.alive) continue;
    if (now <= lost_at(r)) continue;
    const auto silent = now - r.last_seen;
    const auto silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(silent).count();
    const std::string why = "rank " + std::to_string(rank) + " sent no heartbeat for " + std::to_string(silent_ms) +
                            " ms (interval " + std::to_string(r.interval.count()) + " ms)";
    const auto last_ns = wire::wall_clock_ns() - static_cast<std::uint64_t>(
                                                     std::chrono::duration_cast<std::chrono::nanoseconds>(silent).count());
    lose(rank, r, why, false);  // first: whoever sees the event finds the loss in lost()
    publish_own_event(wire::rank_lost(rank, last_ns, static_cast<std::uint32_t>(silent / r.interval), why));
  }
}

void Broker::Impl::lose(std::int32_t rank, Rank& r, const std::string& why, bool self_reported) {
  r.alive = false;
  bump(self.counters_.ranks_lost);
  record_lost(rank, r.host, why, self_reported);
  publish_live_ranks();
  routes_changed();  // clients fail what they sent it directly
  for (auto it = pending.begin(); it != pending.end();) {
    auto& owed = it->second.owed;
    if (const auto pos = std::find(owed.begin(), owed.end(), rank); pos != owed.end()) {
      owed.erase(pos);
      fail(MsgId(it->first.sender, it->first.seq), it->second, rank, wire::FailureReason::RANK_LOST, why);
    }
    it = owed.empty() ? pending.erase(it) : std::next(it);
  }
}

void Broker::Impl::record_lost(std::int32_t rank, const std::string& host, const std::string& why, bool self_reported) {
  std::lock_guard lock(self.ranks_mu_);
  if (self.lost_.size() < Broker::kMaxLost) self.lost_.push_back(LostRank{rank, host, why, self_reported});
}

void Broker::Impl::sweep_expired(Clock::time_point now) {
  for (auto it = pending.begin(); it != pending.end();) {
    it = now > it->second.expires ? pending.erase(it) : std::next(it);
  }
  if (!held.empty() && now >= started + self.options_.join_grace) release_held();
}

// Takes the held commands again: those that now find their ranks are dispatched; the rest are held
// on while the grace lasts, then dispatched to the ranks there are (or answered as finding none).
void Broker::Impl::release_held() {
  auto again = std::move(held);
  held.clear();
  releasing = true;
  for (auto& h : again) {
    auto msg = decoder.decode(bytes(h.frame));
    if (msg && msg->kind() == wire::Body::Command) on_command(h.client, h.frame, *msg);  // decoded once already
  }
  releasing = false;
}

bool Broker::Impl::may_find_later(const wire::CommandTarget* t) const {
  if (Clock::now() >= started + self.options_.join_grace) return false;
  const auto live = static_cast<std::int32_t>(std::count_if(ranks.begin(), ranks.end(), [](const auto& r) { return r.second.alive; }));
  if (live == 0) return true;
  if (world == 0 || live >= world) return false;
  return t == nullptr || t->kind() != wire::TargetKind::RANK || (t->rank() >= 0 && t->rank() < world);
}

void Broker::Impl::publish_live_ranks() {
  std::vector<std::int32_t> live;
  for (const auto& [rank, r] : ranks) {
    if (r.alive) live.push_back(rank);
  }
  std::lock_guard lock(self.ranks_mu_);
  self.live_ranks_ = std::move(live);
}

}  // namespace esper::fabric
