#include "fabric/client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "wire/validate.hpp"

namespace esper::fabric {

bool CommandOutcome::all_ok() const {
  return !targets.empty() && std::all_of(targets.begin(), targets.end(), [](const TargetOutcome& t) {
    return t.has_result && t.result.status == wire::Status::OK;
  });
}

Client::Client(zmq::context_t& ctx, const std::string& broker, ClientOptions options)
    : options_(std::move(options)),
      ctx_(ctx),
      scheme_(scheme_of(broker)),
      dealer_(ctx, zmq::socket_type::dealer),
      encoder_(wire::SourceInfo{-1, wire::Role::CONTROLLER, options_.job_id, "", 0}, options_.encode),
      decoder_(options_.limits),
      ids_(wire::Role::CONTROLLER, -1) {
  if (options_.result_grace.count() < 0) {
    throw Error("ClientOptions::result_grace must not be negative, got " + std::to_string(options_.result_grace.count()) +
                " ms");
  }
  dealer_.set(zmq::sockopt::linger, 0);
  dealer_.set(zmq::sockopt::sndhwm, options_.sndhwm);
  dealer_.set(zmq::sockopt::rcvhwm, options_.sndhwm);
  connect_or_throw(dealer_, broker);
  items_.push_back({dealer_.handle(), 0, ZMQ_POLLIN, 0});
  item_ranks_.push_back(-1);
  if (options_.direct) ask_routes();  // the table arrives while polling
}

std::chrono::milliseconds Client::jittered(std::chrono::milliseconds d) {
  std::uniform_real_distribution<double> u(1.0 - options_.retry.jitter, 1.0 + options_.retry.jitter);
  return std::chrono::milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(d.count()) * u(rng_))));
}

Expected<wire::MsgId, SendError> Client::send(const wire::CommandT& command, wire::Priority priority,
                                              std::optional<wire::MsgId> replay_of) {
  if (pending_.size() >= options_.max_pending) {
    return unexpected(SendError{SendErrc::TooManyPending, std::to_string(pending_.size()) +
                                                              " commands are pending (max_pending); poll() first"});
  }
  wire::Header h;
  h.msg_id = ids_.next();
  if (replay_of) h.correlation_id = *replay_of;
  h.priority = priority;
  h.timestamp_ns = wire::wall_clock_ns();
  const wire::CommandTarget target = command.target ? *command.target : wire::CommandTarget(wire::TargetKind::ALL, -1, 0);
  h.partition_key = target.layer();
  const auto f = encoder_.encode(h, command);
  Pending p;
  p.targets = direct_targets(target);
  if (!p.targets.empty()) {
    std::size_t sent = 0;
    for (const auto rank : p.targets) sent += send_direct(rank, f) ? 1 : 0;
    if (sent == 0) return unexpected(would_block());
    p.direct = p.dispatched = true;  // a target whose send would block gets it with the first retry
    ++sent_direct_;
  } else {
    if (!send_frame(frame::kCommand, f)) return unexpected(would_block());
    ++sent_via_broker_;
  }
  bump(counters_.commands_sent);
  const auto now = Clock::now();
  p.frame.assign(f.begin(), f.end());
  p.start = now;
  p.deadline = now + std::chrono::milliseconds(command.timeout_ms);
  p.give_up = p.deadline + options_.result_grace;
  p.backoff = options_.retry.first;
  p.next_retry = now + jittered(p.backoff);
  p.target = target;
  pending_.emplace(Key{h.msg_id.sender(), h.msg_id.seq()}, std::move(p));
  return h.msg_id;
}

Expected<wire::MsgId, SendError> Client::emit(const wire::EventT& event) {
  wire::Header h;
  h.msg_id = ids_.next();
  h.partition_key = event.layer;
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = encoder_.encode(h, event);
  if (!send_frame(frame::kEvent, f)) return unexpected(would_block());
  bump(counters_.events);
  return h.msg_id;
}

std::vector<std::int32_t> Client::direct_targets(const wire::CommandTarget& target) const {
  std::vector<std::int32_t> out;
  if (!options_.direct || routes_version_ == 0) return out;
  for (const auto& [rank, peer] : peers_) {
    if (!targets_rank(&target, rank, peer.layers)) continue;
    if (!peer.socket) return {};  // a target only the broker reaches: send it all that way
    out.push_back(rank);
  }
  return out;
}

