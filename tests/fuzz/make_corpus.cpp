// Writes the seed inputs of every fuzz target (tests/fuzz/corpus/<target>/seed-*): valid messages
// made by the project's own builders and encoder, one file per case, so that the fuzzers start
// from frames the fabric really sends and the replays test them on every build.
//
//   build/<preset>/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
//
// Deterministic: running it again rewrites the same bytes (commit what changed when the schema or
// the builders change). Inputs the fuzzers found are kept beside these under their own names.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fabric/framing.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"
#include "wire/random_messages.hpp"

namespace fs = std::filesystem;
using namespace esper::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

fs::path g_root;
std::size_t g_files = 0;

// corpus/<target>/seed-<name>, or exactly <name> for an edge case (`named`).
void write(const std::string& target, const std::string& name, const Bytes& bytes, bool named = false) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / (named ? name : "seed-" + name), std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_corpus: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
  ++g_files;
}

template <class T>
Bytes frame(Encoder& enc, const T& body, std::uint64_t sequence = 0, std::uint64_t seq_id = 1) {
  Header h;
  h.msg_id = MsgId(0x0100000012345678ULL, seq_id);
  h.sequence = sequence;
  h.lamport = seq_id;
  h.timestamp_ns = 1'764'547'200'000'000'000ULL + seq_id;  // 2025-12-01
  const auto f = enc.encode(h, body);
  return {f.begin(), f.end()};
}

