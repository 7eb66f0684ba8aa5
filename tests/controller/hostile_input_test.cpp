// What the controller's population view, esper top's model and the fabric's job state do with
// hostile values (docs/hostile-input.md): a state of 200, a seed past its layer, a layer they do
// not watch, a source rank that is no rank, NaN and infinite metrics. Each is rejected and counted,
// or — NaN and +inf losses, which real training produces — kept and handled; none indexes past an
// array (run under ASan and UBSan in CI).
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <limits>

#include "support/hostile_values.hpp"
#include "controller/top_model.hpp"
#include "controller/view.hpp"
#include "fabric/job_state.hpp"
#include "wire/builders.hpp"

namespace esper::controller {
namespace {

using esper::testing::bad;
using esper::testing::kInf;
using esper::testing::kNaN;
using esper::testing::Packed;
using wire::SeedState;
using namespace std::chrono_literals;
using Batch = Packed<wire::TelemetryBatch>;
using Ev = Packed<wire::Event>;
using Snap = Packed<wire::StateSnapshot>;

wire::SeedMetrics record(std::uint64_t step, std::uint32_t seed, SeedState state, float loss = 0.5f,
                         float shadow = 0.4f) {
  return wire::SeedMetrics(step, seed, 3, 0.0f, 1.0f, 0.0f, loss, shadow, 0.1f, 0.0f, 0.9f, state, 0, 0);
}

wire::TelemetryBatchT batch(std::uint32_t layer, std::vector<wire::SeedMetrics> seeds) {
  wire::TelemetryBatchT t;
  t.layer = layer;
  t.rank = 0;
  t.seeds = std::move(seeds);
  return t;
}

wire::EventT transition(std::uint32_t layer, std::uint32_t seed, SeedState from, SeedState to, std::uint64_t step = 20) {
  return wire::state_transition(layer, step, seed, from, to, "test", "test");
}

std::uint32_t total(const std::array<std::uint32_t, kStates>& counts) {
  std::uint32_t n = 0;
  for (auto c : counts) n += c;
  return n;
}

// ---- the fabric's job state

TEST(HostileJobState, AnEventOutOfRangeTakesItsSequenceButChangesNoSeed) {
  fabric::JobState state;
  EXPECT_EQ(state.apply(Ev(transition(0, 1, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 1), std::nullopt);
  const auto to = state.apply(Ev(transition(0, 2, SeedState::DORMANT, bad<SeedState>(200))).get(), 0, 2);
  ASSERT_TRUE(to);
  EXPECT_EQ(to->rfind("body.to: 200", 0), 0u) << *to;
  EXPECT_EQ(state.sequence(), 2u);
  const auto past = state.apply(Ev(transition(0, 70'000, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 3);
  ASSERT_TRUE(past);
  EXPECT_EQ(past->rfind("body.seed: 70000", 0), 0u) << *past;
  const auto rank = state.apply(Ev(transition(0, 3, SeedState::DORMANT, SeedState::GERMINATED)).get(), -7, 4);
  ASSERT_TRUE(rank);
  EXPECT_NE(rank->find("source rank: -7"), std::string::npos) << *rank;
  // A receiver that knows the job: a layer it does not host, a seed past the layer.
  const auto job = wire::Bounds::job(1, 8);
  EXPECT_TRUE(state.apply(Ev(transition(1, 1, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 5, job));
  EXPECT_TRUE(state.apply(Ev(transition(0, 8, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 6, job));
  EXPECT_EQ(state.sequence(), 6u);
  ASSERT_EQ(state.seeds().size(), 1u) << "only the sane transition is kept";
  EXPECT_EQ(state.seeds().begin()->second.state, SeedState::GERMINATED);
  // Events that are not transitions change no seed, whatever they hold.
  EXPECT_EQ(state.apply(Ev(wire::rank_lost(-5, 0, 0, "x")).get(), 0, 7), std::nullopt);
}

TEST(HostileJobState, ASnapshotsEntriesOutOfRangeAreSkippedAndTheRestLoaded) {
  using wire::SeedStatus;
  const auto seed = [](std::uint32_t id, SeedState s, SeedState parent = SeedState::DORMANT) {
    return SeedStatus(id, s, parent, 0, 1, 0, 0.0f);
  };
  auto snap = wire::state_snapshot(
      9, {wire::layer_state(0, 0, 5, {seed(0, SeedState::TRAINING), seed(1, bad<SeedState>(200)), seed(2, SeedState::CULLED)}),
          wire::layer_state(1, -9, 5, {seed(0, SeedState::TRAINING), seed(1, SeedState::TRAINING)}),
          wire::layer_state(5000, 0, 5, {seed(0, SeedState::TRAINING)}),
          wire::layer_state(2, 0, 5, {seed(0, SeedState::DORMANT, bad<SeedState>(11)), seed(70'000, SeedState::DORMANT)})});
  fabric::JobState state;
  const auto skipped = state.load(Snap(snap).get());
  EXPECT_EQ(skipped.entries, 6u);
  ASSERT_TRUE(skipped.first);
  EXPECT_EQ(*skipped.first, "layers[0].seeds[1].state: 200 is not a SeedState (0..10)");
  EXPECT_EQ(state.sequence(), 9u);
  ASSERT_EQ(state.seeds().size(), 2u);
  EXPECT_TRUE(state.seeds().contains({0, 0}));
  EXPECT_TRUE(state.seeds().contains({0, 2}));
  // Narrower bounds: what the receiver does not host is skipped too.
  const auto narrow = state.load(Snap(snap).get(), wire::Bounds::job(1, 2));
  EXPECT_EQ(narrow.entries, 7u) << "and seed 2 is past a layer of 2 seeds";
  EXPECT_EQ(state.seeds().size(), 1u);
}

// ---- the controller's population view

TEST(HostileView, AStateOf200IsRejectedAndCountedNeverIndexed) {
  PopulationView view;
  EXPECT_EQ(view.on_telemetry(Batch(batch(0, {record(10, 0, SeedState::TRAINING), record(10, 1, bad<SeedState>(200))})).get()),
            0u);
  EXPECT_EQ(view.values_rejected(), 1u);
  EXPECT_TRUE(view.layers().empty()) << "a batch is rejected whole";
  EXPECT_EQ(view.telemetry_records(), 0u);
  EXPECT_FALSE(view.on_event(Ev(transition(0, 1, SeedState::DORMANT, bad<SeedState>(200))).get(), 0));
  EXPECT_FALSE(view.on_event(Ev(transition(0, 1, bad<SeedState>(11), SeedState::GERMINATED)).get(), 0));
  EXPECT_FALSE(view.set_state(0, 1, bad<SeedState>(255), 30));
  EXPECT_EQ(view.values_rejected(), 4u);
  EXPECT_TRUE(view.layers().empty());

  // Sane ones after them are taken as usual.
  EXPECT_EQ(view.on_telemetry(Batch(batch(0, {record(10, 0, SeedState::TRAINING), record(10, 1, SeedState::DORMANT)})).get()),
            2u);
  EXPECT_TRUE(view.on_event(Ev(transition(0, 1, SeedState::DORMANT, SeedState::GERMINATED, 11)).get(), 0));
  const auto counts = view.layer(0)->counts();
  EXPECT_EQ(counts[static_cast<std::size_t>(SeedState::TRAINING)], 1u);
  EXPECT_EQ(counts[static_cast<std::size_t>(SeedState::GERMINATED)], 1u);

  // Defence in depth: a state out of range that got into a LayerView anyway is counted nowhere.
  LayerView forged;
  forged.seeds[0].state = bad<SeedState>(200);
  forged.seeds[1].state = bad<SeedState>(11);
  forged.seeds[2].state = SeedState::FOSSILIZED;
  EXPECT_EQ(total(forged.counts()), 1u);
}

TEST(HostileView, SeedsPastTheLayerAndLayersNotWatchedAreRejected) {
  PopulationView any;  // sane bounds only
  EXPECT_EQ(any.on_telemetry(Batch(batch(0, {record(10, 70'000, SeedState::DORMANT)})).get()), 0u);
  EXPECT_EQ(any.on_telemetry(Batch(batch(4096, {record(10, 0, SeedState::DORMANT)})).get()), 0u);
  EXPECT_FALSE(any.on_event(Ev(transition(0, 0xFFFFFFFFu, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0));
  EXPECT_EQ(any.values_rejected(), 3u);
  EXPECT_TRUE(any.layers().empty()) << "no phantom seed or layer";

  PopulationView job(wire::Bounds::job(2, 8));
  EXPECT_EQ(job.on_telemetry(Batch(batch(1, {record(10, 7, SeedState::DORMANT)})).get()), 1u);
  EXPECT_EQ(job.on_telemetry(Batch(batch(1, {record(11, 8, SeedState::DORMANT)})).get()), 0u) << "past 8 seeds";
  EXPECT_EQ(job.on_telemetry(Batch(batch(2, {record(10, 0, SeedState::DORMANT)})).get()), 0u) << "layer 2 is not the job's";
  EXPECT_FALSE(job.on_event(Ev(transition(2, 0, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0));
  EXPECT_FALSE(job.on_event(Ev(transition(0, 8, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0));
  EXPECT_FALSE(job.set_state(0, 9, SeedState::GERMINATED, 30));
  EXPECT_FALSE(job.on_event(Ev(transition(0, 1, SeedState::DORMANT, SeedState::GERMINATED)).get(), -3)) << "source rank";
  EXPECT_EQ(job.values_rejected(), 6u);
  // A rank of the job announcing a layer the view does not watch: the layers it does watch only.
  EXPECT_TRUE(job.on_event(Ev(wire::rank_joined(3, 4, "node-a", 1, {0, 1, 5})).get(), -1));
  EXPECT_EQ(job.layers().size(), 2u);
  EXPECT_EQ(job.layer(5), nullptr);
  ASSERT_NE(job.layer(1), nullptr);
  EXPECT_EQ(job.layer(1)->seeds.size(), 1u);

  // A late joiner's state, loaded into a view that watches less: the rest is skipped and counted.
  fabric::JobState state;
  (void)state.apply(Ev(transition(0, 3, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 1);
  (void)state.apply(Ev(transition(0, 30, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 2);
  (void)state.apply(Ev(transition(7, 3, SeedState::DORMANT, SeedState::GERMINATED)).get(), 0, 3);
  PopulationView late(wire::Bounds::job(2, 8));
  late.load(state);
  EXPECT_EQ(late.values_rejected(), 2u);
  ASSERT_NE(late.layer(0), nullptr);
  EXPECT_EQ(late.layer(0)->seeds.size(), 1u);
  EXPECT_EQ(late.layer(7), nullptr);
}

TEST(HostileView, NaNAndInfiniteMetricsAreUnknownOrRejectedWhereTheyWouldDecide) {
  PopulationView view;
  // Real training produces NaN (unknown) and +inf (diverged) losses: kept, never chosen by a bound.
  auto t = batch(0, {record(10, 0, SeedState::TRAINING, kNaN, kNaN), record(10, 1, SeedState::TRAINING, kInf, 0.1f),
                     record(10, 2, SeedState::TRAINING, 0.5f, 0.25f)});
  EXPECT_EQ(view.on_telemetry(Batch(t).get()), 3u);
  EXPECT_EQ(view.values_rejected(), 0u);
  const auto* layer = view.layer(0);
  ASSERT_NE(layer, nullptr);
  EXPECT_TRUE(std::isnan(layer->seeds.at(0).shadow_gain()));
  EXPECT_TRUE(std::isnan(layer->seeds.at(1).shadow_gain())) << "(inf - 0.1) / inf";
  EXPECT_DOUBLE_EQ(layer->median_task_loss(), 0.5) << "over the finite losses only, +inf excluded";
  Selection gain;
  gain.bounds = {{Metric::ShadowGain, 0.1}};
  EXPECT_EQ(view.select(0, gain), (std::vector<std::uint32_t>{2})) << "a NaN metric fails its bound";

  // What would pass a guard on a lie is rejected: a negative shadow loss (a gain above 100%),
  // health or alpha past [0, 1], an infinite health.
  auto lie = batch(0, {record(11, 0, SeedState::TRAINING, 0.5f, -kInf)});
  EXPECT_EQ(view.on_telemetry(Batch(lie).get()), 0u);
  lie.seeds[0] = record(11, 0, SeedState::TRAINING, 0.5f, -0.5f);
  EXPECT_EQ(view.on_telemetry(Batch(lie).get()), 0u);
  lie.seeds[0] = record(11, 0, SeedState::FINE_TUNING);
  lie.seeds[0].mutate_health(kInf);
  EXPECT_EQ(view.on_telemetry(Batch(lie).get()), 0u);
  lie.seeds[0].mutate_health(0.9f);
  lie.seeds[0].mutate_alpha(1.5f);
  EXPECT_EQ(view.on_telemetry(Batch(lie).get()), 0u);
  EXPECT_EQ(view.values_rejected(), 4u);
  EXPECT_EQ(layer->seeds.at(0).state, SeedState::TRAINING) << "nothing of the lies was taken";
}

// ---- esper top's model

TEST(HostileTop, RejectedBatchesAndEventsAreCountedInTheHeaderAndShownNowhere) {
  const auto t0 = TopModel::Clock::time_point{} + 100s;
  TopModel model(TopOptions{.broker = "ipc:///tmp/b.cmd", .bounds = wire::Bounds::job(1, 8)});
  model.on_telemetry(Batch(batch(0, {record(10, 0, SeedState::TRAINING), record(10, 1, SeedState::DORMANT)})).get(), t0);
  model.on_telemetry(Batch(batch(0, {record(11, 1, bad<SeedState>(200))})).get(), t0);  // state 200
  model.on_telemetry(Batch(batch(0, {record(11, 8, SeedState::DORMANT)})).get(), t0);   // past the layer
  model.on_telemetry(Batch(batch(3, {record(11, 0, SeedState::DORMANT)})).get(), t0);   // not the job's layer
  model.on_event(Ev(transition(0, 1, SeedState::DORMANT, bad<SeedState>(200))).get(), 0);
  model.on_event(Ev(transition(0, 1, SeedState::DORMANT, bad<SeedState>(200))).get(), 0, /*in_state=*/true);
  EXPECT_EQ(model.values_rejected(), 5u);
  EXPECT_EQ(model.batches_seen(), 1u) << "rejected batches are not in the rate";
  EXPECT_EQ(model.events_seen(), 0u);
  EXPECT_TRUE(model.recent_events().empty());
  model.set_losses({.values_rejected = 2});
  const auto frame = render(model, RenderOptions{.width = 200, .now = t0 + 500ms});
  EXPECT_NE(frame.find("values rejected 7"), std::string::npos) << frame;
  EXPECT_NE(frame.find("layer 0 · 2 seeds"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("layer 3"), std::string::npos) << frame;
  EXPECT_NE(frame.find("  DORMANT 1 █ TRAINING 1 █"), std::string::npos) << frame;
}

TEST(HostileTop, NonFiniteMetricsShowAsUnknownAndWireTextCannotReachTheTerminal) {
  TopModel model(TopOptions{.broker = "tcp://evil\x1b[2J:1"});
  auto t = batch(0, {record(10, 0, SeedState::TRAINING, kNaN, kInf), record(10, 1, SeedState::GRAFTING, kInf, kNaN)});
  t.seeds[0].mutate_grad_norm(kNaN);
  t.seeds[1].mutate_grad_norm(-kInf);
  t.layers.push_back(wire::LayerMetrics(10, 5, kNaN, kInf));  // a diverged layer loss
  model.on_telemetry(Batch(t).get(), TopModel::Clock::now());
  model.on_event(Ev(wire::rank_joined(0, 1, "host\x1b]0;owned\x07\x9b" "31m", 42, {0})).get(), -1);
  model.on_event(Ev(wire::rank_lost(0, 0, 0, "gone\x1b[?1049l\r\nfake line \xc2\x9b" "2J")).get(), -1);
  model.on_event(Ev(transition(0, 1, SeedState::TRAINING, SeedState::GRAFTING)).get(), 0);
  EXPECT_EQ(model.values_rejected(), 0u);
  for (const bool color : {false, true}) {
    const auto frame = render(model, RenderOptions{.width = 120, .height = 40, .color = color});
    std::size_t escapes = 0;
    for (std::size_t p = frame.find('\x1b'); p != std::string::npos; p = frame.find('\x1b', p + 1)) {
      ++escapes;
      // Only the model's own colors: ESC [ digits m.
      const auto m = frame.find('m', p);
      ASSERT_NE(m, std::string::npos);
      for (std::size_t i = p + 2; i < m; ++i) EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(frame[i]))) << frame;
      EXPECT_EQ(frame[p + 1], '[');
    }
    if (!color) {
      EXPECT_EQ(escapes, 0u);
    }
    EXPECT_EQ(frame.find('\x07'), std::string::npos);
    EXPECT_EQ(frame.find('\r'), std::string::npos);
    EXPECT_EQ(frame.find("\xc2\x9b"), std::string::npos);
    EXPECT_NE(frame.find("rank 0 joined from host?"), std::string::npos) << frame;
    EXPECT_NE(frame.find("rank 0 lost: gone??fake line "), std::string::npos) << frame;
    EXPECT_NE(frame.find("broker tcp://evil:1"), std::string::npos) << frame;
  }
  const auto frame = render(model, RenderOptions{.width = 120});
  // Seed 0: loss NaN and shadow inf are both shown as unknown, as is the NaN gradient.
  EXPECT_NE(frame.find("     0 TRAINING"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("inf"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("nan"), std::string::npos) << frame;
}

}  // namespace
}  // namespace esper::controller