bool Client::wait_for_routes(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (options_.direct && !has_routes() && Clock::now() < until) {
    (void)poll(std::min(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()), std::chrono::milliseconds(5)));
  }
  return has_routes();
}

std::vector<Route> Client::routes() const {
  std::vector<Route> out;
  for (const auto& [rank, peer] : peers_) out.push_back(Route{rank, peer.layers, peer.endpoint, peer.socket != nullptr});
  return out;
}

bool Client::send_direct(std::int32_t rank, std::span<const std::uint8_t> bytes) {
  const auto it = peers_.find(rank);
  return it != peers_.end() && it->second.socket && send_on(*it->second.socket, frame::kCommand, bytes);
}

bool Client::send_frame(char type, std::span<const std::uint8_t> bytes) { return send_on(dealer_, type, bytes); }

void Client::ask_routes() {
  (void)send_frame(frame::kKeepalive, {});
  (void)send_frame(frame::kRoutes, {});
}

void Client::on_keepalive(const zmq::message_t& frame) {
  const auto epoch = decode_epoch(frame);
  if (epoch == 0) {
    bump(counters_.frames_rejected);
    rejects_.add("client", "keepalive answer without an 8-byte non-zero epoch", bytes(frame));
    return;
  }
  if (epoch_ != 0 && epoch != epoch_) {
    bump(counters_.broker_restarts);
    spdlog::warn("client: the broker restarted (epoch {:016x}, was {:016x}); asking for its route table again", epoch,
                 epoch_);
    restart_grace_until_ = Clock::now() + options_.restart_grace;
    epoch_ = epoch;
    if (options_.direct) (void)send_frame(frame::kRoutes, {});
    return;
  }
  epoch_ = epoch;
}

bool Client::send_on(zmq::socket_t& socket, char type, std::span<const std::uint8_t> bytes) {
  if (!socket.send(type_frame(type), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
    bump(counters_.send_would_block);
    return false;
  }
  socket.send(zmq::message_t(bytes.data(), bytes.size()), zmq::send_flags::none);
  bump(counters_.frames_sent);
  return true;
}

SendError Client::would_block() {
  return SendError{SendErrc::WouldBlock, "the broker connection is full; poll() and try again"};
}

bool Client::resend(Pending& p) {
  bool sent = false;
  if (!p.direct) {
    sent = send_frame(frame::kCommand, p.frame);
  } else {
    for (const auto rank : p.targets) {
      if (!p.has_outcome(rank)) {
        sent = send_direct(rank, p.frame) || sent;
      }
    }
  }
  if (sent) bump(counters_.commands_retried);
  return sent;
}

TargetOutcome Client::failure(const Pending& p, std::int32_t rank, wire::FailureReason why, std::string detail) const {
  TargetOutcome t;
  t.rank = rank;
  t.failure = why;
  t.detail = std::move(detail);
  t.attempts = p.attempts;
  t.latency = Clock::now() - p.start;
  return t;
}

std::vector<CommandOutcome> Client::poll(std::chrono::milliseconds timeout) {
  std::vector<CommandOutcome> done;
  const auto until = Clock::now() + timeout;
  // Sockets are read only where a poll saw input (a read that finds nothing still costs system
  // calls), so every call polls at least once, even with a timeout of 0.
  bool polled = false;
  for (;;) {
    if (items_[0].revents & ZMQ_POLLIN) {
      items_[0].revents = 0;
      receive(done);
    }
    receive_peers(done);
    const auto now = Clock::now();
    if (now >= next_timer_check_) {
      check_timers(now, done);
      next_timer_check_ = now + std::chrono::milliseconds(2);
    }
    if (options_.keepalive.count() > 0 && now >= next_keepalive_) {
      (void)send_frame(frame::kKeepalive, {});
      next_keepalive_ = now + options_.keepalive;
    }
    if (!done.empty() || (polled && now >= until)) return done;
    const auto wait = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(until - now),
                               std::chrono::milliseconds(pending_.empty() ? 50 : 2));
    polled = true;
    if (wait_on_one_rank(std::max(wait, std::chrono::milliseconds(0)), done)) continue;
    zmq::poll(items_.data(), items_.size(), std::max(wait, std::chrono::milliseconds(0)));
  }
}

