#include "fabric/node.hpp"

#include <spdlog/spdlog.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>

#include "core/error.hpp"
#include "wire/builders.hpp"
#include "wire/validate.hpp"

namespace esper::fabric {
namespace {

using Clock = std::chrono::steady_clock;

wire::SourceInfo source_of(const NodeOptions& o) {
  return {o.rank, wire::Role::RANK, o.job_id, o.host, static_cast<std::uint32_t>(::getpid())};
}

// The options checked, with Compression resolved against the transport the broker is reached
// over and the host named.
NodeOptions resolved(NodeOptions o, const std::string& broker) {
  if (o.world_size < 0 || (o.world_size > 0 && (o.rank < 0 || o.rank >= o.world_size))) {
    throw Error("NodeOptions::world_size " + std::to_string(o.world_size) + " does not hold rank " +
                std::to_string(o.rank) + " (0 means unknown)");
  }
  if (o.host.empty()) o.host = this_host();
  auto& enabled = o.encode.compression.enabled;
  switch (o.compression) {
    case Compression::On: enabled = true; break;
    case Compression::Off: enabled = false; break;
    case Compression::Auto: enabled = enabled && !endpoint_on_this_host(broker); break;
  }
  return o;
}

}  // namespace

Node::Node(zmq::context_t& ctx, const std::string& broker, NodeOptions options)
    : options_(resolved(std::move(options), broker)),
      dealer_(ctx, zmq::socket_type::dealer),
      pub_(ctx, zmq::socket_type::xpub),
      direct_(ctx, zmq::socket_type::router),
      io_encoder_(source_of(options_), options_.encode),
      decoder_(options_.limits),
      ids_(wire::Role::RANK, options_.rank),
      results_to_drop_(options_.faults.drop_results),
      app_encoder_(source_of(options_), options_.encode),
      app_decoder_(options_.limits) {
  dealer_.set(zmq::sockopt::linger, 500);
  dealer_.set(zmq::sockopt::sndhwm, 100'000);
  dealer_.set(zmq::sockopt::rcvhwm, 100'000);
  pub_.set(zmq::sockopt::linger, 500);
  pub_.set(zmq::sockopt::sndhwm, options_.telemetry_hwm);
  pub_.set(zmq::sockopt::xpub_nodrop, 1);  // a full pipe is reported (and counted), not silent
  connect_or_throw(dealer_, broker);

  connect_or_throw(pub_, ask_endpoints(dealer_, broker, options_.connect_timeout).pub);
  // The broker subscribes to everything as soon as the connection is up: wait for that, so that
  // no early batch is filtered away unseen (the slow-joiner problem).
  zmq::pollitem_t pub_item{pub_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&pub_item, 1, options_.connect_timeout) == 0) {
    throw Error("broker at " + broker + " did not subscribe to this rank's telemetry within " +
                std::to_string(options_.connect_timeout.count()) + " ms");
  }
  zmq::message_t subscription;
  (void)pub_.recv(subscription);

  // The direct command socket. Should it not bind (e.g. an ipc path too long for the platform),
  // commands still arrive through the broker.
  const auto direct = options_.command_endpoint.empty()
                          ? direct_bind_address(broker, options_.rank, static_cast<std::uint64_t>(::getpid()) * 1'000'003u +
                                                                           reinterpret_cast<std::uintptr_t>(this) % 1'000'003u)
                          : options_.command_endpoint;
  if (!direct.empty() && direct != "none") {
    direct_.set(zmq::sockopt::linger, 0);
    direct_.set(zmq::sockopt::router_mandatory, 1);  // a result for a client that has gone is dropped, not queued
    direct_.set(zmq::sockopt::sndhwm, 100'000);
    direct_.set(zmq::sockopt::rcvhwm, 100'000);
    try {
      direct_.bind(direct);
      command_endpoint_ = direct_.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t&) {
      command_endpoint_.clear();
    }
  }

  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw Error(std::string("cannot create the node's wake-up eventfd: ") + std::strerror(errno));
  io_.start("node I/O", [this](const std::stop_token& stop) {
    struct Done {  // also when run() throws: report_failure() must not wait for a thread that has gone
      Node& n;
      int unwinding = std::uncaught_exceptions();
      ~Done() {
        std::lock_guard lock(n.handed_mu_);
        n.io_done_ = true;
        n.io_failed_ = std::uncaught_exceptions() > unwinding;
        n.handed_cv_.notify_all();
      }
    } done{*this};
    run(stop);
  });
}

Node::~Node() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Node::stop() noexcept {
  if (stopped_.exchange(true)) return;
  io_.request_stop();
  wake();
  io_.stop();
  remove_ipc_file(command_endpoint_);
}

// An eventfd, not a ZeroMQ pair: one write to wake, and a plain descriptor in the I/O thread's poll
// (every ZeroMQ socket in a poll costs system calls on every turn).
void Node::wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);  // fails only when the counter is saturated: already awake
}

void Node::run(const std::stop_token& stop) {
  // Each ZeroMQ socket in a poll costs system calls on every turn, so the publisher's incoming
  // (re)subscriptions are drained with the heartbeats instead of polled.
  std::array<zmq::pollitem_t, 3> items{{{dealer_.handle(), 0, ZMQ_POLLIN, 0},
                                        {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                                        {direct_.handle(), 0, ZMQ_POLLIN, 0}}};
  const std::size_t n_items = command_endpoint_.empty() ? 2 : 3;
  auto next_heartbeat = Clock::now();
  try {
    while (!stop.stop_requested()) {
      try {
        auto now = Clock::now();
        if (now >= next_heartbeat) {
          receive_commands(dealer_, false);  // the broker's latest answer first: a slow turn is not an outage
          check_broker(now);
          send_heartbeat();
          next_heartbeat = now + options_.heartbeat_interval;
          zmq::message_t m;
          while (pub_.recv(m, zmq::recv_flags::dontwait)) {  // (re)subscriptions after a broker reconnect
          }
        }
        // Sleeps until the next heartbeat, the end of the oldest open batch's window, or one window
        // at most: a batch opened meanwhile is seen before its window ends, then waited for exactly.
        const auto next_batch = send_telemetry(false);
        send_outbox();
        const auto wake_at = std::min(
            {next_heartbeat, next_batch, now + std::max(options_.telemetry_window, std::chrono::milliseconds(1))});
        zmq::poll(items.data(), n_items,
                  std::max(std::chrono::milliseconds(0), std::chrono::ceil<std::chrono::milliseconds>(wake_at - now)));
        if (items[0].revents & ZMQ_POLLIN) receive_commands(dealer_, false);
        if (n_items > 2 && (items[2].revents & ZMQ_POLLIN)) receive_commands(direct_, true);
        if (items[1].revents & ZMQ_POLLIN) {
          std::uint64_t n;
          (void)!::read(wake_fd_, &n, sizeof n);
        }
      } catch (const zmq::error_t& e) {
        // A signal meant for the process (SIGINT, SIGTERM, a profiler's) may land on this thread:
        // its handler has run, and the loop goes on.
        if (e.num() != EINTR) throw;
      }
    }
    send_telemetry(true);
    send_outbox();
    // Held through an outage that outlasted the node: never sent, counted.
    for (const auto& b : held_) count_dropped_batch(b.records.size(), counters_.telemetry_records_dropped_outage);
    if (!held_.empty()) {
      spdlog::warn("rank {} on {}: stopped with {} telemetry batches held for a broker that never came back",
                   options_.rank, options_.host, held_.size());
    }
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) throw;
  }
}

// Commands through the broker, ['C'][envelope] on the dealer, or straight from clients,
// [client id]['C'][envelope] on the direct socket (the id is the route of the answer).
void Node::receive_commands(zmq::socket_t& socket, bool direct) {
  const std::size_t head = direct ? 1 : 0;
  for (int burst = 0; burst < 256; ++burst) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    // The broker's answer to a heartbeat is the channel's upkeep, not a frame for the node: not
    // counted in frames_received.
    if (!direct && parts.size() == 2 && type_of(parts[0]) == frame::kHeartbeat && decode_epoch(parts[1]) != 0) {
      on_broker_answer(parts[1]);
      continue;
    }
    bump(counters_.frames_received);
    if (parts.size() == head + 2 && type_of(parts[head]) == frame::kCommand) {
      on_command_frame(parts[head + 1], direct ? parts[0].to_string() : std::string());
      continue;
    }
    bump(counters_.frames_rejected);
    const auto frames = parts.size() - std::min(head, parts.size());
    const std::string type = frames > 0 ? ", type '" + parts[head].to_string() + "'" : "";
    rejects_.add(direct ? "node direct" : "node",
                 std::string("unexpected message on the ") + (direct ? "direct command socket" : "command channel") +
                     " (" + std::to_string(frames) + " frames" + (direct ? " after the routing id" : "") + type +
                     (direct ? "; expected ['C'][command])" : "; expected ['C'][command] or ['H'][epoch])"),
                 bytes(parts.back()));
  }
}

namespace {

wire::CommandTarget target_of(const wire::Command& c) {
  return c.target() ? *c.target() : wire::CommandTarget(wire::TargetKind::ALL, -1, 0);
}

bool same_target(const wire::CommandTarget& a, const wire::CommandTarget& b) {
  return a.kind() == b.kind() && a.rank() == b.rank() && a.layer() == b.layer();
}

}  // namespace

void Node::on_command_frame(zmq::message_t& frame, std::string route) {
  auto msg = decoder_.decode(bytes(frame));
  if (!msg || msg->kind() != wire::Body::Command) {
    bump(counters_.frames_rejected);
    rejects_.add("node", msg ? "'C' frame does not hold a Command" : msg.error().message(), bytes(frame));
    return;
  }
  const auto& envelope = msg->envelope();
  const auto& command = *msg->body<wire::Command>();
  // The answer to a command must itself be sane: an unknown priority is answered as NORMAL.
  const auto answer_priority = wire::is_known(envelope.priority()) ? envelope.priority() : wire::Priority::NORMAL;
  // Dedup and the result cache key on the msg_id: an id no generator produces could stand for
  // any command, so it is answered, never remembered.
  if (!wire::is_valid(envelope.msg_id())) {
    const auto* bad = envelope.msg_id();
    reject_command(bad ? *bad : wire::MsgId(), answer_priority, std::move(route),
                   bad ? "the command's msg_id has seq 0 (sender " + std::to_string(bad->sender()) +
                             "), which no msg_id generator produces; not applied"
                       : std::string("the command carries no msg_id; not applied"),
                   frame, counters_.commands_invalid_id);
    return;
  }
  // Values out of range (an unknown priority, target kind, state, blueprint kind, grafting strategy
  // or stop scope, in the command or any member of a batch) are answered REJECTED naming the field,
  // and never remembered, like an invalid msg_id. Layers and seeds are the handler's to check.
  if (auto problem = wire::check(*msg)) {
    const auto* src = envelope.source();
    value_log_.reject(route.empty() ? "node" : "node direct", "Command", src ? src->rank() : -1, *problem);
    reject_command(*envelope.msg_id(), answer_priority, std::move(route),
                   "value out of range: " + *problem + "; not applied", frame, counters_.values_rejected);
    return;
  }
  const auto id = *envelope.msg_id();
  const auto k = key_of(id);
  const auto priority = wire::priority_index(envelope.priority());
  const auto kind = command.body_type();
  const auto target = target_of(command);
  std::vector<std::uint8_t> cached;
  bool closed = false;
  std::string reused;  // what the first command with this msg_id was, when this one differs
  {
    std::lock_guard lock(cmd_mu_);
    if (auto it = seen_.find(k); it != seen_.end()) {
      if (it->second.kind != kind || !same_target(it->second.target, target)) {
        reused = std::string(wire::EnumNameCommandBody(it->second.kind)) + " to " +
                 wire::EnumNameTargetKind(it->second.target.kind());
      } else {
        bump(counters_.commands_deduplicated);
        it->second.route = route;  // answer the way the latest copy came
        if (!it->second.answered) return;  // still queued: it will be answered once
        cached = it->second.result;
      }
    } else {
      // Read under the lock close_commands() sets it under: a command is either queued before
      // the close (and answered by it) or answered as closed here.
      closed = closed_.load(std::memory_order_acquire);
      seen_.emplace(k, Seen{false, {}, route, kind, target});
      remember(k);
      if (!closed && !options_.immediate_handler) {
        queue_[priority].push_back(Queued{std::move(frame), Clock::now()});
        cmd_cv_.notify_all();
      }
    }
  }
  if (!reused.empty()) {  // the first command keeps its entry, its route and its cached result
    reject_command(id, envelope.priority(), std::move(route),
                   "msg_id reused for a different command (the first with this id was " + reused + "); not applied",
                   frame, counters_.commands_id_reused);
    return;
  }
  if (!cached.empty()) {
    std::lock_guard lock(out_mu_);
    outbox_.push_back(Outgoing{frame::kResult, std::move(route), std::move(cached)});
    return;
  }
  if (closed) {
    queue_answer(id, envelope.priority(), wire::command_result(wire::Status::REJECTED, options_.rank, closed_reason_));
  } else if (options_.immediate_handler) {  // on this (the I/O) thread: no queue, no hand-off, no wake-up
    auto result = handle(options_.immediate_handler, command, envelope, Clock::now());
    queue_answer(id, envelope.priority(), std::move(result));
    send_outbox();
  }
}

void Node::reject_command(const wire::MsgId& id, wire::Priority priority, std::string route, const std::string& why,
                          const zmq::message_t& frame, std::atomic<std::uint64_t>& counter) {
  bump(counter);
  rejects_.add(route.empty() ? "node" : "node direct", why, bytes(frame));
  auto result = wire::command_result(wire::Status::REJECTED, options_.rank, why);
  std::lock_guard lock(out_mu_);
  auto encoded = encode_result(id, priority, result);
  outbox_.push_back(Outgoing{frame::kResult, std::move(route), std::move(encoded)});
}

void Node::remember(const MsgIdKey& id) {
  seen_order_.push_back(id);
  while (seen_order_.size() > options_.dedup_window) {
    auto it = seen_.find(seen_order_.front());
    if (it != seen_.end() && !it->second.answered) break;  // never forget a command still queued
    if (it != seen_.end()) seen_.erase(it);
    seen_order_.pop_front();
  }
}

std::size_t Node::queued_commands() const {
  std::lock_guard lock(cmd_mu_);
  std::size_t n = 0;
  for (const auto& q : queue_) n += q.size();
  return n;
}

bool Node::wait_for_command(std::chrono::milliseconds timeout) {
  std::unique_lock lock(cmd_mu_);
  return cmd_cv_.wait_for(lock, timeout, [this] {
    for (const auto& q : queue_) {
      if (!q.empty()) return true;
    }
    return false;
  });
}

namespace {

// The sender gives up timeout_ms after its send (timestamp_ns, its wall clock): past that, the
// command is answered TIMEOUT and not applied, so a sender's TIMEOUT is never followed by an
// application. Receipt time bounds it too, should the sender's clock run far ahead of ours.
bool expired(const wire::Command& command, const wire::Envelope& envelope, Clock::time_point received) {
  const auto timeout = std::chrono::milliseconds(command.timeout_ms());
  const auto sent_ns = envelope.timestamp_ns();
  const auto timeout_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(timeout).count());
  return (sent_ns != 0 && wire::wall_clock_ns() >= sent_ns + timeout_ns) || Clock::now() - received >= timeout;
}

wire::CommandResultT expired_result(const wire::Command& command, Clock::time_point received) {
  wire::CommandResultT r;
  r.status = wire::Status::TIMEOUT;
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - received).count();
  r.error = "expired after " + std::to_string(waited) + " ms at the rank (timeout " +
            std::to_string(command.timeout_ms()) + " ms); not applied";
  return r;
}

}  // namespace

