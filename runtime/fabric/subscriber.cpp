#include "fabric/subscriber.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <random>

#include "core/error.hpp"

namespace esper::fabric {

using Clock = std::chrono::steady_clock;

namespace {
// Whether a subscription prefix selects events (the event socket) and whether it selects anything
// else (the telemetry socket). "" and "e" select both kinds' topics where they apply.
bool selects_events(std::string_view t) { return t.starts_with(kEventPrefix) || kEventPrefix.starts_with(t); }
bool selects_other(std::string_view t) { return !t.starts_with(kEventPrefix); }
}  // namespace

Subscriber::Subscriber(zmq::context_t& ctx, const std::string& broker, SubscriberOptions options)
    : broker_(broker),
      options_(std::move(options)),
      sub_(ctx, zmq::socket_type::sub),
      evt_(ctx, zmq::socket_type::sub),
      dealer_(ctx, zmq::socket_type::dealer),
      decoder_(options_.limits) {
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, options_.rcvhwm);
  evt_.set(zmq::sockopt::linger, 0);
  evt_.set(zmq::sockopt::rcvhwm, options_.event_rcvhwm);
  dealer_.set(zmq::sockopt::linger, 0);
  connect_or_throw(dealer_, broker);
  const auto endpoints = ask_endpoints(dealer_, broker, options_.connect_timeout);
  for (const auto& t : options_.topics) {
    if (selects_events(t)) {
      evt_.set(zmq::sockopt::subscribe, t);
      event_socket_ = true;
    }
    if (selects_other(t)) {
      sub_.set(zmq::sockopt::subscribe, t);
      telemetry_socket_ = true;
    }
  }
  connect_or_throw(sub_, endpoints.sub);
  // A broker from before the event endpoint publishes events with telemetry (evt == sub): then
  // the one socket serves both.
  if (endpoints.evt != endpoints.sub) {
    connect_or_throw(evt_, endpoints.evt);
  } else if (event_socket_) {
    for (const auto& t : options_.topics) {
      if (selects_events(t) && !selects_other(t)) sub_.set(zmq::sockopt::subscribe, t);
    }
    telemetry_socket_ = true;
    event_socket_ = false;
  }
  if (!telemetry_socket_ && !event_socket_) telemetry_socket_ = true;  // no topic: wait_ready() still needs one
}

bool Subscriber::wait_ready(std::chrono::milliseconds timeout) {
  const std::string nonce = std::to_string(std::random_device{}()) + std::to_string(Clock::now().time_since_epoch().count());
  const std::string topic = std::string(kPingPrefix) + nonce;
  std::vector<zmq::socket_t*> sockets;
  if (telemetry_socket_) sockets.push_back(&sub_);
  if (event_socket_) sockets.push_back(&evt_);
  for (auto* s : sockets) s->set(zmq::sockopt::subscribe, topic);
  const auto until = Clock::now() + timeout;
  std::vector<bool> echoed(sockets.size(), false);
  const auto ready = [&] { return std::all_of(echoed.begin(), echoed.end(), [](bool e) { return e; }); };
  while (!ready() && Clock::now() < until) {
    dealer_.send(type_frame(frame::kPing), zmq::send_flags::sndmore);
    dealer_.send(zmq::buffer(nonce), zmq::send_flags::none);
    const auto round_end = std::min(until, Clock::now() + std::chrono::milliseconds(100));
    std::vector<zmq::pollitem_t> items;
    for (auto* s : sockets) items.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
    while (!ready() && Clock::now() < round_end) {
      zmq::poll(items.data(), items.size(), std::chrono::duration_cast<std::chrono::milliseconds>(round_end - Clock::now()));
      for (std::size_t i = 0; i < sockets.size(); ++i) {
        std::vector<zmq::message_t> parts;
        // Other traffic arriving meanwhile is skipped: wait_ready() is for before the data flows.
        while (zmq::recv_multipart(*sockets[i], std::back_inserter(parts), zmq::recv_flags::dontwait)) {
          if (!parts.empty() && parts[0].to_string() == topic) echoed[i] = true;
          parts.clear();
        }
      }
    }
  }
  for (auto* s : sockets) s->set(zmq::sockopt::unsubscribe, topic);
  return ready();
}