CommandOutcome Client::call(const wire::CommandT& command, wire::Priority priority) {
  auto id = send(command, priority);
  while (!id && id.error().code == SendErrc::WouldBlock) {
    (void)poll(std::chrono::milliseconds(10));
    id = send(command, priority);
  }
  if (!id) throw Error("cannot send command: " + id.error().message());
  for (;;) {
    for (auto& o : poll(std::chrono::milliseconds(100))) {
      if (o.id.sender() == id->sender() && o.id.seq() == id->seq()) return std::move(o);
    }
  }
}

void Client::receive(std::vector<CommandOutcome>& done) {
  for (int burst = 0; burst < 1024; ++burst) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(dealer_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    bump(counters_.frames_received);
    const char type = parts.size() >= 2 ? type_of(parts[0]) : '\0';
    if (type == frame::kDispatch && parts.size() == 2) {
      on_dispatch(parts[1], done);
    } else if (type == frame::kResult && parts.size() == 2) {
      on_result(parts[1], done);
    } else if (type == frame::kFailure && parts.size() == 2) {
      on_failure(parts[1], done);
    } else if (type == frame::kRoutes && parts.size() == 2) {
      on_routes(parts[1], done);
    } else if (type == frame::kKeepalive && parts.size() >= 2) {
      on_keepalive(parts[1]);
    } else {
      bump(counters_.frames_rejected);
      rejects_.add("client", "unexpected message from the broker (" + std::to_string(parts.size()) + " frames)",
                   bytes(parts.back()));
    }
  }
}

// Results straight from the ranks: ['R'][envelope] on each peer's socket, read where poll saw input.
void Client::receive_peers(std::vector<CommandOutcome>& done) {
  for (std::size_t i = 1; i < items_.size(); ++i) {
    if ((items_[i].revents & ZMQ_POLLIN) == 0) continue;
    items_[i].revents = 0;
    const auto it = peers_.find(item_ranks_[i]);
    if (it == peers_.end() || !it->second.socket) continue;
    for (int burst = 0; burst < 1024; ++burst) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(*it->second.socket, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
      on_peer_message(it->first, parts, done);
    }
  }
}

void Client::on_peer_message(std::int32_t rank, const std::vector<zmq::message_t>& parts,
                             std::vector<CommandOutcome>& done) {
  bump(counters_.frames_received);
  if (parts.size() == 2 && type_of(parts[0]) == frame::kResult) {
    on_result(parts[1], done);
    return;
  }
  bump(counters_.frames_rejected);
  rejects_.add("client direct",
               "unexpected message from rank " + std::to_string(rank) + " (" + std::to_string(parts.size()) + " frames)",
               bytes(parts.back()));
}

// One command in flight, sent straight to one rank (the latency case): wait in a blocking receive
// on that rank's socket alone, since a zmq_poll over several sockets costs several system calls on
// every wake-up. The broker's socket (route tables, failures) is still read every 2 ms.
bool Client::wait_on_one_rank(std::chrono::milliseconds wait, std::vector<CommandOutcome>& done) {
  if (pending_.size() != 1) return false;
  const auto& p = pending_.begin()->second;
  if (!p.direct || p.targets.size() != 1 || !p.outcomes.empty()) return false;
  const auto it = peers_.find(p.targets.front());
  if (it == peers_.end() || !it->second.socket) return false;
  const auto rank = it->first;
  auto& socket = *it->second.socket;
  socket.set(zmq::sockopt::rcvtimeo, static_cast<int>(wait.count()));
  std::vector<zmq::message_t> parts;
  if (zmq::recv_multipart(socket, std::back_inserter(parts))) on_peer_message(rank, parts, done);
  if (const auto now = Clock::now(); now >= next_broker_read_) {
    receive(done);
    next_broker_read_ = now + std::chrono::milliseconds(2);
  }
  return true;
}