bool TakenCommand::expired() const { return fabric::expired(command(), envelope(), received); }

wire::CommandResultT Node::expired_result(const TakenCommand& c) { return fabric::expired_result(c.command(), c.received); }

wire::CommandResultT Node::handle(const Handler& handler, const wire::Command& command, const wire::Envelope& envelope,
                                  std::chrono::steady_clock::time_point received) {
  const auto start = Clock::now();
  wire::CommandResultT result;
  if (fabric::expired(command, envelope, received)) {
    result = fabric::expired_result(command, received);
  } else {
    try {
      result = handler(IncomingCommand{command, envelope});
    } catch (const std::exception& e) {
      result = wire::CommandResultT{};
      result.status = wire::Status::FAILED;
      result.error = std::string("handler threw: ") + e.what();
    }
    bump(counters_.commands_applied);
  }
  result.execution_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
  return result;
}

void Node::close_commands(const std::string& reason) {
  {
    std::lock_guard lock(cmd_mu_);
    if (!closed_.load(std::memory_order_relaxed)) closed_reason_ = reason;  // read by the I/O thread once closed
    closed_.store(true, std::memory_order_release);
  }
  for (auto& c : take_commands()) {
    answer(c.id(), c.envelope().priority(), wire::command_result(wire::Status::REJECTED, options_.rank, reason));
  }
}