bool Subscriber::request_snapshot(std::chrono::milliseconds timeout) {
  spdlog::debug("subscriber: asking the broker for its state");
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
    see_epoch(meta.epoch);  // a restarted broker's state: its sequence counts from here
    // The broker's state: what is out of this subscriber's bounds is skipped, the rest loaded.
    const auto skipped = state_.load(*msg->body<wire::StateSnapshot>(), options_.bounds);
    if (skipped.entries > 0) {
      bump(counters_.values_rejected, skipped.entries - 1);  // reject_values() counts one
      reject_values(*msg, *skipped.first + " (" + std::to_string(skipped.entries) + " entries skipped)", parts[2]);
    }
    synced_ = true;
    tracking_ = true;
    // The broker's snapshot is never behind an event it published before it (one that is, from
    // a broker that restarted, does not take back what was delivered).
    last_event_ = std::max(last_event_, state_.sequence());
    return true;
  }
  return false;
}

bool Subscriber::sync(std::chrono::milliseconds timeout) { return request_snapshot(timeout); }

wire::Problem Subscriber::track_telemetry(const wire::Message& m, const Meta& meta, bool accepted) {
  const auto& e = m.envelope();
  const auto* b = m.body<wire::TelemetryBatch>();
  const std::uint64_t records = b->seeds() ? b->seeds()->size() : 0;
  // The meta frame is what the broker counted drops by: it must tell this batch's records.
  if (accepted && meta.records != records) {
    return "meta records: " + std::to_string(meta.records) + " for a batch of " + std::to_string(records) + " records";
  }
  const auto key = std::make_pair(e.msg_id() ? e.msg_id()->sender() : 0, e.partition_key());
  auto [it, fresh] = streams_.try_emplace(key, Stream{e.sequence(), meta.records_total});
  if (!fresh) {
    auto& st = it->second;
    // A running total that leaps further than the counts allow is forged, not a drop.
    if (meta.records_total != 0 && st.records_total != 0 && meta.records_total > st.records_total &&
        meta.records_total - st.records_total > options_.bounds.counts) {
      return "meta records_total: " + std::to_string(meta.records_total) + " leaps past " +
             std::to_string(st.records_total) + " by more than " + std::to_string(options_.bounds.counts);
    }
    if (e.sequence() > st.sequence + 1) batches_missing_ += e.sequence() - st.sequence - 1;
    st.sequence = std::max(st.sequence, e.sequence());
    if (meta.records_total != 0 && st.records_total != 0 && meta.records_total > st.records_total + meta.records) {
      bump(counters_.telemetry_records_missing, meta.records_total - st.records_total - meta.records);
    }
    st.records_total = std::max(st.records_total, meta.records_total);
  }
  if (!accepted) return std::nullopt;  // a rejected batch is not missing, and its records were not received
  bump(counters_.telemetry_batches);
  bump(counters_.telemetry_records, records);
  return std::nullopt;
}

void Subscriber::reject_values(const wire::Message& m, const std::string& problem, const zmq::message_t& frame) {
  bump(counters_.values_rejected);
  const auto* src = m.envelope().source();
  const char* kind = wire::EnumNameBody(m.kind());
  rejects_.add("subscriber", std::string("value out of range in ") + kind + ": " + problem, bytes(frame));
  value_log_.reject("subscriber", kind, src ? src->rank() : -1, problem);
}

void Subscriber::reject_records(std::uint64_t records, const std::string& why, const zmq::message_t& frame) {
  bump(counters_.frames_rejected);
  bump(counters_.telemetry_records_rejected, records);
  rejects_.add("subscriber", why, bytes(frame));
}