// A new route table: connect to new or moved ranks; what a rank that left it still owes on the
// direct path fails as lost (the broker dropped it for missing heartbeats, or it disconnected).
void Client::on_routes(const zmq::message_t& frame, std::vector<CommandOutcome>& done) {
  const auto msg = expect(frame, wire::Body::RouteTable, frame::kRoutes);
  if (!msg) return;
  if (auto problem = wire::check(*msg)) {  // the table stays as it was
    reject_values(*msg, *problem, frame);
    return;
  }
  const auto* table = msg->body<wire::RouteTable>();
  std::map<std::int32_t, Peer> next;
  const bool connect = table->ranks() != nullptr && table->ranks()->size() <= options_.max_direct_ranks;
  if (table->ranks() != nullptr) {
    for (const auto* r : *table->ranks()) {
      Peer peer;
      if (r->layers() != nullptr) peer.layers.assign(r->layers()->begin(), r->layers()->end());
      if (r->command_endpoint() != nullptr) peer.endpoint = r->command_endpoint()->str();
      const auto old = peers_.find(r->rank());
      if (connect && old != peers_.end() && old->second.endpoint == peer.endpoint) {
        peer.socket = std::move(old->second.socket);
      } else if (connect && !peer.endpoint.empty() && scheme_of(peer.endpoint) == scheme_) {
        // A socket the context cannot create (its socket limit: a table naming hundreds of moved
        // ranks holds old and new sockets at once) or connect: not reachable from here, the
        // broker path serves it.
        try {
          peer.socket = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
          peer.socket->set(zmq::sockopt::linger, 0);
          peer.socket->set(zmq::sockopt::sndhwm, options_.sndhwm);
          peer.socket->set(zmq::sockopt::rcvhwm, options_.sndhwm);
          peer.socket->connect(peer.endpoint);
        } catch (const zmq::error_t&) {
          peer.socket.reset();
        }
      }
      next[r->rank()] = std::move(peer);
    }
  }
  // Just after a broker restart, a rank missing from the new broker's table has not heartbeated to
  // it yet: it keeps its route (and its commands go on) until the grace has passed.
  if (Clock::now() < restart_grace_until_) {
    for (auto& [rank, peer] : peers_) {
      if (!next.contains(rank)) next[rank] = std::move(peer);
    }
  }
  std::vector<Key> affected;
  for (auto& [k, p] : pending_) {
    if (!p.direct) continue;
    for (const auto rank : p.targets) {
      if (next.contains(rank) ||
          p.has_outcome(rank)) {
        continue;
      }
      p.outcomes.push_back(failure(p, rank, wire::FailureReason::RANK_LOST,
                                   "rank " + std::to_string(rank) + " left the broker's route table (reported lost)"));
      bump(counters_.commands_failed);
      affected.push_back(k);
    }
  }
  peers_ = std::move(next);
  // 0 stands for "no table yet": a table of version 2^64 - 1 must not wrap to it.
  routes_version_ = std::max<std::uint64_t>(table->version() + 1, 1);
  items_.resize(1);
  item_ranks_.assign(1, -1);
  for (const auto& [rank, peer] : peers_) {
    if (!peer.socket) continue;
    items_.push_back({peer.socket->handle(), 0, ZMQ_POLLIN, 0});
    item_ranks_.push_back(rank);
  }
  for (const auto& k : affected) {
    if (const auto it = pending_.find(k); it != pending_.end()) complete_if_done(k, it->second, done);
  }
}

void Client::on_dispatch(const zmq::message_t& frame, std::vector<CommandOutcome>& done) {
  const auto msg = expect(frame, wire::Body::CommandDispatch, frame::kDispatch);
  if (!msg) return;
  const auto& d = *msg->body<wire::CommandDispatch>();
  // As if it never came when a value is out of range: the command is re-sent, or times out.
  if (auto problem = wire::check(*msg)) {
    reject_values(*msg, *problem, frame);
    return;
  }
  if (d.command() == nullptr) {
    bump(counters_.frames_rejected);
    rejects_.add("client", "'D' frame names no command", bytes(frame));
    return;
  }
  const Key k{d.command()->sender(), d.command()->seq()};
  const auto it = pending_.find(k);
  if (it == pending_.end()) return;  // already complete
  auto& p = it->second;
  if (const auto* ranks = d.ranks()) {
    for (const auto rank : *ranks) {
      if (std::find(p.targets.begin(), p.targets.end(), rank) == p.targets.end()) p.targets.push_back(rank);
    }
  }
  p.dispatched = true;
  if (p.targets.empty() && p.outcomes.empty()) {
    const bool one_rank = d.reason() == wire::DispatchReason::NO_SUCH_RANK;
    p.outcomes.push_back(failure(p, one_rank ? p.target.rank() : -1,
                                 one_rank ? wire::FailureReason::RANK_LOST : wire::FailureReason::REJECTED,
                                 d.detail() ? d.detail()->str() : std::string()));
    bump(counters_.commands_failed);
  }
  complete_if_done(k, p, done);
}

void Client::reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame) {
  bump(counters_.values_rejected);
  const char* kind = wire::EnumNameBody(m.kind());
  rejects_.add("client", std::string("value out of range in ") + kind + ": " + problem, bytes(frame));
  const auto* src = m.envelope().source();
  value_log_.reject("client", kind, src ? src->rank() : -1, problem);
}

