// Fuzz target: the lifecycle's wire conversions (runtime/lifecycle/wire_convert.hpp) fed decoded
// commands, and a population of seeds that applies them. The input is a sequence of frames
// (fuzz_support.hpp); every Command frame is applied to one Population of kSeeds seeds, BatchCommand
// members in order. A frame's control byte: bits 0-2 are training steps (ticks) after the command,
// bit 3 gives every seed measurements that pass the guards (else none: guarded moves are refused),
// bits 4-7 the weight drift of those steps.
//
//  - TransitionSeeds: selection_from_wire on the flatbuffer and on its object-API copy must select
//    the same seeds (resolve() at several population sizes, contains() at a few ids); the
//    population applies it and reports one outcome per selected seed, each applied one in the
//    target state, none applied when the target is not a state; to_wire(report) keeps them all.
//  - SetBlueprint: grafting_from_wire over the population's grafting; when check_config accepts
//    it, the DORMANT seed it names takes it (set_grafting must not throw) and a ramp driven by it
//    stays within α ∈ [0, 1], progress ∈ [0, ramp_steps], with a positive finite gain.
//  - RequestSnapshot: the population's seeds as to_wire_status records in a StateSnapshot, encoded
//    and decoded: every record comes back with its seed's state.
// After every frame: every seed is in a valid state with α ∈ [0, 1] and the counts add up.
#include <cmath>
#include <vector>

#include "fuzz_support.hpp"
#include "lifecycle/grafting.hpp"
#include "lifecycle/population.hpp"
#include "lifecycle/wire_convert.hpp"
#include "wire/builders.hpp"
#include "wire/codec.hpp"