// A sequence input (tests/fuzz/fuzz_support.hpp, Frames): [control][u16 length][bytes] per frame.
class Sequence {
 public:
  Sequence& add(const Bytes& f, std::uint8_t control = 0) {
    if (f.size() > 0xffff) {
      std::fprintf(stderr, "make_corpus: a frame of %zu bytes does not fit a record\n", f.size());
      std::exit(1);
    }
    bytes_.push_back(control);
    bytes_.push_back(static_cast<std::uint8_t>(f.size() & 0xff));
    bytes_.push_back(static_cast<std::uint8_t>(f.size() >> 8));
    bytes_.insert(bytes_.end(), f.begin(), f.end());
    return *this;
  }
  [[nodiscard]] const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

SetBlueprintT blueprint(std::uint32_t seed, GraftingStrategy strategy) {
  SetBlueprintT b;
  b.layer = 0;
  b.seed = seed;
  b.kind = BlueprintKind::LOW_RANK;
  b.rank = 2;
  b.grafting = strategy;
  b.ramp_steps = 4;
  b.drift_threshold = 0.05f;
  b.learning_rate = 0.005f;
  for (const auto& [name, value] : {std::pair{"gain_min", 0.5}, {"gain_max", 2.0}, {"loss_tolerance", 0.01}}) {
    auto p = std::make_unique<ParamT>();
    p->name = name;
    p->value = value;
    b.params.push_back(std::move(p));
  }
  return b;
}

std::vector<SeedMetrics> records(std::uint64_t step, std::uint32_t seeds, SeedState state, float loss) {
  std::vector<SeedMetrics> out;
  for (std::uint32_t s = 0; s < seeds; ++s) {
    const auto f = static_cast<float>(s);
    out.emplace_back(step, s, static_cast<std::uint32_t>(step), 0.1f * f, 1.0f, 0.0f, loss + 0.01f * f,
                     loss * 0.8f, 0.2f + 0.01f * f, state >= SeedState::GRAFTING ? 0.5f : 0.0f, 0.97f, state,
                     std::uint8_t{0}, std::uint16_t{0});
  }
  return out;
}

TelemetryBatchT telemetry(std::uint32_t layer, std::int32_t rank, const std::vector<SeedMetrics>& seeds,
                          std::uint64_t step) {
  TelemetryBatchT t;
  t.layer = layer;
  t.rank = rank;
  t.window_start_ns = step * 1000;
  t.window_end_ns = step * 1000 + 999;
  t.seeds = seeds;
  t.layers.emplace_back(step, 1'200'000, 5000.0f, 0.42f);
  return t;
}

std::vector<SeedStatus> statuses(std::uint32_t n, SeedState state) {
  std::vector<SeedStatus> v;
  for (std::uint32_t s = 0; s < n; ++s) v.emplace_back(s, state, SeedState::DORMANT, 0, 3 * s, 0, 0.0f);
  return v;
}

void envelope_seeds() {
  Encoder enc(SourceInfo{1, Role::RANK, "job-7", "node0", 4242});
  Encoder plain(SourceInfo{-1, Role::CONTROLLER, "job-7", "node0", 4243}, EncodeOptions{{.enabled = false}, {}});
  const auto t = to_layer(0);
  write("envelope", "command-transition",
        frame(enc, transition_seeds(t, 0, seed_ids({1, 4, 7}), SeedState::GERMINATED, "wake", false)));
  SeedSetT mixed = seed_ids({2, 9});
  mixed.ranges.emplace_back(4, 6);
  mixed.ranges.emplace_back(30, 20);  // first > last: selects nothing
  write("envelope", "command-transition-ranges",
        frame(enc, transition_seeds(to_rank(1), 0, std::move(mixed), SeedState::TRAINING, "train", true,
                                    {.timeout_ms = 250, .apply_at_step = 120})));
  write("envelope", "command-transition-all",
        frame(enc, transition_seeds(to_all(), 1, all_seeds(), SeedState::CULLED, "cull", false)));
  write("envelope", "command-set-blueprint",
        frame(enc, set_blueprint(to_rank(0), blueprint(3, GraftingStrategy::ADAPTIVE))));
  std::vector<CommandT> inner;
  inner.push_back(transition_seeds(t, 0, seed_range(0, 3), SeedState::GERMINATED, "a", false));
  inner.push_back(set_blueprint(t, blueprint(5, GraftingStrategy::DRIFT_CONTROLLED)));
  std::vector<CommandT> nested;
  nested.push_back(shutdown(t, "inner", 10));
  inner.push_back(batch(t, std::move(nested), false, true));
  write("envelope", "command-batch", frame(enc, batch(t, std::move(inner), true, false)));
  write("envelope", "command-emergency-stop",
        frame(enc, emergency_stop(to_all(), StopScope::SEED, 0, 3, "loss exploded")));
  write("envelope", "command-request-snapshot", frame(enc, request_snapshot(to_all(), {0, 1}, "snap/1")));
  write("envelope", "command-shutdown", frame(enc, shutdown(to_all(), "done", 30000)));

  std::vector<SeedOutcomeT> outcomes;
  outcomes.push_back(seed_outcome(1, Status::OK, SeedState::DORMANT, SeedState::GERMINATED));
  outcomes.push_back(seed_outcome(4, Status::REJECTED, SeedState::TRAINING, SeedState::GERMINATED,
                                  "table: TRAINING -> GERMINATED is not a transition"));
  write("envelope", "result", frame(enc, command_result(Status::OK, 1, "", std::move(outcomes), 53'000, 120)));
  write("envelope", "result-rejected", frame(plain, command_result(Status::REJECTED, 0, "layer 9 does not exist")));

  write("envelope", "telemetry-inline", frame(plain, telemetry(0, 1, records(10, 4, SeedState::TRAINING, 0.5f), 10)));
  // Above the compression threshold: packed, XOR-shuffled by seed (lag 1) and by step (lag = seeds).
  write("envelope", "telemetry-packed", frame(enc, telemetry(0, 1, records(20, 48, SeedState::TRAINING, 0.5f), 20)));
  std::vector<SeedMetrics> by_step;
  for (std::uint64_t step = 30; step < 36; ++step) {
    const auto r = records(step, 8, SeedState::GRAFTING, 0.4f);
    by_step.insert(by_step.end(), r.begin(), r.end());
  }
  write("envelope", "telemetry-packed-by-step", frame(enc, telemetry(1, 2, by_step, 35)));
  Encoder lossy(SourceInfo{2, Role::RANK, "job-7", "node1", 99}, EncodeOptions{{}, {.mantissa_bits = 10}});
  write("envelope", "telemetry-packed-lossy", frame(lossy, telemetry(0, 2, records(40, 40, SeedState::EVALUATING, 0.3f), 40)));

  write("envelope", "event-transition",
        frame(enc, state_transition(0, 120, 4, SeedState::DORMANT, SeedState::GERMINATED, "wake", "policy:balanced",
                                    MsgId(7, 9))));
  write("envelope", "event-anomaly",
        frame(enc, anomaly_alert(0, 130, 4, "task_loss", 9.5, 0.1, 0.9, Severity::ERROR, "zscore", 7.2)));
  write("envelope", "event-rank-joined", frame(enc, rank_joined(3, 4, "node3", 777, {0, 1})));
  write("envelope", "event-rank-lost", frame(enc, rank_lost(3, 1'000'000, 5, "no heartbeat")));
  write("envelope", "event-command-failed",
        frame(enc, command_failed(MsgId(7, 10), 2, FailureReason::TIMEOUT, "no result in 5000 ms", 3, true)));
  write("envelope", "event-checkpoint", frame(enc, checkpoint(500, "/tmp/ckpt-500", 0xabcdef, 1 << 20)));
  write("envelope", "event-decision",
        frame(enc, decision(0, 140, {"balanced", DecisionAction::ADVANCE, SeedState::TRAINING, {1, 4}, "train",
                                     MsgId(7, 11), {1}, {4}, Status::REJECTED, "4: too early", 2'500'000})));
  write("envelope", "heartbeat", frame(enc, heartbeat(120, 100, 9'000'000, 2, 0, {0, 1}, "tcp://0.0.0.0:6001", 4)));
  std::vector<LayerStateT> layers;
  layers.push_back(layer_state(0, 1, 120, statuses(6, SeedState::TRAINING)));
  layers.push_back(layer_state(1, 1, 120, statuses(3, SeedState::FOSSILIZED)));
  write("envelope", "snapshot", frame(enc, state_snapshot(17, std::move(layers), 0, 1)));
  RouteTableT routes;
  routes.version = 3;
  for (std::int32_t r = 0; r < 2; ++r) {
    auto route = std::make_unique<RankRouteT>();
    route->rank = r;
    route->layers = {0, 1};
    route->command_endpoint = "ipc:///tmp/esper-rank-" + std::to_string(r);
    routes.ranks.push_back(std::move(route));
  }
  write("envelope", "route-table", frame(enc, routes));
  CommandDispatchT sent;
  sent.command = std::make_unique<MsgId>(7, 12);
  sent.ranks = {0, 3};
  write("envelope", "dispatch", frame(enc, sent));
  CommandDispatchT refused;
  refused.command = std::make_unique<MsgId>(7, 13);
  refused.reason = DispatchReason::NO_RANK_HOLDS_LAYER;
  refused.detail = "no connected rank holds layer 9";
  write("envelope", "dispatch-refused", frame(enc, refused));

  // Random messages of every kind, as the wire property test makes them.
  testing::RandomMessages rnd(20261201);
  for (int i = 0; i < 12; ++i) {
    Encoder renc(rnd.source(), EncodeOptions{{.enabled = rnd.coin(), .threshold_bytes = rnd.u32(2048)}, {}});
    write("envelope", "random-" + std::to_string(i), rnd.any_frame(renc));
  }
}

void job_state_seeds() {
  Encoder broker(SourceInfo{-1, Role::BROKER, "job-7", "node0", 1});
  Encoder rank1(SourceInfo{1, Role::RANK, "job-7", "node1", 2});
  std::vector<LayerStateT> layers;
  layers.push_back(layer_state(0, 1, 100, statuses(4, SeedState::DORMANT)));
  layers.push_back(layer_state(1, 2, 100, statuses(2, SeedState::TRAINING)));
  Sequence late_joiner;
  late_joiner.add(frame(broker, state_snapshot(5, std::move(layers))));
  for (std::uint64_t seq = 6; seq < 10; ++seq) {
    late_joiner.add(frame(rank1, state_transition(0, 100 + seq, static_cast<std::uint32_t>(seq % 4), SeedState::DORMANT,
                                                  SeedState::GERMINATED, "wake", "policy:balanced"),
                          seq, seq));
  }
  late_joiner.add(frame(rank1, state_transition(0, 109, 1, SeedState::DORMANT, SeedState::GERMINATED, "dup", "command"),
                        8, 8));  // a duplicate
  late_joiner.add(frame(rank1, rank_joined(2, 4, "node2", 3, {1}), 10, 10));
  write("job_state", "late-joiner", late_joiner.bytes());

  Sequence lifecycle;
  const SeedState path[] = {SeedState::DORMANT,       SeedState::GERMINATED, SeedState::TRAINING,
                            SeedState::GRAFTING,      SeedState::STABILIZATION, SeedState::EVALUATING,
                            SeedState::FINE_TUNING,   SeedState::FOSSILIZED};
  for (std::uint64_t i = 1; i < std::size(path); ++i) {
    lifecycle.add(frame(rank1, state_transition(1, 10 * i, 2, path[i - 1], path[i], "advance", "policy:balanced"), i, i));
  }
  std::vector<LayerStateT> later;
  later.push_back(layer_state(1, 1, 200, statuses(3, SeedState::CULLED)));
  lifecycle.add(frame(broker, state_snapshot(20, std::move(later))));
  lifecycle.add(frame(rank1, state_transition(1, 210, 0, SeedState::CULLED, SeedState::DORMANT, "reset", "policy"), 21, 21));
  write("job_state", "lifecycle-then-snapshot", lifecycle.bytes());

  Sequence gaps;
  gaps.add(frame(rank1, state_transition(0, 1, 0, SeedState::DORMANT, SeedState::GERMINATED, "", ""), 3, 3));
  gaps.add(frame(rank1, state_transition(0, 2, 0, SeedState::GERMINATED, SeedState::CANCELLED, "", ""), 9, 4));
  gaps.add(frame(rank1, heartbeat(2, 100, 0, 0, 0, {0}), 10, 5));
  gaps.add(frame(rank1, anomaly_alert(0, 2, 0, "grad_norm", 1e9, 0, 1, Severity::CRITICAL, "zscore", 1e9), 11, 6));
  write("job_state", "gaps-and-other-kinds", gaps.bytes());
}

// Publications as the subscriber target takes them (fuzz_subscriber.cpp): triples [topic][meta]
// [envelope], the topic record's control byte saying where each goes (1: the event socket; 2: an
// entry of the next replay reply; 4: that reply says "too old").
Bytes meta(std::uint64_t sequence, std::uint32_t records = 0, std::uint64_t records_total = 0, std::uint64_t epoch = 0) {
  const auto m = esper::fabric::meta_bytes(
      esper::fabric::Meta{.sequence = sequence, .records = records, .records_total = records_total, .epoch = epoch});
  return {m.begin(), m.end()};
}
Bytes text(const std::string& s) { return {s.begin(), s.end()}; }

void subscriber_seeds() {
  Encoder broker(SourceInfo{-1, Role::BROKER, "job-7", "node0", 1});
  Encoder rank1(SourceInfo{1, Role::RANK, "job-7", "node1", 2});
  const auto event = [&](std::uint64_t seq, std::uint32_t seed) {
    return frame(rank1, state_transition(0, 100 + seq, seed, SeedState::DORMANT, SeedState::GERMINATED, "wake", "policy"), 0, seq);
  };
  const auto batch = [&](std::uint64_t seq, std::uint32_t n) {
    return frame(rank1, telemetry(0, 1, records(seq, n, SeedState::TRAINING, 0.5f), seq), seq, 100 + seq);
  };
  // Telemetry with a batch missing (sequence 3) and records dropped upstream (the totals leap).
  Sequence tel;
  tel.add(text("tel/0"), 0).add(meta(1, 4, 4)).add(batch(1, 4));
  tel.add(text("tel/0"), 0).add(meta(2, 4, 8)).add(batch(2, 4));
  tel.add(text("tel/0"), 0).add(meta(4, 4, 20)).add(batch(4, 4));
  tel.add(text("tel/0"), 0).add(meta(5, 3, 23)).add(batch(5, 4));  // the meta miscounts the batch
  write("subscriber", "telemetry-drops", tel.bytes());
  // Events 1, 2, then 5: 3 and 4 are replayed, then 6 follows.
  Sequence gap;
  gap.add(text("evt/0"), 1).add(meta(1)).add(event(1, 0));
  gap.add(text("evt/0"), 1).add(meta(2)).add(event(2, 1));
  gap.add(text("evt/0"), 2).add(meta(3)).add(event(3, 2));
  gap.add(text("evt/0"), 2).add(meta(4)).add(event(4, 3));
  gap.add(text("evt/0"), 1).add(meta(5)).add(event(5, 0));
  gap.add(text("evt/0"), 1).add(meta(6)).add(event(6, 1));
  gap.add(text("evt/0"), 1).add(meta(4)).add(event(4, 3));  // a duplicate
  write("subscriber", "events-replayed", gap.bytes());
  // A broker restart: events 1 and 2 of one epoch, then 1 and 3 of another (2 of the new epoch
  // replayed), and a version-1 meta (24 bytes, no epoch) after it.
  Sequence restart;
  restart.add(text("evt/0"), 1).add(meta(1, 0, 0, 0x5d0e93a1c47b2f68ull)).add(event(1, 0));
  restart.add(text("evt/0"), 1).add(meta(2, 0, 0, 0x5d0e93a1c47b2f68ull)).add(event(2, 1));
  restart.add(text("evt/0"), 1).add(meta(1, 0, 0, 0x08ba518e32ed91e8ull)).add(event(1, 2));
  restart.add(text("evt/0"), 2).add(meta(2, 0, 0, 0x08ba518e32ed91e8ull)).add(event(2, 3));
  restart.add(text("evt/0"), 1).add(meta(3, 0, 0, 0x08ba518e32ed91e8ull)).add(event(3, 0));
  auto v1 = meta(4);
  v1.resize(esper::fabric::kMetaSizeV1);
  v1[0] = 1;
  restart.add(text("evt/0"), 1).add(v1).add(event(4, 1));
  write("subscriber", "broker-restart", restart.bytes());
  // A gap the broker no longer holds: the state is fetched anew.
  Sequence old;
  old.add(text("evt/0"), 1).add(meta(1)).add(event(1, 0));
  old.add(text("evt/0"), 6).add(meta(2)).add(event(2, 1));
  old.add(text("evt/0"), 1).add(meta(9)).add(event(9, 0));
  write("subscriber", "events-too-old", old.bytes());
  // Frames a hostile peer could send: metas of the old 16-byte layout, another version, a total
  // below the records; a replay with the wrong sequence; events on the telemetry socket; garbage.
  Sequence bad;
  Bytes sixteen = meta(7, 1, 1);
  sixteen.resize(16);
  Bytes version = meta(7, 1, 1);
  version[0] = 9;
  bad.add(text("tel/0"), 0).add(sixteen).add(batch(7, 1));
  bad.add(text("tel/0"), 0).add(version).add(batch(7, 1));
  bad.add(text("tel/0"), 0).add(meta(7, 5, 4)).add(batch(7, 5));
  bad.add(text("evt/0"), 0).add(meta(20)).add(event(20, 0));
  bad.add(text("evt/0"), 1).add(meta(30)).add(text("not an envelope"));
  bad.add(text("evt/0"), 2).add(meta(99)).add(event(99, 0));
  bad.add(text("evt/0"), 1).add(meta(40)).add(frame(broker, state_snapshot(40, {})));
  write("subscriber", "hostile-frames", bad.bytes());
}

void controller_seeds() {
  Encoder rank0(SourceInfo{0, Role::RANK, "job-7", "node0", 10});
  Encoder rank1(SourceInfo{1, Role::RANK, "job-7", "node1", 11});
  Encoder ctl(SourceInfo{0, Role::CONTROLLER, "job-7", "node0", 12});
  Encoder broker(SourceInfo{-1, Role::BROKER, "job-7", "node0", 13});

  Sequence job;
  job.add(frame(broker, rank_joined(0, 2, "node0", 10, {0, 1})), 2);
  job.add(frame(broker, rank_joined(1, 2, "node1", 11, {0, 1})), 2);
  for (std::uint64_t step = 10; step <= 60; step += 10) {
    const SeedState s = step < 30 ? SeedState::DORMANT : SeedState::TRAINING;
    job.add(frame(rank0, telemetry(0, 0, records(step, 6, s, 1.0f - 0.01f * static_cast<float>(step)), step)), 40);
    job.add(frame(rank1, telemetry(0, 1, records(step, 6, s, 1.0f - 0.01f * static_cast<float>(step)), step)), 2);
  }
  job.add(frame(rank0, state_transition(0, 25, 2, SeedState::DORMANT, SeedState::GERMINATED, "wake", "command")), 2);
  job.add(frame(ctl, decision(0, 25, {"balanced", DecisionAction::WAKE, SeedState::GERMINATED, {2}, "worst chunk",
                                      MsgId(3, 1), {2}, {}, Status::OK, "", 1'800'000})), 2);
  job.add(frame(ctl, anomaly_alert(0, 60, 3, "task_loss", 4.0, 0.2, 0.8, Severity::WARNING, "trend", 3.1)), 2);
  job.add(frame(broker, rank_lost(1, 55, 3, "no heartbeat")), 2);
  job.add(frame(rank0, command_failed(MsgId(3, 2), 1, FailureReason::RANK_LOST, "rank 1 lost", 1, false)), 2);
  write("controller", "job", job.bytes());

  Sequence joiner;
  std::vector<LayerStateT> layers;
  layers.push_back(layer_state(0, 0, 300, statuses(5, SeedState::GRAFTING)));
  layers.push_back(layer_state(1, 0, 300, statuses(2, SeedState::CULLED)));
  joiner.add(frame(broker, state_snapshot(40, std::move(layers))));
  joiner.add(frame(rank0, state_transition(0, 301, 1, SeedState::GRAFTING, SeedState::STABILIZATION, "ramp done",
                                           "policy:balanced")),
             1);  // already in the snapshot
  joiner.add(frame(rank0, telemetry(0, 0, records(305, 5, SeedState::STABILIZATION, 0.3f), 305)), 200);
  joiner.add(frame(rank0, checkpoint(310, "/ckpt", 1, 2)), 200);
  write("controller", "late-joiner", joiner.bytes());

  // A long run of one seed's loss: the anomaly detector's window fills and a spike alerts.
  Sequence spikes;
  for (std::uint64_t step = 1; step <= 30; ++step) {
    const float loss = step == 25 ? 50.0f : 1.0f + 0.001f * static_cast<float>(step % 3);
    spikes.add(frame(rank0, telemetry(0, 0, records(step, 2, SeedState::TRAINING, loss), step)), 20);
  }
  write("controller", "anomaly-window", spikes.bytes());

  // States past ROLLED_BACK in every place a state arrives (the view once indexed its per-state
  // counts with them): a telemetry record, a transition event, a snapshot entry.
  const auto bad = static_cast<SeedState>(200);
  Sequence hostile;
  hostile.add(frame(rank0, telemetry(0, 0, records(5, 3, bad, 0.5f), 5)), 2);
  hostile.add(frame(rank0, state_transition(0, 6, 1, SeedState::DORMANT, static_cast<SeedState>(11), "", "")), 2);
  std::vector<LayerStateT> bad_layers;
  bad_layers.push_back(layer_state(0, 0, 7, statuses(2, bad)));
  hostile.add(frame(broker, state_snapshot(9, std::move(bad_layers))), 2);
  hostile.add(frame(rank0, telemetry(0, 0, records(8, 3, SeedState::TRAINING, 0.5f), 8)), 2);
  write("controller", "states-out-of-range", hostile.bytes());
  write("job_state", "states-out-of-range", hostile.bytes());
}

void lifecycle_seeds() {
  Encoder ctl(SourceInfo{0, Role::CONTROLLER, "job-7", "node0", 12});
  const auto t = to_layer(0);
  // Every seed up the lifecycle, measured (control bit 3), forced past the minimum steps.
  Sequence grow;
  grow.add(frame(ctl, set_blueprint(t, blueprint(0, GraftingStrategy::ADAPTIVE))));
  grow.add(frame(ctl, set_blueprint(t, blueprint(1, GraftingStrategy::DRIFT_CONTROLLED))));
  const SeedState path[] = {SeedState::GERMINATED, SeedState::TRAINING,    SeedState::GRAFTING,
                            SeedState::STABILIZATION, SeedState::EVALUATING, SeedState::FINE_TUNING,
                            SeedState::FOSSILIZED};
  for (const auto to : path) {
    grow.add(frame(ctl, transition_seeds(t, 0, all_seeds(), to, "advance", true)), 8 | 7 | 0x20);
  }
  grow.add(frame(ctl, request_snapshot(t, {}, "snap")));
  write("lifecycle_commands", "grow-all", grow.bytes());

  Sequence cull;
  cull.add(frame(ctl, transition_seeds(t, 0, seed_range(0, 5), SeedState::GERMINATED, "wake", false)), 8 | 3);
  SeedSetT some = seed_ids({0, 2, 99});
  some.ranges.emplace_back(4, 0xffffffffu);
  cull.add(frame(ctl, transition_seeds(t, 0, std::move(some), SeedState::CANCELLED, "cancel", false)), 1);
  cull.add(frame(ctl, transition_seeds(t, 0, all_seeds(), SeedState::DORMANT, "reset", false)), 0);
  std::vector<CommandT> inner;
  inner.push_back(transition_seeds(t, 0, seed_ids({1}), SeedState::GERMINATED, "a", false));
  inner.push_back(transition_seeds(t, 0, seed_ids({1}), SeedState::TRAINING, "b", true));
  inner.push_back(set_blueprint(t, blueprint(7, GraftingStrategy::LINEAR)));
  inner.push_back(emergency_stop(t, StopScope::LAYER, 0, 0, "stop"));
  inner.push_back(shutdown(t, "bye"));
  cull.add(frame(ctl, batch(t, std::move(inner), true, true)), 8 | 2);
  cull.add(frame(ctl, request_snapshot(t, {0, 3}, "")), 0);
  write("lifecycle_commands", "cull-reset-batch", cull.bytes());

  Sequence bad;
  bad.add(frame(ctl, transition_seeds(t, 0, seed_ids({0}), static_cast<SeedState>(11), "no such state", true)));
  SetBlueprintT b = blueprint(2, static_cast<GraftingStrategy>(3));
  bad.add(frame(ctl, set_blueprint(t, std::move(b))));
  SetBlueprintT zero = blueprint(3, GraftingStrategy::ADAPTIVE);
  zero.params[0]->value = 0.0;  // gain_min 0: refused
  bad.add(frame(ctl, set_blueprint(t, std::move(zero))));
  write("lifecycle_commands", "invalid-values", bad.bytes());
}

void toml_seeds() {
  const auto text = [](const std::string& name, const std::string& s) { write("toml_config", name, Bytes(s.begin(), s.end())); };
  text("plain", "steps = 1200\nlayers = 2\npolicy = \"balanced\"\n");
  text("section", "# a job\n[run]\nchunks = 32\nrank = 8\ndevice = 'cpu'\ntransport = \"tcp\"\n");
  text("all-kinds",
       "layers = 3\nin = 128\nout = 128\nbatch = 64\nsteps = 5000\ndata-seed = 18446744073709551615\n"
       "broker = \"tcp://node0:5555\"\nschedule = \"random:300\"\nschedule-every = 10\nprogress-every = 50\n"
       "report = \"/tmp/r.json\"\nheartbeat-ms = 250\nconnect-timeout-ms = 20000\nno-fabric = true\n"
       "fail-at-step = 40\nfail-rank = 1\nfail-controller-join = false\nstep-sleep-ms = 0\n");
  text("bad-values", "layers = 0\ntransport = \"udp\"\n");
  text("unknown-option", "steps = 10\nlearning_rate = 0.1\n");
  text("config-itself", "config = \"other.toml\"\n");
  text("arrays-and-quotes", "policy = [\"a\", \"b\"]\nbroker = '''multi\nline'''\nreport = \"esc\\\"aped\"\n");
  text("nested-section", "[run.inner]\nsteps = 3\n[other]\nlayers = 2\n");
}

// A command as a client sends it now: timestamp 0 (the rank's receipt time starts its timeout).
template <class T>
Bytes fresh(Encoder& enc, const T& body, std::uint64_t seq_id, Priority priority = Priority::NORMAL,
            std::uint64_t timestamp_ns = 0) {
  Header h;
  h.msg_id = MsgId(0x0100000012345678ULL, seq_id);
  h.priority = priority;
  h.timestamp_ns = timestamp_ns;
  const auto f = enc.encode(h, body);
  return {f.begin(), f.end()};
}

std::vector<CommandT> every_command() {
  const auto t = to_layer(0);
  std::vector<CommandT> v;
  v.push_back(transition_seeds(to_rank(2), 0, seed_ids({1, 4}), SeedState::GERMINATED, "wake"));
  v.push_back(set_blueprint(t, blueprint(3, GraftingStrategy::ADAPTIVE)));
  std::vector<CommandT> inner;
  inner.push_back(transition_seeds(t, 0, seed_range(0, 3), SeedState::GERMINATED, "a"));
  inner.push_back(emergency_stop(t, StopScope::SEED, 0, 2, "b"));
  v.push_back(batch(t, std::move(inner), true, false));
  v.push_back(emergency_stop(to_all(), StopScope::LAYER, 1, 0, "loss exploded"));
  v.push_back(request_snapshot(to_all(), {0, 1}, "snap"));
  v.push_back(shutdown(to_all(), "done", 1000));
  return v;
}

void node_seeds() {
  Encoder ctl(SourceInfo{-1, Role::CONTROLLER, "job-7", "node0", 12}, EncodeOptions{{.enabled = false}, {}});
  // Every kind once from client a; a re-send of the first (cached answer), a copy sent twice
  // before its answer (control bit 1), a duplicate from client b (answered to b).
  Sequence kinds;
  std::uint64_t seq = 1;
  for (const auto& c : every_command()) kinds.add(fresh(ctl, c, seq++));
  kinds.add(fresh(ctl, every_command()[0], 1));
  kinds.add(fresh(ctl, shutdown(to_rank(2), "twice"), seq++), 2);
  kinds.add(fresh(ctl, every_command()[4], 5), 1);
  kinds.add(fresh(ctl, request_snapshot(to_rank(2), {}, ""), seq++, Priority::CRITICAL), 3);
  write("node", "every-kind-and-duplicates", kinds.bytes());

  // Rejected: seq 0, a msg_id reused for another command, values out of range, not a command.
  Sequence bad;
  Header zero;
  zero.msg_id = MsgId(0x0100000012345678ULL, 0);
  const auto z = ctl.encode(zero, shutdown(to_all(), "no id"));
  bad.add(Bytes(z.begin(), z.end()));
  bad.add(fresh(ctl, shutdown(to_all(), "first"), 40));
  bad.add(fresh(ctl, request_snapshot(to_all(), {}, "reused"), 40));
  bad.add(fresh(ctl, transition_seeds(to_all(), 0, all_seeds(), static_cast<SeedState>(200), "bad state"), 41));
  bad.add(fresh(ctl, shutdown(to_all(), "bad priority"), 42, static_cast<Priority>(9)));
  CommandT far = shutdown(to_all(), "bad target");
  far.target = std::make_unique<CommandTarget>(static_cast<TargetKind>(7), 0, 0);
  bad.add(fresh(ctl, far, 43));
  bad.add(fresh(ctl, command_result(Status::OK, 1), 44));
  bad.add(Bytes{0x01, 0x02, 0x03});
  bad.add(fresh(ctl, shutdown(to_all(), "expired", 1000, {.timeout_ms = 1}), 45, Priority::HIGH, 1'764'547'200'000'000'000ULL));
  write("node", "rejected", bad.bytes());
}

// Control bytes of the client target: type, aimed at command k, send the next command first.
std::uint8_t to_client(char type, int k = -1, bool send_next = false, bool malformed = false) {
  const std::uint8_t t = type == 'D' ? 0 : type == 'R' ? 1 : type == 'F' ? 2 : type == 'T' ? 3 : 0x80;  // 'K': bit 7
  return static_cast<std::uint8_t>(t | (k >= 0 ? 4 | (k << 3) : 0) | (send_next ? 0x20 : 0) | (malformed ? 0x40 : 0));
}

RouteTableT route_table(std::uint64_t version, std::vector<std::int32_t> ranks, const std::string& scheme) {
  RouteTableT routes;
  routes.version = version;
  for (const auto r : ranks) {
    auto route = std::make_unique<RankRouteT>();
    route->rank = r;
    route->layers = {static_cast<std::uint32_t>(r % 2), 1};
    route->command_endpoint = scheme + (scheme == "ipc" ? ":///tmp/esper-fuzz-rank-" : "://esper-fuzz-rank-") + std::to_string(r);
    routes.ranks.push_back(std::move(route));
  }
  return routes;
}

void client_seeds() {
  Encoder broker(SourceInfo{-1, Role::BROKER, "job-7", "node0", 1}, EncodeOptions{{.enabled = false}, {}});
  Encoder rank0(SourceInfo{0, Role::RANK, "job-7", "node0", 10}, EncodeOptions{{.enabled = false}, {}});
  Encoder rank1(SourceInfo{1, Role::RANK, "job-7", "node1", 11}, EncodeOptions{{.enabled = false}, {}});
  std::vector<SeedOutcomeT> outcomes;
  outcomes.push_back(seed_outcome(1, Status::OK, SeedState::DORMANT, SeedState::GERMINATED));
  const auto ok0 = frame(rank0, command_result(Status::OK, 0, "", std::move(outcomes), 1000, 7));
  const auto ok1 = frame(rank1, command_result(Status::OK, 1));
  CommandDispatchT to01;
  to01.command = std::make_unique<MsgId>(7, 1);
  to01.ranks = {0, 1};
  CommandDispatchT to0;
  to0.command = std::make_unique<MsgId>(7, 1);
  to0.ranks = {0};

  Sequence dispatched;  // command 0 through the broker: dispatched to ranks 0 and 1, both answer
  dispatched.add(frame(broker, to01), to_client('D', 0));
  dispatched.add(ok0, to_client('R', 0));
  dispatched.add(ok1, to_client('R', 0));
  dispatched.add(ok1, to_client('R', 0));  // a late duplicate
  write("client", "dispatch-then-results", dispatched.bytes());

  Sequence direct;  // a route table, then commands straight to the ranks, answered
  direct.add(frame(broker, route_table(3, {0, 1}, "ipc")), to_client('T'));
  direct.add(ok0, to_client('R', 1, true));
  direct.add(ok1, to_client('R', 1));
  direct.add(frame(broker, route_table(4, {0}, "ipc")), to_client('T', -1, true));  // rank 1 leaves: lost
  direct.add(frame(broker, route_table(5, {0, 1, 2}, "tcp")), to_client('T'));
  direct.add(ok0, to_client('R', 2, true));
  write("client", "routes-then-direct", direct.bytes());

  Sequence failures;
  failures.add(frame(broker, to0), to_client('D', 0));
  failures.add(frame(broker, command_failed(MsgId(7, 1), 0, FailureReason::RANK_LOST, "rank 0 lost", 1, false)),
               to_client('F', 0));
  CommandDispatchT refused;
  refused.command = std::make_unique<MsgId>(7, 2);
  refused.reason = DispatchReason::NO_SUCH_RANK;
  refused.detail = "no rank 0";
  failures.add(frame(broker, refused), to_client('D', 1, true));
  CommandDispatchT none;
  none.command = std::make_unique<MsgId>(7, 3);
  none.reason = DispatchReason::NO_RANK_HOLDS_LAYER;
  none.detail = "no connected rank holds layer 1";
  failures.add(frame(broker, none), to_client('D', 2, true));
  write("client", "failures", failures.bytes());

  // Keepalive answers: the broker's epoch, then another (it restarted): the client asks for routes
  // again, and a rank the new broker's first table lacks keeps its route; an epoch of 4 bytes and
  // one of 0 are rejected.
  const auto epoch = [](std::uint64_t e) {
    Bytes b(8);
    for (std::size_t i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(e >> (8 * i));
    return b;
  };
  Sequence restart;
  restart.add(frame(broker, route_table(3, {0, 1}, "ipc")), to_client('T'));
  restart.add(epoch(0x5d0e93a1c47b2f68ull), to_client('K'));
  restart.add(ok0, to_client('R', 1, true));
  restart.add(epoch(0x08ba518e32ed91e8ull), to_client('K', -1, false, true));  // restarted (a third frame ignored)
  restart.add(frame(broker, route_table(1, {0}, "ipc")), to_client('T', -1, true));  // rank 1 not back yet
  restart.add(Bytes{1, 2, 3, 4}, to_client('K'));
  restart.add(epoch(0), to_client('K'));
  write("client", "restart-keeps-routes", restart.bytes());

  Sequence hostile;  // values out of range everywhere, and a malformed message
  hostile.add(frame(broker, to0), to_client('D', 0));
  hostile.add(frame(rank0, command_result(static_cast<Status>(200), 0)), to_client('R', 0));
  RouteTableT bad_routes = route_table(9, {0, 1}, "ipc");
  bad_routes.ranks[1]->rank = -3;
  hostile.add(frame(broker, bad_routes), to_client('T'));
  CommandDispatchT odd;
  odd.command = std::make_unique<MsgId>(7, 2);
  odd.reason = static_cast<DispatchReason>(99);
  hostile.add(frame(broker, odd), to_client('D', 1, true));
  hostile.add(frame(broker, command_failed(MsgId(7, 2), 0, static_cast<FailureReason>(77), "?", 1, false)),
              to_client('F', 1));
  hostile.add(ok0, to_client('R', 1, false, true));
  hostile.add(frame(broker, route_table(0xffffffffffffffffULL, {0}, "ipc")), to_client('T'));
  hostile.add(ok1, to_client('D', 1));  // a result where a dispatch belongs
  write("client", "hostile-values", hostile.bytes());

  // A route table of version 2^64 - 1: the client stored version + 1, 0, which stands for "no
  // table yet", so has_routes() stayed false and every command went through the broker.
  Sequence wraps;
  wraps.add(frame(broker, route_table(0xffffffffffffffffULL, {0, 1}, "ipc")), to_client('T'));
  wraps.add(ok0, to_client('R', 0, true));
  write("client", "crash-route-version-wraps", wraps.bytes(), true);

  // Two tables of 512 ranks (max_direct_ranks) at different endpoints: while the second is read the
  // client holds 1024 rank sockets, past the ZeroMQ context's limit (1023); creating one threw
  // zmq::error_t "Too many open files" out of Client::poll.
  Sequence exhaust;
  std::vector<std::int32_t> many(512);
  for (std::int32_t r = 0; r < 512; ++r) many[static_cast<std::size_t>(r)] = r;
  exhaust.add(frame(broker, route_table(1, many, "ipc")), to_client('T'));
  RouteTableT moved = route_table(2, many, "ipc");
  for (auto& r : moved.ranks) r->command_endpoint += "-moved";
  exhaust.add(frame(broker, moved), to_client('T'));
  exhaust.add(ok0, to_client('R', 0, true));
  write("client", "crash-routes-exhaust-sockets", exhaust.bytes(), true);
}

Bytes plan_part(std::uint64_t step, std::int32_t rank, const std::vector<std::pair<PlanDecision, Bytes>>& entries) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<PlanEntry>> offsets;
  for (const auto& [d, bytes] : entries) offsets.push_back(CreatePlanEntry(fbb, d, fbb.CreateVector(bytes)));
  fbb.Finish(CreateStepPlan(fbb, step, rank, fbb.CreateVector(offsets)));
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

void step_plan_seeds() {
  Encoder ctl(SourceInfo{-1, Role::CONTROLLER, "job-7", "node0", 12}, EncodeOptions{{.enabled = false}, {}});
  constexpr std::uint64_t kStep = 7;  // tests/fuzz/fuzz_step_plan.cpp
  const auto cmds = every_command();
  const auto at = [&](std::size_t i, std::uint64_t seq, Priority p, std::uint64_t ts) { return fresh(ctl, cmds[i], seq, p, ts); };
  // Rank 0 and rank 1 hold copies of command 1 with different decisions: rank 0's counts.
  Sequence two;
  two.add(plan_part(kStep, 0, {{PlanDecision::APPLY, at(0, 1, Priority::NORMAL, 300)},
                               {PlanDecision::APPLY, at(1, 2, Priority::NORMAL, 200)},
                               {PlanDecision::STALE, at(5, 3, Priority::LOW, 100)}}));
  two.add(plan_part(kStep, 1, {{PlanDecision::TIMEOUT, at(1, 2, Priority::NORMAL, 200)},
                               {PlanDecision::APPLY, at(4, 4, Priority::CRITICAL, 400)},
                               {PlanDecision::APPLY, at(2, 5, Priority::HIGH, 400)}}));
  write("step_plan", "two-ranks-shared-copy", two.bytes());

  Sequence three;  // rank 0 sent nothing; rank 2 applies an emergency stop then transitions
  three.add(Bytes{}, 1);
  three.add(plan_part(kStep, 1, {{PlanDecision::APPLY, at(3, 10, Priority::HIGH, 50)},
                                 {PlanDecision::APPLY, at(0, 11, Priority::NORMAL, 50)}}));
  three.add(plan_part(kStep, 2, {{PlanDecision::APPLY, fresh(ctl, transition_seeds(to_all(), 1, all_seeds(), SeedState::GERMINATED, "all"), 12)},
                                 {PlanDecision::TIMEOUT, at(5, 13, Priority::NORMAL, 1)},
                                 {PlanDecision::APPLY, fresh(ctl, emergency_stop(to_all(), StopScope::JOB, 0, 0, "job"), 14)}}));
  write("step_plan", "a-silent-rank-and-a-stop", three.bytes());

  Sequence wrong;  // a part stamped for another step: the plan is not applied
  wrong.add(plan_part(kStep + 1, 0, {{PlanDecision::APPLY, at(0, 20, Priority::NORMAL, 1)}}));
  write("step_plan", "wrong-step", wrong.bytes());
  Sequence odd;  // a part whose entry holds a result, not a command
  odd.add(plan_part(kStep, 0, {{PlanDecision::APPLY, fresh(ctl, command_result(Status::OK, 0), 21)}}));
  write("step_plan", "not-a-command", odd.bytes());
}

// Hand-made hostile frames that the fuzzers' input sizes cannot reach.
void edge_cases() {
  // A SetBlueprint whose 90,000 params are one Param table referenced 90,000 times, its name a
  // 100 kB string: a 0.5 MB frame that verifies (90,000 table visits < max_tables) and that the
  // object API unpacks into 90,000 copies of the name, 9 GB. A rank unpacks every SetBlueprint
  // (runtime/rank/job_commands.cpp), a client every result (runtime/fabric/client.cpp).
  flatbuffers::FlatBufferBuilder fbb;
  const auto name = fbb.CreateString(std::string(100'000, 'g'));
  const auto param = CreateParam(fbb, name, 1.0);
  const std::vector<flatbuffers::Offset<Param>> refs(90'000, param);
  const auto params = fbb.CreateVector(refs);
  const auto bp = CreateSetBlueprint(fbb, 0, 0, BlueprintKind::LOW_RANK, 1, GraftingStrategy::LINEAR, 4, 0.0f, 0.0f,
                                     params);
  const CommandTarget target = to_rank(0);
  const auto cmd = CreateCommand(fbb, &target, 5000, -1, 0, CommandBody::SetBlueprint, bp.Union());
  const SchemaVersion version(kSchemaMajor, kSchemaMinor);
  const MsgId id(1, 1);
  fbb.Finish(CreateEnvelope(fbb, &version, &id, nullptr, 0, Priority::NORMAL, 0, 0, 0, 0, nullptr, Body::Command,
                            cmd.Union()),
             kFileIdentifier);
  write("envelope", "crash-unpack-amplification-shared-param",
        Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()), true);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir, e.g. tests/fuzz/corpus>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  envelope_seeds();
  job_state_seeds();
  subscriber_seeds();
  controller_seeds();
  lifecycle_seeds();
  toml_seeds();
  node_seeds();
  client_seeds();
  step_plan_seeds();
  edge_cases();
  std::printf("make_corpus: wrote %zu seed inputs under %s\n", g_files, g_root.c_str());
  return 0;
}