std::optional<wire::Message> Client::expect(const zmq::message_t& frame, wire::Body kind, char type) {
  auto msg = decoder_.decode(bytes(frame));
  if (msg && msg->kind() == kind) return std::move(*msg);
  bump(counters_.frames_rejected);
  rejects_.add("client",
               msg ? std::string("'") + type + "' frame does not hold a " + wire::EnumNameBody(kind) : msg.error().message(),
               bytes(frame));
  return std::nullopt;
}

void Client::on_result(const zmq::message_t& frame, std::vector<CommandOutcome>& done) {
  const auto msg = expect(frame, wire::Body::CommandResult, frame::kResult);
  if (!msg) return;
  // Who answered must be sane before anything else is read; a result without a correlation id
  // answers nothing.
  if (auto problem = wire::check_envelope(msg->envelope())) {
    reject_values(*msg, *problem, frame);
    return;
  }
  const auto* correlation = msg->envelope().correlation_id();
  if (correlation == nullptr) {
    bump(counters_.frames_rejected);
    rejects_.add("client", "a result without a correlation id", bytes(frame));
    return;
  }
  const auto& c = *correlation;
  const auto it = pending_.find(Key{c.sender(), c.seq()});
  if (it == pending_.end()) {
    bump(counters_.commands_deduplicated);  // a late duplicate of a completed command
    return;
  }
  auto& p = it->second;
  const auto* src = msg->envelope().source();
  const std::int32_t rank = src ? src->rank() : msg->body<wire::CommandResult>()->rank();
  if (p.has_outcome(rank)) {
    bump(counters_.commands_deduplicated);
    return;
  }
  // The rank answered, but with values out of range (a status, a state): not a result to act on.
  // That is its outcome, at once, rather than a TIMEOUT after the deadline.
  if (auto problem = wire::check(*msg->body<wire::CommandResult>())) {
    reject_values(*msg, *problem, frame);
    p.outcomes.push_back(failure(p, rank, wire::FailureReason::UNDECODABLE, "its result has a value out of range: " + *problem));
    if (std::find(p.targets.begin(), p.targets.end(), rank) == p.targets.end()) p.targets.push_back(rank);
    bump(counters_.commands_failed);
    complete_if_done(it->first, p, done);
    return;
  }
  TargetOutcome t;
  t.rank = rank;
  t.has_result = true;
  t.answered_ns = msg->envelope().timestamp_ns();
  msg->body<wire::CommandResult>()->UnPackTo(&t.result);
  t.attempts = p.attempts;
  t.latency = Clock::now() - p.start;
  p.outcomes.push_back(std::move(t));
  if (std::find(p.targets.begin(), p.targets.end(), rank) == p.targets.end()) p.targets.push_back(rank);
  bump(counters_.results_received);
  complete_if_done(it->first, p, done);
}

void Client::on_failure(const zmq::message_t& frame, std::vector<CommandOutcome>& done) {
  auto msg = decoder_.decode(bytes(frame));
  const wire::CommandFailed* f = nullptr;
  if (msg && msg->kind() == wire::Body::Event) f = msg->body<wire::Event>()->body_as_CommandFailed();
  if (f == nullptr || f->command_id() == nullptr) {
    bump(counters_.frames_rejected);
    rejects_.add("client", msg ? "'F' frame does not hold a CommandFailed event" : msg.error().message(), bytes(frame));
    return;
  }
  if (auto problem = wire::check(*msg)) {  // e.g. a failure reason this client does not know
    reject_values(*msg, *problem, frame);
    return;
  }
  const auto it = pending_.find(Key{f->command_id()->sender(), f->command_id()->seq()});
  if (it == pending_.end()) return;
  auto& p = it->second;
  const std::int32_t rank = f->target_rank();
  if (p.has_outcome(rank)) return;
  p.outcomes.push_back(failure(p, rank, f->reason(), f->detail() ? f->detail()->str() : ""));
  bump(counters_.commands_failed);
  complete_if_done(it->first, p, done);
}