namespace esper::fuzz {
namespace {

using namespace esper::lifecycle;
constexpr std::uint32_t kSeeds = 8;

void check_selection(const wire::SeedSet* set) {
  const Selection flat = selection_from_wire(set);
  wire::SeedSetT object;
  if (set != nullptr) set->UnPackTo(&object);
  const Selection copy = selection_from_wire(object);
  FUZZ_CHECK(flat.selects_all() == copy.selects_all(), "the two conversions disagree on 'all'");
  for (const std::uint32_t size : {0u, 1u, kSeeds, 1000u}) {
    const auto a = flat.resolve(size);
    FUZZ_CHECK(a == copy.resolve(size), "the two conversions resolve to different seeds");
    FUZZ_CHECK(std::is_sorted(a.begin(), a.end()) && std::adjacent_find(a.begin(), a.end()) == a.end(),
               "resolve() is not sorted and unique");
    for (const auto id : a) FUZZ_CHECK(flat.contains(id), "resolve() names a seed contains() denies");
  }
  for (const std::uint32_t id : {0u, 3u, kSeeds, 0xffffffffu}) {
    FUZZ_CHECK(flat.contains(id) == copy.contains(id), "the two conversions disagree on contains()");
    FUZZ_CHECK(flat.contains(id) == wire::contains(set, id), "Selection and wire::contains disagree");
  }
}

void transition(Population& pop, const wire::TransitionSeeds& t, const std::vector<SeedMetrics>& metrics) {
  check_selection(t.seeds());
  const Selection sel = selection_from_wire(t.seeds());
  const auto ids = sel.resolve(pop.size());
  const TransitionReport report =
      pop.transition(sel, t.target(), t.reason() != nullptr ? t.reason()->string_view() : "", t.force(), metrics);
  FUZZ_CHECK(report.outcomes.size() == ids.size(), "not one outcome per selected seed");
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto& o = report.outcomes[i];
    FUZZ_CHECK(o.seed == ids[i], "outcomes out of the selection's order");
    if (o.applied()) {
      FUZZ_CHECK(is_valid(t.target()), "a move to a value that is not a state was applied");
      FUZZ_CHECK(pop.seed(o.seed).state() == t.target(), "an applied outcome left its seed elsewhere");
    }
  }
  const auto wire_outcomes = to_wire(report);
  FUZZ_CHECK(wire_outcomes.size() == report.outcomes.size(), "to_wire lost outcomes");
  const auto status = command_status(report);
  FUZZ_CHECK((status == wire::Status::OK) == (report.applied_count() > 0), "command_status disagrees");
}

void set_blueprint(Population& pop, const wire::SetBlueprint& b) {
  wire::SetBlueprintT u;
  b.UnPackTo(&u);
  const GraftingConfig g = grafting_from_wire(u, pop.config().grafting);
  if (check_config(g)) return;  // a rank refuses it
  FUZZ_CHECK(g.strategy <= wire::GraftingStrategy::MAX && g.ramp_steps > 0, "check_config accepted a bad config");
  if (b.seed() < pop.size() && pop.seed(b.seed()).state() == State::DORMANT) pop.seed(b.seed()).set_grafting(g);

  GraftingProgress p;
  for (int step = 0; step < 8; ++step) {
    const GraftingInput in{static_cast<double>(step % 3) * g.drift_threshold, step % 2 == 0 ? 1.0 : 1.5};
    p = advance(g, p, in);
    FUZZ_CHECK(p.alpha >= 0.0 && p.alpha <= 1.0, "alpha outside [0, 1]");
    FUZZ_CHECK(p.progress >= 0.0 && p.progress <= static_cast<double>(g.ramp_steps), "progress outside the ramp");
    FUZZ_CHECK(p.gain > 0.0 && std::isfinite(p.gain), "the adaptive gain left (0, inf)");
  }
}

void snapshot(const Population& pop, const wire::RequestSnapshot& r) {
  static wire::Encoder encoder(wire::SourceInfo{0, wire::Role::RANK, "fuzz-job", "fuzz-host", 1});
  static wire::Decoder decoder;
  std::vector<wire::SeedStatus> seeds;
  for (std::uint32_t id = 0; id < pop.size(); ++id) seeds.push_back(to_wire_status(id, pop.seed(id)));
  std::vector<wire::LayerStateT> layers;
  if (r.layers() == nullptr || r.layers()->size() == 0) {
    layers.push_back(wire::layer_state(0, 0, pop.step(), seeds));
  } else {
    for (const auto l : *r.layers()) {
      if (layers.size() == 4) break;
      layers.push_back(wire::layer_state(l, 0, pop.step(), seeds));
    }
  }
  const auto bytes = encoder.encode(wire::Header{}, wire::state_snapshot(pop.step(), std::move(layers)));
  const std::vector<std::uint8_t> frame(bytes.begin(), bytes.end());
  auto msg = decoder.decode(frame);
  FUZZ_CHECK(msg.has_value(), "a rank's snapshot does not decode");
  for (const auto* layer : *msg->body<wire::StateSnapshot>()->layers()) {
    FUZZ_CHECK(layer->seeds() != nullptr && layer->seeds()->size() == pop.size(), "snapshot lost seeds");
    for (const auto* s : *layer->seeds()) {
      FUZZ_CHECK(s->state() == pop.seed(s->seed()).state(), "snapshot record differs from its seed");
      FUZZ_CHECK(s->alpha() == pop.seed(s->seed()).alpha(), "snapshot alpha differs from its seed");
    }
  }
}

void apply(Population& pop, const wire::Command& c, const std::vector<SeedMetrics>& metrics, Sink& sink) {
  switch (c.body_type()) {
    case wire::CommandBody::TransitionSeeds: transition(pop, *c.body_as_TransitionSeeds(), metrics); break;
    case wire::CommandBody::SetBlueprint: set_blueprint(pop, *c.body_as_SetBlueprint()); break;
    case wire::CommandBody::BatchCommand:
      if (const auto* cmds = c.body_as_BatchCommand()->commands()) {
        for (const auto* inner : *cmds) apply(pop, *inner, metrics, sink);
      }
      break;
    case wire::CommandBody::RequestSnapshot: snapshot(pop, *c.body_as_RequestSnapshot()); break;
    case wire::CommandBody::EmergencyStop: {
      const auto* e = c.body_as_EmergencyStop();
      sink(e->scope());
      sink(e->layer());
      sink(e->seed());
      sink(e->reason());
      break;
    }
    case wire::CommandBody::Shutdown:
      sink(c.body_as_Shutdown()->reason());
      sink(c.body_as_Shutdown()->grace_ms());
      break;
    default: break;
  }
}

}  // namespace
}  // namespace esper::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace esper;
  using namespace esper::lifecycle;
  static wire::Decoder decoder;

  Population pop(fuzz::kSeeds);
  fuzz::Sink sink;
  fuzz::Frames frames({data, size});
  fuzz::Frame frame;
  while (frames.next(frame)) {
    std::vector<SeedMetrics> metrics;
    if ((frame.control & 8u) != 0) {
      SeedMetrics m;
      m.chunk_loss = 1.0;
      m.shadow_loss = 0.5;
      m.performance_delta = 0.1;
      m.stability = 0.99;
      m.improvement = 0.05;
      m.weight_drift = (frame.control >> 4) / 16.0;
      metrics.assign(pop.size(), m);
    }
    if (auto msg = decoder.decode(frame.bytes)) {
      if (const auto* c = msg->body<wire::Command>()) fuzz::apply(pop, *c, metrics, sink);
    }
    for (unsigned t = frame.control & 7u; t > 0; --t) pop.tick(metrics);

    std::uint32_t total = 0;
    for (const auto n : pop.count_by_state()) total += n;
    FUZZ_CHECK(total == pop.size(), "the state counts do not add up to the seeds");
    for (const auto& s : pop.seeds()) {
      FUZZ_CHECK(is_valid(s.state()), "a seed in a value that is not a state");
      FUZZ_CHECK(s.alpha() >= 0.0f && s.alpha() <= 1.0f, "alpha outside [0, 1]");
    }
    sink(pop.digest());
  }
  sink.publish();
  return 0;
}
