#include "fabric/subscriber.hpp"

#include <random>

#include "core/error.hpp"

namespace esper::fabric {

using Clock = std::chrono::steady_clock;

Subscriber::Subscriber(zmq::context_t& ctx, const std::string& broker, SubscriberOptions options)
    : broker_(broker),
      options_(std::move(options)),
      sub_(ctx, zmq::socket_type::sub),
      dealer_(ctx, zmq::socket_type::dealer),
      decoder_(options_.limits) {
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, options_.rcvhwm);
  dealer_.set(zmq::sockopt::linger, 0);
  connect_or_throw(dealer_, broker);
  const auto endpoints = ask_endpoints(dealer_, broker, options_.connect_timeout);
  for (const auto& t : options_.topics) sub_.set(zmq::sockopt::subscribe, t);
  connect_or_throw(sub_, endpoints.sub);
}

bool Subscriber::wait_ready(std::chrono::milliseconds timeout) {
  const std::string nonce = std::to_string(std::random_device{}()) + std::to_string(Clock::now().time_since_epoch().count());
  const std::string topic = std::string(kPingPrefix) + nonce;
  sub_.set(zmq::sockopt::subscribe, topic);
  const auto until = Clock::now() + timeout;
  bool ready = false;
  while (!ready && Clock::now() < until) {
    dealer_.send(type_frame(frame::kPing), zmq::send_flags::sndmore);
    dealer_.send(zmq::buffer(nonce), zmq::send_flags::none);
    const auto round_end = std::min(until, Clock::now() + std::chrono::milliseconds(100));
    zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
    while (!ready && Clock::now() < round_end) {
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(round_end - Clock::now()));
      std::vector<zmq::message_t> parts;
      // Other traffic arriving meanwhile is skipped: wait_ready() is for before the data flows.
      while (zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        if (!parts.empty() && parts[0].to_string() == topic) ready = true;
        parts.clear();
      }
    }
  }
  sub_.set(zmq::sockopt::unsubscribe, topic);
  return ready;
}

bool Subscriber::request_snapshot(std::chrono::milliseconds timeout) {
  dealer_.send(type_frame(frame::kSnapshot), zmq::send_flags::none);
  zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(dealer_, std::back_inserter(parts), zmq::recv_flags::dontwait)) continue;
    Meta meta;
    if (parts.size() != 3 || type_of(parts[0]) != frame::kSnapshot || !decode_meta(parts[1], meta)) continue;
    auto msg = decoder_.decode(bytes(parts[2]));
    if (!msg || msg->kind() != wire::Body::StateSnapshot) {
      bump(counters_.frames_rejected);
      rejects_.add("subscriber", msg ? "snapshot reply without a StateSnapshot" : msg.error().message(), bytes(parts[2]));
      continue;
    }
    if (auto problem = wire::check_envelope(msg->envelope(), options_.bounds)) {
      reject_values(*msg, *problem, parts[2]);
      continue;
    }
    // The broker's state: what is out of this subscriber's bounds is skipped, the rest loaded.
    const auto skipped = state_.load(*msg->body<wire::StateSnapshot>(), options_.bounds);
    if (skipped.entries > 0) {
      bump(counters_.values_rejected, skipped.entries - 1);  // reject_values() counts one
      reject_values(*msg, *skipped.first + " (" + std::to_string(skipped.entries) + " entries skipped)", parts[2]);
    }
    synced_ = true;
    return true;
  }
  return false;
}

bool Subscriber::sync(std::chrono::milliseconds timeout) { return request_snapshot(timeout); }

void Subscriber::track_telemetry(const wire::Message& m, bool accepted) {
  const auto& e = m.envelope();
  const auto key = std::make_pair(e.msg_id() ? e.msg_id()->sender() : 0, e.partition_key());
  auto [it, fresh] = last_batch_.try_emplace(key, e.sequence());
  if (!fresh) {
    if (e.sequence() > it->second + 1) batches_missing_ += e.sequence() - it->second - 1;
    it->second = std::max(it->second, e.sequence());
  }
  if (!accepted) return;  // a rejected batch is not missing, and its records were not received
  const auto* b = m.body<wire::TelemetryBatch>();
  bump(counters_.telemetry_batches);
  bump(counters_.telemetry_records, b->seeds() ? b->seeds()->size() : 0);
}

void Subscriber::reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame) {
  bump(counters_.values_rejected);
  const auto* src = m.envelope().source();
  const char* kind = wire::EnumNameBody(m.kind());
  rejects_.add("subscriber", std::string("value out of range in ") + kind + ": " + problem, bytes(frame));
  value_log_.reject("subscriber", kind, src ? src->rank() : -1, problem);
}

std::optional<Delivery> Subscriber::next(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      const auto now = Clock::now();
      if (now >= until) return std::nullopt;
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(until - now));
      continue;
    }
    bump(counters_.frames_received);
    Delivery d;
    if (parts.size() != 3 || !decode_meta(parts[1], d.meta)) {
      bump(counters_.frames_rejected);
      rejects_.add("subscriber", "publication is not [topic][16-byte meta][envelope]", bytes(parts.back()));
      continue;
    }
    d.topic = parts[0].to_string();
    if (d.topic.rfind(kPingPrefix, 0) == 0) continue;
    d.frame = std::make_unique<zmq::message_t>(std::move(parts[2]));
    auto msg = decoder_.decode(bytes(*d.frame));
    if (!msg) {
      bump(counters_.frames_rejected);
      rejects_.add("subscriber", msg.error().message(), bytes(*d.frame));
      continue;
    }
    const auto problem = wire::check(*msg, options_.bounds);
    if (const auto* ev = msg->body<wire::Event>()) {
      bump(counters_.events);
      // A rejected event still takes its sequence number, so that it is not taken for a gap.
      if (synced_) {
        const auto* src = msg->envelope().source();
        const auto seq = d.meta.sequence;
        const auto take = [&] {
          if (problem) {
            state_.skip(seq);
          } else {
            state_.apply(*ev, src ? src->rank() : -1, seq, options_.bounds);
          }
        };
        if (seq <= state_.sequence()) {
          d.duplicate = true;
        } else if (seq == state_.sequence() + 1) {
          take();
        } else {
          bump(counters_.event_gaps, seq - state_.sequence() - 1);
          request_snapshot(options_.connect_timeout);  // the snapshot contains the missed events
          d.duplicate = seq <= state_.sequence();
          if (!d.duplicate && seq == state_.sequence() + 1) take();
        }
      }
    } else if (msg->kind() == wire::Body::TelemetryBatch) {
      track_telemetry(*msg, !problem);
    }
    if (problem) {
      reject_values(*msg, *problem, *d.frame);
      continue;
    }
    d.message.emplace(std::move(*msg));
    return d;
  }
}

}  // namespace esper::fabric