namespace {
wire::DeadLetterReason dead_letter_reason(wire::FailureReason f) {
  switch (f) {
    case wire::FailureReason::TIMEOUT: return wire::DeadLetterReason::TIMEOUT;
    case wire::FailureReason::RETRIES_EXHAUSTED: return wire::DeadLetterReason::RETRIES_EXHAUSTED;
    case wire::FailureReason::RANK_LOST: return wire::DeadLetterReason::RANK_LOST;
    case wire::FailureReason::CIRCUIT_OPEN: return wire::DeadLetterReason::CIRCUIT_OPEN;
    case wire::FailureReason::UNDECODABLE: return wire::DeadLetterReason::UNDECODABLE;
    default: return wire::DeadLetterReason::REJECTED;
  }
}
std::string target_text(const wire::CommandTarget& t) {
  switch (t.kind()) {
    case wire::TargetKind::RANK: return "rank:" + std::to_string(t.rank());
    case wire::TargetKind::LAYER: return "layer:" + std::to_string(t.layer());
    default: return "all";
  }
}
}  // namespace

void Client::dead_letter(const Key& k, const Pending& p, TargetOutcome& t) {
  wire::DeadLetterT l;
  l.reason = dead_letter_reason(t.failure);
  l.stage = wire::DeadLetterStage::CLIENT;
  l.attempts = t.attempts;
  l.last_ns = wire::wall_clock_ns();
  const auto age = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.latency).count());
  l.first_ns = l.last_ns > age ? l.last_ns - age : 0;
  l.destination_rank = t.rank;
  l.destination = t.rank >= 0 ? "rank:" + std::to_string(t.rank) : target_text(p.target);
  l.sender = k.sender;
  l.msg_id = std::make_unique<wire::MsgId>(k.sender, k.seq);
  l.error = t.detail;
  l.original = p.frame;
  options_.dead_letters->add(l);
  t.dead_lettered = true;
}

void Client::complete_if_done(const Key& k, Pending& p, std::vector<CommandOutcome>& done) {
  if (!p.dispatched) return;
  for (const auto rank : p.targets) {
    if (!p.has_outcome(rank)) return;
  }
  finish(k, p, done);
}

void Client::finish(const Key& key, Pending& p, std::vector<CommandOutcome>& done) {
  const Key k = key;  // `key` may be the map's own, which erase() destroys
  if (options_.dead_letters) {
    for (auto& t : p.outcomes) {
      if (!t.has_result) dead_letter(k, p, t);
    }
  }
  done.push_back(CommandOutcome{wire::MsgId(k.sender, k.seq), std::move(p.outcomes)});
  pending_.erase(k);
}

void Client::check_timers(Clock::time_point now, std::vector<CommandOutcome>& done) {
  std::vector<Key> finished;
  bool ask_routes = false;
  for (auto& [k, p] : pending_) {
    if (now < p.deadline) {
      if (now < p.next_retry) continue;
      // Past max_attempts nothing is sent, but a direct command still asks for the route table on
      // the same schedule: a missed update must not leave it waiting on a lost rank.
      const bool send = p.attempts < options_.retry.max_attempts;
      if (send && !resend(p)) continue;  // would block: again at the next check
      if (send) ++p.attempts;
      ask_routes = ask_routes || p.direct;
      p.backoff = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(p.backoff * options_.retry.multiplier),
                           options_.retry.max);
      p.next_retry = now + jittered(p.backoff);
      continue;
    }
    // Past the deadline a rank no longer applies it, but a result decided just before may still
    // be on its way.
    if (now < p.give_up) continue;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.start).count();
    const std::string detail = "no answer after " + std::to_string(p.attempts) + " attempt(s) over " +
                               std::to_string(waited) + " ms (timeout " +
                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - p.start).count()) +
                               " ms + result grace " + std::to_string(options_.result_grace.count()) + " ms)";
    if (!p.dispatched && p.targets.empty()) {
      const bool one_rank = p.target.kind() == wire::TargetKind::RANK;
      p.outcomes.push_back(failure(p, one_rank ? p.target.rank() : -1, wire::FailureReason::TIMEOUT,
                                   detail + "; the broker never acknowledged it"));
    }
    for (const auto rank : p.targets) {
      if (!p.has_outcome(rank)) {
        p.outcomes.push_back(failure(p, rank, wire::FailureReason::TIMEOUT, detail));
      }
    }
    bump(counters_.commands_failed);
    finished.push_back(k);
  }
  for (const auto& k : finished) finish(k, pending_.at(k), done);
  // A direct command without an answer: ask for the table again, in case a change was missed (or
  // a restarted broker forgot this client's subscription).
  if (ask_routes) this->ask_routes();
}

}  // namespace esper::fabric