std::vector<TakenCommand> Node::take_commands(std::size_t max) {
  std::vector<TakenCommand> out;
  while (out.size() < max) {
    Queued q;
    {
      std::lock_guard lock(cmd_mu_);
      auto it = std::find_if(queue_.rbegin(), queue_.rend(), [](const auto& d) { return !d.empty(); });
      if (it == queue_.rend()) break;
      q = std::move(it->front());
      it->pop_front();
    }
    auto frame = std::make_unique<zmq::message_t>(std::move(q.frame));
    auto msg = app_decoder_.decode(bytes(*frame));  // verified on arrival; this re-reads it
    if (!msg) continue;
    out.push_back(TakenCommand{std::move(frame), std::move(*msg), q.received});
  }
  return out;
}

void Node::answer(const wire::MsgId& id, wire::Priority priority, wire::CommandResultT result) {
  queue_answer(id, priority, std::move(result));
  wake();
}

std::vector<std::uint8_t> Node::encode_result(const wire::MsgId& id, wire::Priority priority,
                                              wire::CommandResultT& result) {
  result.rank = options_.rank;
  wire::Header h;
  h.msg_id = ids_.next();
  h.correlation_id = id;
  h.priority = priority;
  h.timestamp_ns = wire::wall_clock_ns();
  const auto f = app_encoder_.encode(h, result);
  return {f.begin(), f.end()};
}

