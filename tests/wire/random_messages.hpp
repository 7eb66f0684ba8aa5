// Random messages of every kind, for round-trip properties and corruption runs.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::wire::testing {

class RandomMessages {
 public:
  explicit RandomMessages(std::uint64_t seed) : rng_(seed) {}

  std::mt19937_64& rng() { return rng_; }
  std::uint32_t u32(std::uint32_t hi = 0xffffffffu) { return static_cast<std::uint32_t>(rng_() % (std::uint64_t{hi} + 1)); }
  std::int32_t i32() { return static_cast<std::int32_t>(rng_()); }
  std::uint64_t u64() { return rng_(); }
  bool coin() { return (rng_() & 1) != 0; }
  double real() { return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_); }
  float realf() { return static_cast<float>(std::uniform_real_distribution<double>(-10, 10)(rng_)); }
  template <class E>
  E pick(E max) { return static_cast<E>(u32(static_cast<std::uint32_t>(max))); }

  std::string text(std::size_t max_len = 24) {
    std::string s(u32(static_cast<std::uint32_t>(max_len)), ' ');
    for (auto& c : s) c = static_cast<char>('!' + u32(93));
    return s;
  }
  std::vector<std::uint32_t> u32s(std::size_t max_len = 8) {
    std::vector<std::uint32_t> v(u32(static_cast<std::uint32_t>(max_len)));
    for (auto& x : v) x = u32();
    return v;
  }
  SeedState state() { return pick(SeedState::MAX); }
  MsgId msg_id() { return MsgId(u64(), u64()); }

  Header header() {
    Header h;
    h.msg_id = msg_id();
    h.correlation_id = coin() ? msg_id() : MsgId();
    h.priority = pick(Priority::MAX);
    h.partition_key = u32();
    h.sequence = u64();
    h.lamport = u64();
    h.timestamp_ns = u64();
    h.trace = TraceContext(u64(), u64(), u64());
    return h;
  }

  SourceInfo source() { return SourceInfo{i32(), pick(Role::MAX), text(), text(), u32()}; }

  SeedSetT seed_set() {
    SeedSetT s;
    s.all = coin();
    s.ids = u32s();
    for (std::uint32_t i = u32(3); i > 0; --i) s.ranges.emplace_back(u32(), u32());
    return s;
  }

  CommandT command(int depth = 0) {
    const CommandTarget target(pick(TargetKind::MAX), i32(), u32());
    CommandOptions opts{u32(), static_cast<std::int64_t>(u64())};
    switch (u32(depth < 2 ? 5 : 4)) {
      case 0: return transition_seeds(target, u32(), seed_set(), state(), text(), coin(), opts);
      case 1: {
        SetBlueprintT b;
        b.layer = u32();
        b.seed = u32();
        b.kind = pick(BlueprintKind::MAX);
        b.rank = u32();
        b.grafting = pick(GraftingStrategy::MAX);
        b.ramp_steps = u32();
        b.drift_threshold = realf();
        b.learning_rate = realf();
        for (std::uint32_t i = u32(3); i > 0; --i) {
          auto p = std::make_unique<ParamT>();
          p->name = text();
          p->value = real();
          b.params.push_back(std::move(p));
        }
        return set_blueprint(target, std::move(b), opts);
      }
      case 2: return emergency_stop(target, pick(StopScope::MAX), u32(), u32(), text(), opts);
      case 3: return request_snapshot(target, u32s(), text(), opts);
      case 4: return shutdown(target, text(), u32(), opts);
      default: {
        std::vector<CommandT> inner;
        for (std::uint32_t i = u32(3); i > 0; --i) inner.push_back(command(depth + 1));
        auto c = batch(target, std::move(inner), coin(), coin(), opts);
        c.attempt = u32(5);
        return c;
      }
    }
  }

  CommandResultT result() {
    std::vector<SeedOutcomeT> outcomes;
    for (std::uint32_t i = u32(6); i > 0; --i) {
      outcomes.push_back(seed_outcome(u32(), pick(Status::MAX), state(), state(), text()));
    }
    return command_result(pick(Status::MAX), i32(), text(), std::move(outcomes), u64(),
                          static_cast<std::int64_t>(u64()));
  }

  SeedMetrics seed_metrics() {
    return SeedMetrics(u64(), u32(), u32(), realf(), realf(), realf(), realf(), realf(), realf(), realf(), realf(),
                       state(), static_cast<std::uint8_t>(u32(255)), 0);
  }

  TelemetryBatchT telemetry(std::size_t max_records = 64) {
    TelemetryBatchT t;
    t.layer = u32();
    t.rank = i32();
    t.window_start_ns = u64();
    t.window_end_ns = u64();
    for (std::uint32_t i = u32(static_cast<std::uint32_t>(max_records)); i > 0; --i) t.seeds.push_back(seed_metrics());
    for (std::uint32_t i = u32(4); i > 0; --i) t.layers.emplace_back(u64(), u64(), realf(), realf());
    t.dropped_records = u64();
    return t;
  }

  EventT event() {
    switch (u32(6)) {
      case 0: return state_transition(u32(), u64(), u32(), state(), state(), text(), text(), msg_id());
      case 1: return anomaly_alert(u32(), u64(), u32(), text(), real(), real(), real(), pick(Severity::MAX), text(), real());
      case 2: return rank_joined(i32(), i32(), text(), u32(), u32s());
      case 3: return rank_lost(i32(), u64(), u32(), text());
      case 4: return command_failed(msg_id(), i32(), pick(FailureReason::MAX), text(), u32(), coin());
      case 5: return checkpoint(u64(), text(), u64(), u64());
      default:
        return decision(u32(), u64(), {text(), pick(DecisionAction::MAX), state(), u32s(), text(), msg_id(), u32s(),
                                       u32s(), pick(Status::MAX), text(), u64()});
    }
  }

  HeartbeatT heartbeat() { return wire::heartbeat(u64(), u32(), u64(), u32(), u64(), u32s(), text(), i32()); }

  StateSnapshotT snapshot() {
    std::vector<LayerStateT> layers;
    for (std::uint32_t i = u32(3); i > 0; --i) {
      std::vector<SeedStatus> seeds;
      for (std::uint32_t s = u32(20); s > 0; --s) {
        seeds.emplace_back(u32(), state(), state(), 0, u32(), u32(), realf());
      }
      layers.push_back(layer_state(u32(), i32(), u64(), std::move(seeds)));
    }
    return state_snapshot(u64(), std::move(layers), u32(), u32());
  }

  RouteTableT route_table() {
    RouteTableT t;
    t.version = u64();
    for (std::uint32_t i = u32(4); i > 0; --i) {
      auto r = std::make_unique<RankRouteT>();
      r->rank = i32();
      r->layers = u32s();
      r->command_endpoint = text();
      t.ranks.push_back(std::move(r));
    }
    return t;
  }

  CommandDispatchT dispatch() {
    CommandDispatchT d;
    d.command = std::make_unique<MsgId>(msg_id());
    d.reason = pick(DispatchReason::MAX);
    for (std::uint32_t i = u32(5); i > 0; --i) d.ranks.push_back(i32());
    d.detail = text();
    return d;
  }

  // Encodes a random message of a random kind.
  std::vector<std::uint8_t> any_frame(Encoder& enc) {
    const Header h = header();
    std::span<const std::uint8_t> f;
    switch (u32(8)) {
      case 0: f = enc.encode(h, command()); break;
      case 1: f = enc.encode(h, result()); break;
      case 2: f = enc.encode(h, telemetry(200)); break;
      case 3: f = enc.encode(h, event()); break;
      case 4: f = enc.encode(h, heartbeat()); break;
      case 5: f = enc.encode(h, route_table()); break;
      case 6: f = enc.encode(h, dispatch()); break;
      default: f = enc.encode(h, snapshot()); break;
    }
    return {f.begin(), f.end()};
  }

 private:
  std::mt19937_64 rng_;
};

// Reads every field of a decoded message (through the object API), so that a sanitizer sees any
// out-of-bounds access the verifier let through.
template <class Table>
auto unpack(const Table* t) {
  typename Table::NativeTableType out;
  t->UnPackTo(&out);
  return out;
}

inline void touch_everything(const Message& m) {
  (void)unpack(&m.envelope());
  switch (m.kind()) {
    case Body::Command: (void)unpack(m.body<Command>()); break;
    case Body::CommandResult: (void)unpack(m.body<CommandResult>()); break;
    case Body::TelemetryBatch: (void)unpack(m.body<TelemetryBatch>()); break;
    case Body::Event: (void)unpack(m.body<Event>()); break;
    case Body::Heartbeat: (void)unpack(m.body<Heartbeat>()); break;
    case Body::StateSnapshot: (void)unpack(m.body<StateSnapshot>()); break;
    case Body::RouteTable: (void)unpack(m.body<RouteTable>()); break;
    case Body::CommandDispatch: (void)unpack(m.body<CommandDispatch>()); break;
    default: break;
  }
}

}  // namespace esper::wire::testing
