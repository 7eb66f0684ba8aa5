#include "wire/builders.hpp"

#include <utility>

namespace esper::wire {
namespace {

template <class T>
CommandT command(CommandTarget target, T body, CommandOptions opts) {
  CommandT c;
  c.target = std::make_unique<CommandTarget>(target);
  c.timeout_ms = opts.timeout_ms;
  c.apply_at_step = opts.apply_at_step;
  c.body.Set(std::move(body));
  return c;
}

template <class T>
EventT event(std::uint32_t layer, std::uint64_t step, T body) {
  EventT e;
  e.layer = layer;
  e.step = step;
  e.body.Set(std::move(body));
  return e;
}

}  // namespace

CommandTarget to_rank(std::int32_t rank) { return CommandTarget(TargetKind::RANK, rank, 0); }
CommandTarget to_layer(std::uint32_t layer) { return CommandTarget(TargetKind::LAYER, -1, layer); }
CommandTarget to_all() { return CommandTarget(TargetKind::ALL, -1, 0); }

SeedSetT all_seeds() {
  SeedSetT s;
  s.all = true;
  return s;
}

SeedSetT seed_ids(std::vector<std::uint32_t> ids) {
  SeedSetT s;
  s.ids = std::move(ids);
  return s;
}

SeedSetT seed_range(std::uint32_t first, std::uint32_t last) {
  SeedSetT s;
  s.ranges.emplace_back(first, last);
  return s;
}

bool contains(const SeedSet* set, std::uint32_t seed) noexcept {
  if (set == nullptr) return false;
  if (set->all()) return true;
  if (const auto* ids = set->ids()) {
    for (auto id : *ids) {
      if (id == seed) return true;
    }
  }
  if (const auto* ranges = set->ranges()) {
    for (const auto* r : *ranges) {
      if (seed >= r->first() && seed <= r->last()) return true;
    }
  }
  return false;
}

CommandT transition_seeds(CommandTarget target, std::uint32_t layer, SeedSetT seeds, SeedState to, std::string reason,
                          bool force, CommandOptions opts) {
  TransitionSeedsT t;
  t.layer = layer;
  t.seeds = std::make_unique<SeedSetT>(std::move(seeds));
  t.target = to;
  t.reason = std::move(reason);
  t.force = force;
  return command(target, std::move(t), opts);
}

CommandT set_blueprint(CommandTarget target, SetBlueprintT blueprint, CommandOptions opts) {
  return command(target, std::move(blueprint), opts);
}

CommandT batch(CommandTarget target, std::vector<CommandT> commands, bool atomic, bool stop_on_error,
               CommandOptions opts) {
  BatchCommandT b;
  b.atomic = atomic;
  b.stop_on_error = stop_on_error;
  for (auto& c : commands) b.commands.push_back(std::make_unique<CommandT>(std::move(c)));
  return command(target, std::move(b), opts);
}

CommandT emergency_stop(CommandTarget target, StopScope scope, std::uint32_t layer, std::uint32_t seed,
                        std::string reason, CommandOptions opts) {
  EmergencyStopT s;
  s.scope = scope;
  s.layer = layer;
  s.seed = seed;
  s.reason = std::move(reason);
  return command(target, std::move(s), opts);
}

CommandT request_snapshot(CommandTarget target, std::vector<std::uint32_t> layers, std::string reply_topic,
                          CommandOptions opts) {
  RequestSnapshotT r;
  r.layers = std::move(layers);
  r.reply_topic = std::move(reply_topic);
  return command(target, std::move(r), opts);
}

CommandT shutdown(CommandTarget target, std::string reason, std::uint32_t grace_ms, CommandOptions opts) {
  ShutdownT s;
  s.reason = std::move(reason);
  s.grace_ms = grace_ms;
  return command(target, std::move(s), opts);
}

SeedOutcomeT seed_outcome(std::uint32_t seed, Status status, SeedState from, SeedState to, std::string error) {
  SeedOutcomeT o;
  o.seed = seed;
  o.status = status;
  o.from = from;
  o.to = to;
  o.error = std::move(error);
  return o;
}

CommandResultT command_result(Status status, std::int32_t rank, std::string error, std::vector<SeedOutcomeT> outcomes,
                              std::uint64_t execution_ns, std::int64_t applied_at_step) {
  CommandResultT r;
  r.status = status;
  r.rank = rank;
  r.error = std::move(error);
  for (auto& o : outcomes) r.outcomes.push_back(std::make_unique<SeedOutcomeT>(std::move(o)));
  r.execution_ns = execution_ns;
  r.applied_at_step = applied_at_step;
  return r;
}

EventT state_transition(std::uint32_t layer, std::uint64_t step, std::uint32_t seed, SeedState from, SeedState to,
                        std::string reason, std::string triggered_by, MsgId command_id) {
  StateTransitionT t;
  t.seed = seed;
  t.from = from;
  t.to = to;
  t.reason = std::move(reason);
  t.triggered_by = std::move(triggered_by);
  t.command_id = std::make_unique<MsgId>(command_id);
  return event(layer, step, std::move(t));
}

EventT anomaly_alert(std::uint32_t layer, std::uint64_t step, std::uint32_t seed, std::string metric, double value,
                     double expected_low, double expected_high, Severity severity, std::string detector, double score) {
  AnomalyAlertT a;
  a.seed = seed;
  a.metric = std::move(metric);
  a.value = value;
  a.expected_low = expected_low;
  a.expected_high = expected_high;
  a.severity = severity;
  a.detector = std::move(detector);
  a.score = score;
  return event(layer, step, std::move(a));
}

EventT decision(std::uint32_t layer, std::uint64_t step, DecisionFields d) {
  DecisionT t;
  t.policy = std::move(d.policy);
  t.action = d.action;
  t.target = d.target;
  t.seeds = std::move(d.seeds);
  t.reason = std::move(d.reason);
  t.command_id = std::make_unique<MsgId>(d.command_id);
  t.applied = std::move(d.applied);
  t.rejected = std::move(d.rejected);
  t.status = d.status;
  t.failure = std::move(d.failure);
  t.latency_ns = d.latency_ns;
  return event(layer, step, std::move(t));
}

EventT rank_joined(std::int32_t rank, std::int32_t world_size, std::string host, std::uint32_t pid,
                   std::vector<std::uint32_t> layers) {
  RankJoinedT j;
  j.rank = rank;
  j.world_size = world_size;
  j.host = std::move(host);
  j.pid = pid;
  j.layers = std::move(layers);
  return event(0, 0, std::move(j));
}

EventT rank_lost(std::int32_t rank, std::uint64_t last_heartbeat_ns, std::uint32_t missed, std::string reason) {
  RankLostT l;
  l.rank = rank;
  l.last_heartbeat_ns = last_heartbeat_ns;
  l.missed_heartbeats = missed;
  l.reason = std::move(reason);
  return event(0, 0, std::move(l));
}

EventT command_failed(MsgId command_id, std::int32_t target_rank, FailureReason reason, std::string detail,
                      std::uint32_t attempts, bool dead_lettered) {
  CommandFailedT f;
  f.command_id = std::make_unique<MsgId>(command_id);
  f.target_rank = target_rank;
  f.reason = reason;
  f.detail = std::move(detail);
  f.attempts = attempts;
  f.dead_lettered = dead_lettered;
  return event(0, 0, std::move(f));
}

EventT checkpoint(std::uint64_t step, std::string path, std::uint64_t digest, std::uint64_t bytes) {
  CheckpointT c;
  c.path = std::move(path);
  c.digest = digest;
  c.bytes = bytes;
  return event(0, step, std::move(c));
}

HeartbeatT heartbeat(std::uint64_t step, std::uint32_t interval_ms, std::uint64_t uptime_ns,
                     std::uint32_t pending_commands, std::uint64_t telemetry_dropped, std::vector<std::uint32_t> layers,
                     std::string command_endpoint, std::int32_t world_size) {
  HeartbeatT h;
  h.step = step;
  h.interval_ms = interval_ms;
  h.uptime_ns = uptime_ns;
  h.pending_commands = pending_commands;
  h.telemetry_dropped = telemetry_dropped;
  h.layers = std::move(layers);
  h.command_endpoint = std::move(command_endpoint);
  h.world_size = world_size;
  return h;
}

LayerStateT layer_state(std::uint32_t layer, std::int32_t rank, std::uint64_t step, std::vector<SeedStatus> seeds) {
  LayerStateT l;
  l.layer = layer;
  l.rank = rank;
  l.step = step;
  l.seeds = std::move(seeds);
  return l;
}

StateSnapshotT state_snapshot(std::uint64_t snapshot_sequence, std::vector<LayerStateT> layers, std::uint32_t part,
                              std::uint32_t parts) {
  StateSnapshotT s;
  s.snapshot_sequence = snapshot_sequence;
  s.part = part;
  s.parts = parts;
  for (auto& l : layers) s.layers.push_back(std::make_unique<LayerStateT>(std::move(l)));
  return s;
}

}  // namespace esper::wire