void Node::queue_answer(const wire::MsgId& id, wire::Priority priority, wire::CommandResultT result) {
  std::vector<std::uint8_t> frame_bytes;
  std::string route;
  {
    std::lock_guard lock(cmd_mu_);
    if (auto it = seen_.find(key_of(id)); it != seen_.end()) route = it->second.route;
  }
  {
    std::lock_guard lock(out_mu_);
    frame_bytes = encode_result(id, priority, result);
    outbox_.push_back(Outgoing{frame::kResult, route, frame_bytes});
  }
  {
    std::lock_guard lock(cmd_mu_);
    auto& seen = seen_[key_of(id)];
    seen.answered = true;
    seen.result = std::move(frame_bytes);
  }
}

std::size_t Node::poll_commands(const Handler& handler, std::size_t max) {
  auto taken = take_commands(max);
  for (auto& c : taken) queue_answer(c.id(), c.envelope().priority(), handle(handler, c.command(), c.envelope(), c.received));
  if (!taken.empty()) wake();  // one wake-up for all the results
  return taken.size();
}

void Node::emit(const wire::EventT& event) {
  {
    std::lock_guard lock(out_mu_);
    wire::Header h;
    h.msg_id = ids_.next();
    h.partition_key = event.layer;
    h.timestamp_ns = wire::wall_clock_ns();
    const auto f = app_encoder_.encode(h, event);
    outbox_.push_back(Outgoing{frame::kEvent, {}, std::vector<std::uint8_t>(f.begin(), f.end())});
  }
  wake();
}