std::optional<Delivery> Subscriber::next(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  std::array<zmq::pollitem_t, 3> items{{{evt_.handle(), 0, ZMQ_POLLIN, 0},
                                        {sub_.handle(), 0, ZMQ_POLLIN, 0},
                                        {dealer_.handle(), 0, ZMQ_POLLIN, 0}}};
  for (;;) {
    if (!ready_.empty()) {
      Delivery d = std::move(ready_.front());
      ready_.pop_front();
      return d;
    }
    // Events first: a telemetry backlog never stands in front of one.
    std::vector<zmq::message_t> parts;
    if (event_socket_ && zmq::recv_multipart(evt_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      receive(parts, true);
      continue;
    }
    if (telemetry_socket_ && zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      receive(parts, false);
      continue;
    }
    if (zmq::recv_multipart(dealer_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      if (!parts.empty() && type_of(parts[0]) == frame::kKeepalive) on_keepalive(parts);
      continue;  // anything else is a late answer to an earlier request
    }
    const auto now = Clock::now();
    if (options_.keepalive.count() > 0 && now >= next_keepalive_) {
      (void)dealer_.send(type_frame(frame::kKeepalive), zmq::send_flags::dontwait);
      next_keepalive_ = now + options_.keepalive;
    }
    if (now >= until) return std::nullopt;
    const auto wait = std::min(until, options_.keepalive.count() > 0 ? next_keepalive_ : until) - now;
    zmq::poll(items.data(), items.size(), std::chrono::duration_cast<std::chrono::milliseconds>(wait));
  }
}

void Subscriber::on_keepalive(const std::vector<zmq::message_t>& parts) {
  const auto epoch = parts.size() == 3 ? decode_epoch(parts[1]) : 0;
  if (epoch == 0 || parts[2].size() != 8) {
    bump(counters_.frames_rejected);
    rejects_.add("subscriber", "keepalive answer is not [K][epoch: 8 bytes, not 0][latest event: 8 bytes]",
                 bytes(parts.back()));
    return;
  }
  const auto latest = le::get(static_cast<const std::uint8_t*>(parts[2].data()), 8);
  see_epoch(epoch);
  // Events the broker had published at the previous answer and that still have not arrived were
  // missed, with no later event to show the gap: they are replayed.
  const auto [probe_epoch, probe_latest] = probe_;
  probe_ = {epoch, latest};
  if (event_socket_ && tracking_ && probe_epoch == epoch && probe_latest > last_event_) {
    recover(last_event_ + 1, probe_latest);
  }
}

void Subscriber::receive(std::vector<zmq::message_t>& parts, bool event_socket) {
  bump(counters_.frames_received);
  Delivery d;
  const char* bad_meta = parts.size() == 3 ? decode_meta(bytes(parts[1]), d.meta) : nullptr;
  if (parts.size() != 3 || bad_meta != nullptr) {
    bump(counters_.frames_rejected);
    rejects_.add("subscriber", bad_meta ? std::string(bad_meta) : "publication is not [topic][meta][envelope]",
                 bytes(parts.size() == 3 ? parts[1] : parts.back()));
    return;
  }
  d.topic = parts[0].to_string();
  if (d.topic.starts_with(kPingPrefix)) return;
  // Events come on the event socket only (a broker that publishes them with telemetry serves both
  // on one: then event_socket_ is false); one on the other socket is not taken for a sequence.
  const bool is_event_topic = d.topic.starts_with(kEventPrefix);
  if (event_socket_ && is_event_topic != event_socket) {
    bump(counters_.frames_rejected);
    rejects_.add("subscriber", is_event_topic ? "an event on the telemetry socket (events come on the event socket)"
                                              : "a publication other than an event on the event socket",
                 bytes(parts[0]));
    return;
  }
  // What the publisher says the batch holds, for counting a rejected one (bounded: the meta frame
  // is not verified against anything before the envelope decodes).
  const std::uint64_t claimed = std::min<std::uint64_t>(d.meta.records, options_.limits.max_records_per_batch);
  d.frame = std::make_unique<zmq::message_t>(std::move(parts[2]));
  auto msg = decoder_.decode(bytes(*d.frame));
  if (!msg) {
    reject_records(is_event_topic ? 0 : claimed, msg.error().message(), *d.frame);
    return;
  }
  auto problem = wire::check(*msg, options_.bounds);
  if (msg->body<wire::Event>() != nullptr) {
    bump(counters_.events);
    see_epoch(d.meta.epoch);
    const auto seq = d.meta.sequence;
    if (synced_ || last_event_ != 0) {
      if (seq <= last_event_) {
        d.duplicate = true;  // contained in the synced state, or delivered already
        if (problem) {
          reject_values(*msg, *problem, *d.frame);
          return;
        }
        d.message.emplace(std::move(*msg));
        ready_.push_back(std::move(d));
        return;
      }
      if (seq > last_event_ + 1) recover(last_event_ + 1, seq - 1);
      if (seq <= last_event_) {  // a snapshot taken to cover the gap contains it
        d.duplicate = true;
        if (!problem) {
          d.message.emplace(std::move(*msg));
          ready_.push_back(std::move(d));
        }
        return;
      }
    }
    take_event(std::move(d), std::move(*msg), problem);
    return;
  }
  if (msg->kind() == wire::Body::TelemetryBatch) {
    if (auto meta_problem = track_telemetry(*msg, d.meta, !problem)) problem = std::move(meta_problem);
    if (problem) bump(counters_.telemetry_records_rejected, claimed);
  }
  if (problem) {
    reject_values(*msg, *problem, *d.frame);
    return;
  }
  d.message.emplace(std::move(*msg));
  ready_.push_back(std::move(d));
}

void Subscriber::see_epoch(std::uint64_t epoch) {
  if (epoch == 0 || epoch == epoch_) return;
  if (epoch_ != 0) {
    bump(counters_.broker_restarts);
    probe_ = {0, 0};
    spdlog::warn("subscriber: the broker restarted (epoch {:016x}, was {:016x}); its event sequence starts over, the "
                 "state is kept", epoch, epoch_);
    last_event_ = 0;
    state_.new_epoch();
  }
  epoch_ = epoch;
}

void Subscriber::take_event(Delivery d, wire::Message msg, const wire::Problem& problem) {
  const auto seq = d.meta.sequence;
  last_event_ = seq;
  tracking_ = true;
  // A rejected event still takes its sequence number, so that it is not taken for a gap.
  if (synced_) {
    if (problem) {
      state_.skip(seq);
    } else {
      const auto* src = msg.envelope().source();
      state_.apply(*msg.body<wire::Event>(), src ? src->rank() : -1, seq, options_.bounds);
    }
  }
  if (problem) {
    reject_values(msg, *problem, *d.frame);
    return;
  }
  d.message.emplace(std::move(msg));
  ready_.push_back(std::move(d));
}

void Subscriber::recover(std::uint64_t first, std::uint64_t last) {
  bump(counters_.event_gaps, last - first + 1);
  spdlog::debug("subscriber: events {}..{} missed; asking the broker to replay them", first, last);
  const auto until = Clock::now() + options_.connect_timeout;
  zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
  bool gave_up = false;
  while (first <= last && !gave_up && Clock::now() < until) {
    std::array<std::uint8_t, 8> from{};
    le::put(from.data(), first, 8);
    dealer_.send(type_frame(frame::kReplay), zmq::send_flags::sndmore);
    dealer_.send(zmq::buffer(from), zmq::send_flags::none);
    bump(counters_.event_replays);
    std::vector<zmq::message_t> parts;
    while (parts.empty() && Clock::now() < until) {
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
      if (!zmq::recv_multipart(dealer_, std::back_inserter(parts), zmq::recv_flags::dontwait)) continue;
      if (type_of(parts[0]) != frame::kReplay) parts.clear();  // a late answer to an earlier request
    }
    if (parts.empty()) break;  // the broker did not answer in time
    // [V][status u8][latest u64][meta][envelope]...
    if (parts.size() < 2 || parts.size() % 2 != 0 || parts[1].size() != 9) {
      bump(counters_.frames_rejected);
      rejects_.add("subscriber", "replay reply is not [V][status, latest: 9 bytes]([meta][envelope])...", bytes(parts.back()));
      break;
    }
    const auto* status = static_cast<const std::uint8_t*>(parts[1].data());
    if (status[0] != kReplayOk || parts.size() == 2) break;  // too old (or nothing kept): a snapshot covers it
    for (std::size_t i = 2; i + 1 < parts.size() && first <= last; i += 2) {
      Delivery d;
      const char* bad_meta = decode_meta(bytes(parts[i]), d.meta);
      if (bad_meta != nullptr || d.meta.sequence != first || (d.meta.epoch != 0 && d.meta.epoch != epoch_)) {
        bump(counters_.frames_rejected);
        rejects_.add("subscriber", bad_meta ? std::string("replay: ") + bad_meta
                     : d.meta.sequence != first ? "replay: event " + std::to_string(d.meta.sequence) + " where " +
                                                      std::to_string(first) + " was due"
                                                : std::string("replay from another broker epoch (it restarted meanwhile)"),
                     bytes(parts[i]));
        gave_up = true;
        break;
      }
      d.frame = std::make_unique<zmq::message_t>(std::move(parts[i + 1]));
      auto msg = decoder_.decode(bytes(*d.frame));
      if (!msg || msg->body<wire::Event>() == nullptr) {
        bump(counters_.frames_rejected);
        rejects_.add("subscriber", msg ? "replay: not an Event" : "replay: " + msg.error().message(), bytes(*d.frame));
        gave_up = true;
        break;
      }
      const auto* ev = msg->body<wire::Event>();
      d.topic = event_topic(ev->layer());
      d.recovered = true;
      bump(counters_.events_recovered);
      const auto problem = wire::check(*msg, options_.bounds);
      take_event(std::move(d), std::move(*msg), problem);
      ++first;
    }
  }
  if (first > last) return;
  // Not replayed: counted; a synced state is fetched anew (it contains them), else they are passed.
  bump(counters_.events_unrecovered, last - first + 1);
  if (!synced_ || !request_snapshot(options_.connect_timeout)) last_event_ = std::max(last_event_, last);
}

}  // namespace esper::fabric