bool Node::report_failure(const std::string& cause, std::chrono::milliseconds timeout) {
  std::uint64_t ticket = 0;
  {
    std::lock_guard lock(out_mu_);
    wire::Header h;
    h.msg_id = ids_.next();
    h.priority = wire::Priority::CRITICAL;
    h.timestamp_ns = wire::wall_clock_ns();
    auto event = wire::rank_lost(options_.rank, last_heartbeat_ns_.load(std::memory_order_relaxed), 0, cause);
    event.step = step_.load(std::memory_order_relaxed);
    const auto f = app_encoder_.encode(h, event);
    ticket = ++tickets_;
    // Ahead of whatever waits (results for a slow client can hold the queue), behind earlier notices.
    const auto at = std::find_if(outbox_.begin(), outbox_.end(), [](const Outgoing& o) { return o.ticket == 0; });
    outbox_.insert(at, Outgoing{frame::kEvent, {}, std::vector<std::uint8_t>(f.begin(), f.end()), ticket});
  }
  wake();
  {
    std::unique_lock lock(handed_mu_);
    handed_cv_.wait_for(lock, timeout, [&] { return handed_ >= ticket || io_done_; });
    if (handed_ >= ticket) return true;
    if (!io_failed_) return false;  // still running (timed out), or stopped: nothing more is sent
  }
  // The I/O thread has failed (the likely reason to report): its sockets are no thread's now, and
  // the mutex above ordered its last use before this one. Send the notice from here.
  std::lock_guard once(notice_mu_);
  std::deque<Outgoing> notices;
  {
    std::lock_guard lock(out_mu_);
    for (auto it = outbox_.begin(); it != outbox_.end();) {
      if (it->ticket != 0) {
        notices.push_back(std::move(*it));
        it = outbox_.erase(it);
      } else {
        ++it;
      }
    }
  }
  bool sent = false;
  try {
    for (auto& n : notices) {
      if (!dealer_.send(type_frame(n.type), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) break;
      dealer_.send(zmq::message_t(n.bytes.data(), n.bytes.size()), zmq::send_flags::none);
      sent = sent || n.ticket == ticket;
    }
  } catch (const zmq::error_t&) {
    return false;
  }
  return sent;
}

void Node::send_outbox() {
  std::deque<Outgoing> out;
  {
    std::lock_guard lock(out_mu_);
    out.swap(outbox_);
  }
  while (!out.empty()) {
    auto& [type, route, payload, ticket] = out.front();
    if (type == frame::kResult && results_to_drop_ > 0) {
      --results_to_drop_;  // injected fault: this result is lost on the way
      out.pop_front();
      continue;
    }
    auto& socket = route.empty() ? dealer_ : direct_;
    try {
      if (!route.empty() && !direct_.send(zmq::buffer(route), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        bump(counters_.send_would_block);
        break;  // the client is slow: keep the rest, in order, for the next turn
      }
      if (!socket.send(type_frame(type), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        bump(counters_.send_would_block);
        break;  // the broker is slow: as above
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) throw;
      // The client has gone; should it come back it re-sends, and the cached result answers it.
      bump(counters_.send_would_block);
      out.pop_front();
      continue;
    }
    socket.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);
    bump(counters_.frames_sent);
    bump(type == frame::kResult ? counters_.results_sent : counters_.events);
    if (ticket != 0) {
      std::lock_guard lock(handed_mu_);
      handed_ = std::max(handed_, ticket);
      handed_cv_.notify_all();
    }
    out.pop_front();
  }
  if (!out.empty()) {
    std::lock_guard lock(out_mu_);
    outbox_.insert(outbox_.begin(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
  }
}

void Node::publish(std::uint32_t layer, std::span<const wire::SeedMetrics> records) {
  bool full = false;
  {
    std::lock_guard lock(tel_mu_);
    auto& b = open_[layer];
    if (b.records.empty()) {
      if (b.records.capacity() == 0 && !spare_.empty()) {  // reuse a sent batch's memory
        b.records = std::move(spare_.back());
        spare_.pop_back();
      }
      b.records.reserve(options_.telemetry_batch_bytes / sizeof(wire::SeedMetrics) + 1);
      b.layer = layer;
      b.opened = Clock::now();
      b.window_start_ns = wire::wall_clock_ns();
    }
    b.records.insert(b.records.end(), records.begin(), records.end());
    if (b.records.size() * sizeof(wire::SeedMetrics) >= options_.telemetry_batch_bytes) {
      if (ready_.size() >= options_.telemetry_max_queued) {
        const auto n = ready_.front().records.size();
        count_dropped_batch(n, counters_.telemetry_records_dropped_queue);
        queue_dropped_ += n;
        ready_.pop_front();
      }
      close_batch(b);
      ready_.push_back(std::move(b));
      open_.erase(layer);
      full = true;
    }
  }
  if (full) wake();
}

void Node::set_layer_stats(std::uint32_t layer, double step_seconds, double samples_per_second) {
  const bool time_known = std::isfinite(step_seconds) && step_seconds >= 0;
  const bool rate_known = std::isfinite(samples_per_second) && samples_per_second >= 0;
  // Values past the wire types' range are sent as their largest (u64 ns: about 584 years).
  const double ns = time_known ? step_seconds * 1e9 : 0.0;
  const auto step_ns = ns >= 1.8e19 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(ns);
  constexpr double kMaxRate = std::numeric_limits<float>::max();
  const float rate = !rate_known ? std::numeric_limits<float>::quiet_NaN()
                                 : static_cast<float>(std::min(samples_per_second, kMaxRate));
  const wire::LayerMetrics m(step_.load(std::memory_order_relaxed), step_ns, rate,
                             std::numeric_limits<float>::quiet_NaN());  // the node is not told the loss
  std::lock_guard lock(tel_mu_);
  layer_stats_[layer] = m;
}

void Node::flush() {
  {
    std::lock_guard lock(tel_mu_);
    for (auto& [layer, b] : open_) {
      close_batch(b);
      ready_.push_back(std::move(b));
    }
    open_.clear();
  }
  wake();
}

std::chrono::steady_clock::time_point Node::send_telemetry(bool everything) {
  std::deque<Batch> batches;
  auto next_due = Clock::time_point::max();
  {
    std::lock_guard lock(tel_mu_);
    batches.swap(ready_);
    const auto now = Clock::now();
    for (auto it = open_.begin(); it != open_.end();) {
      if (everything || now - it->second.opened >= options_.telemetry_window) {
        close_batch(it->second);
        batches.push_back(std::move(it->second));
        it = open_.erase(it);
      } else {
        next_due = std::min(next_due, it->second.opened + options_.telemetry_window);
        ++it;
      }
    }
    for (auto& b : batches) {
      if (const auto it = layer_stats_.find(b.layer); it != layer_stats_.end()) b.stats = it->second;
    }
    dropped_since_last_batch_ += queue_dropped_;  // told in the next batch sent, as the pipe's drops are
    queue_dropped_ = 0;
  }
  if (outage_ && resuming_ && Clock::now() >= resume_at_) {
    outage_ = resuming_ = false;
    spdlog::info("rank {} on {}: sending {} telemetry batches held through the broker's outage", options_.rank,
                 options_.host, held_.size() + batches.size());
  }
  if (outage_) {  // the broker is down (or just back): held, sent once it has answered for a while
    for (auto& b : batches) hold(std::move(b));
    return resuming_ ? std::min(next_due, resume_at_) : next_due;
  }
  if (!held_.empty()) {  // the broker is back: what was held goes first, in order
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) batches.push_front(std::move(*it));
    held_.clear();
    held_bytes_ = 0;
  }
  for (auto& b : batches) {
    const auto n = static_cast<std::uint32_t>(b.records.size());
    const std::uint64_t seq = ++batch_seq_[b.layer];
    wire::Header h;
    h.msg_id = ids_.next();
    h.partition_key = b.layer;
    h.sequence = seq;
    h.timestamp_ns = wire::wall_clock_ns();
    const wire::TelemetryBatchInfo info{b.layer, options_.rank, b.window_start_ns, h.timestamp_ns,
                                        dropped_since_last_batch_};
    const auto f = io_encoder_.encode_telemetry(
        h, info, b.records, b.stats ? std::span<const wire::LayerMetrics>(&*b.stats, 1) : std::span<const wire::LayerMetrics>());
    const std::string topic = telemetry_topic(b.layer);
    if (!pub_.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      count_dropped_batch(n, counters_.telemetry_records_dropped_hwm);
      dropped_since_last_batch_ += n;
      continue;
    }
    pub_.send(encode_meta(Meta{.sequence = seq, .records = n, .records_total = b.records_total}), zmq::send_flags::sndmore);
    pub_.send(zmq::message_t(f.data(), f.size()), zmq::send_flags::none);
    bump(counters_.telemetry_batches);
    bump(counters_.telemetry_records, n);
    dropped_since_last_batch_ = 0;
  }
  std::lock_guard lock(tel_mu_);
  for (auto& b : batches) {
    if (spare_.size() >= 4) break;
    b.records.clear();
    spare_.push_back(std::move(b.records));
  }
  return next_due;
}

void Node::close_batch(Batch& b) { b.records_total = records_closed_[b.layer] += b.records.size(); }

void Node::count_dropped_batch(std::uint64_t records, std::atomic<std::uint64_t>& stage) {
  bump(counters_.telemetry_batches_dropped);
  bump(counters_.telemetry_records_dropped, records);
  bump(stage, records);
}

void Node::hold(Batch b) {
  const auto bytes_of = [](const Batch& x) { return x.records.size() * sizeof(wire::SeedMetrics); };
  held_bytes_ += bytes_of(b);
  held_.push_back(std::move(b));
  while (held_.size() > 1 && (held_.size() > options_.outage_max_batches || held_bytes_ > options_.outage_max_bytes)) {
    const auto n = held_.front().records.size();
    held_bytes_ -= bytes_of(held_.front());
    held_.pop_front();
    count_dropped_batch(n, counters_.telemetry_records_dropped_outage);
    dropped_since_last_batch_ += n;
  }
}

void Node::check_broker(Clock::time_point now) {
  const auto silence = std::chrono::duration_cast<Clock::duration>(options_.heartbeat_interval * options_.broker_lost_after);
  if (broker_epoch_ == 0 || now - last_answer_ <= silence) return;
  if (outage_) {
    resuming_ = false;  // back, and gone again before the held telemetry went out
    return;
  }
  outage_ = true;
  outage_since_ = last_answer_;
  bump(counters_.broker_outages);
  spdlog::warn("rank {} on {}: the broker has not answered for {} ms; holding telemetry (up to {} batches, {} MiB) "
               "until it does", options_.rank, options_.host,
               std::chrono::duration_cast<std::chrono::milliseconds>(now - last_answer_).count(),
               options_.outage_max_batches, options_.outage_max_bytes >> 20);
}

void Node::on_broker_answer(const zmq::message_t& epoch_frame) {
  const auto epoch = decode_epoch(epoch_frame);
  const auto now = Clock::now();
  last_answer_ = now;
  if (broker_epoch_ != 0 && epoch != broker_epoch_) {
    bump(counters_.broker_restarts);
    spdlog::warn("rank {} on {}: the broker restarted (epoch {:016x}, was {:016x}); registered with it again",
                 options_.rank, options_.host, epoch, broker_epoch_);
  }
  broker_epoch_ = epoch;
  if (outage_ && !resuming_) {
    resuming_ = true;
    resume_at_ = now + options_.outage_settle;
    spdlog::info("rank {} on {}: the broker answers again after {} ms; {} held telemetry batches go out in {} ms",
                 options_.rank, options_.host,
                 std::chrono::duration_cast<std::chrono::milliseconds>(now - outage_since_).count(), held_.size(),
                 options_.outage_settle.count());
  }
}

void Node::send_heartbeat() {
  if (options_.faults.fail_at_heartbeat != 0 && ++heartbeats_sent_ == options_.faults.fail_at_heartbeat) {
    throw Error("injected failure at heartbeat " + std::to_string(heartbeats_sent_) + " (test hook)");
  }
  wire::Header h;
  h.msg_id = ids_.next();
  h.timestamp_ns = wire::wall_clock_ns();
  const auto uptime = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_).count());
  const auto f = io_encoder_.encode(
      h, wire::heartbeat(step_.load(std::memory_order_relaxed), static_cast<std::uint32_t>(options_.heartbeat_interval.count()),
                         uptime, static_cast<std::uint32_t>(queued_commands()),
                         counters_.telemetry_records_dropped.load(std::memory_order_relaxed), options_.layers,
                         command_endpoint_, options_.world_size));
  if (dealer_.send(type_frame(frame::kHeartbeat), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
    dealer_.send(zmq::message_t(f.data(), f.size()), zmq::send_flags::none);
    last_heartbeat_ns_.store(h.timestamp_ns, std::memory_order_relaxed);
    bump(counters_.heartbeats);
    bump(counters_.frames_sent);
  } else {
    bump(counters_.send_would_block);
  }
}

}  // namespace esper::fabric
