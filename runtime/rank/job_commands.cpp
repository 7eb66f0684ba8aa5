#include "rank/job_commands.hpp"

#include <cmath>

#include "lifecycle/wire_convert.hpp"
#include "wire/builders.hpp"

namespace esper::rank {
namespace {

using lifecycle::State;
using Key = std::pair<std::uint32_t, std::uint32_t>;

// Where an emergency stop takes a seed: out of the computation by the table's abort edges.
std::optional<State> abort_state(State s) {
  switch (s) {
    case State::GERMINATED:
    case State::TRAINING: return State::CANCELLED;
    case State::GRAFTING:
    case State::STABILIZATION:
    case State::EVALUATING:
    case State::FINE_TUNING: return State::ROLLED_BACK;
    default: return std::nullopt;  // DORMANT, FOSSILIZED and the terminal states stay
  }
}

std::vector<lifecycle::SeedMetrics> metrics_of(const morphogenesis::Driver& d) {
  std::vector<lifecycle::SeedMetrics> m;
  for (std::uint32_t c = 0; c < d.population().size(); ++c) m.push_back(d.metrics(static_cast<int>(c)));
  return m;
}

bool fully_ok(const wire::CommandResultT& r) {
  if (r.status != wire::Status::OK) return false;
  for (const auto& o : r.outcomes) {
    if (o && o->status != wire::Status::OK) return false;
  }
  for (const auto& m : r.members) {
    if (m && !fully_ok(*m)) return false;
  }
  return true;
}

std::string held_rule(std::uint32_t layer, std::uint32_t seed) {
  return "emergency_stopped: seed " + std::to_string(seed) + " of layer " + std::to_string(layer) +
         " is held by an emergency stop for the rest of the job";
}

constexpr const char* kGraftingParams[] = {"loss_tolerance", "gain_min", "gain_max", "gain_up", "gain_down"};

}  // namespace

struct JobCommands::Simulation {
  std::vector<lifecycle::Population> populations;
  std::set<Key> held;
  Stop stop;
};

JobCommands::JobCommands(std::vector<std::unique_ptr<morphogenesis::Driver>>& drivers, std::int32_t rank,
                         fabric::Node* events)
    : drivers_(drivers), rank_(rank), events_(events) {}

wire::CommandResultT JobCommands::rejected(std::string why) const {
  return wire::command_result(wire::Status::REJECTED, rank_, std::move(why));
}

wire::CommandResultT JobCommands::apply(const wire::Command& command, const wire::Envelope& envelope,
                                        std::uint64_t step) {
  return run(command, envelope.msg_id(), step, nullptr);
}

wire::CommandResultT JobCommands::run(const wire::Command& command, const wire::MsgId* id, std::uint64_t step,
                                      Simulation* sim) {
  switch (command.body_type()) {
    case wire::CommandBody::TransitionSeeds:
      return transition(*command.body_as_TransitionSeeds(), id, step, sim, "command");
    case wire::CommandBody::SetBlueprint: return set_blueprint(*command.body_as_SetBlueprint(), sim);
    case wire::CommandBody::BatchCommand: return batch(*command.body_as_BatchCommand(), id, step, sim);
    case wire::CommandBody::EmergencyStop: return emergency_stop(*command.body_as_EmergencyStop(), id, step, sim);
    case wire::CommandBody::RequestSnapshot: return snapshot(*command.body_as_RequestSnapshot(), step);
    case wire::CommandBody::Shutdown: {
      const auto* s = command.body_as_Shutdown();
      auto& stop = sim ? sim->stop : stop_;
      if (!stop.requested) {
        stop = Stop{true, true, "shutdown" + (s->reason() && s->reason()->size() ? ": " + s->reason()->str() : ""),
                    std::chrono::milliseconds(s->grace_ms())};
      }
      return wire::command_result(wire::Status::OK, rank_);
    }
    default:
      return rejected("unknown command kind " + std::to_string(static_cast<int>(command.body_type())) +
                      " (this rank knows TransitionSeeds .. Shutdown)");
  }
}

wire::CommandResultT JobCommands::transition(const wire::TransitionSeeds& t, const wire::MsgId* id,
                                             std::uint64_t step, Simulation* sim, const std::string& triggered_by) {
  if (t.layer() >= drivers_.size()) {
    return rejected("layer " + std::to_string(t.layer()) + " does not exist (this job has layers 0.." +
                    std::to_string(drivers_.size() - 1) + ")");
  }
  if (!lifecycle::is_valid(t.target())) {
    return rejected("target state " + std::to_string(static_cast<int>(t.target())) +
                    " is not a seed state (0 DORMANT .. 10 ROLLED_BACK)");
  }
  auto& d = *drivers_[t.layer()];
  const auto& held = sim ? sim->held : held_;
  const auto& population = sim ? sim->populations[t.layer()] : d.population();
  std::vector<std::uint32_t> free;
  std::vector<wire::SeedOutcomeT> held_outcomes;
  for (const auto s : lifecycle::selection_from_wire(t.seeds()).resolve(population.size())) {
    if (!held.contains({t.layer(), s})) {
      free.push_back(s);
      continue;
    }
    wire::SeedOutcomeT o;
    o.seed = s;
    o.status = wire::Status::REJECTED;
    o.from = population.seed(s).state();
    o.to = t.target();
    o.error = held_rule(t.layer(), s);
    held_outcomes.push_back(std::move(o));
  }
  const std::string reason = t.reason() ? t.reason()->str() : "";
  lifecycle::TransitionReport report;
  if (!free.empty()) {
    const auto selection = lifecycle::Selection::ids(free);
    report = sim ? sim->populations[t.layer()].transition(selection, t.target(), reason, t.force(), metrics_of(d))
                 : d.transition(selection, t.target(), reason, t.force());
  }
  wire::CommandResultT r;
  r.rank = rank_;
  std::size_t moved = 0;
  for (const auto& o : report.outcomes) {
    if (o.applied()) {
      ++moved;
      if (!sim && events_ != nullptr && id != nullptr) {
        events_->emit(wire::state_transition(t.layer(), step, o.seed, o.from, o.to, reason, triggered_by, *id));
      }
    }
  }
  auto wire_outcomes = lifecycle::to_wire(report);
  for (auto& o : held_outcomes) wire_outcomes.push_back(std::move(o));
  std::sort(wire_outcomes.begin(), wire_outcomes.end(), [](const auto& a, const auto& b) { return a.seed < b.seed; });
  for (auto& o : wire_outcomes) r.outcomes.push_back(std::make_unique<wire::SeedOutcomeT>(std::move(o)));
  r.status = moved > 0 ? wire::Status::OK : wire::Status::REJECTED;
  if (moved == 0) r.error = wire_outcomes.empty() ? "the selection names no seed" : "no selected seed moved";
  return r;
}

wire::CommandResultT JobCommands::set_blueprint(const wire::SetBlueprint& b, Simulation* sim) {
  const auto l = b.layer(), s = b.seed();
  if (l >= drivers_.size()) {
    return rejected("layer " + std::to_string(l) + " does not exist (this job has layers 0.." +
                    std::to_string(drivers_.size() - 1) + ")");
  }
  auto& d = *drivers_[l];
  const auto& population = sim ? sim->populations[l] : d.population();
  if (s >= population.size()) {
    return rejected("no_such_seed: layer " + std::to_string(l) + " has seeds 0.." + std::to_string(population.size() - 1));
  }
  if ((sim ? sim->held : held_).contains({l, s})) return rejected(held_rule(l, s));
  const auto state = population.seed(s).state();
  if (state != State::DORMANT) {
    return rejected("blueprint_needs_dormant: seed " + std::to_string(s) + " of layer " + std::to_string(l) + " is " +
                    std::string(lifecycle::name(state)) + "; a blueprint is set on a DORMANT seed (reset it first)");
  }
  const auto layer_kind = d.config().blueprint == kernels::Blueprint::LowRank ? wire::BlueprintKind::LOW_RANK
                                                                              : wire::BlueprintKind::BOTTLENECK_MLP;
  if (b.kind() != layer_kind) {
    return rejected(std::string("blueprint_kind: layer ") + std::to_string(l) + " is " +
                    wire::EnumNameBlueprintKind(layer_kind) + "; a layer has one blueprint kind, set when the job starts");
  }
  const auto max_rank = static_cast<std::uint32_t>(d.config().rank);
  if (b.rank() > max_rank) {
    return rejected("blueprint_rank: rank " + std::to_string(b.rank()) + " exceeds layer " + std::to_string(l) +
                    "'s adapter rank " + std::to_string(max_rank) + " (esper run --rank)");
  }
  const float lr = b.learning_rate();
  if (!std::isfinite(lr) || lr < 0.0f) {
    return rejected("blueprint_learning_rate: " + std::to_string(lr) + " is not a finite learning rate >= 0 (0: the layer's)");
  }
  if (b.grafting() > wire::GraftingStrategy::MAX) {
    return rejected("blueprint_grafting: strategy " + std::to_string(static_cast<int>(b.grafting())) +
                    " is not LINEAR, DRIFT_CONTROLLED or ADAPTIVE");
  }
  wire::SetBlueprintT unpacked;
  b.UnPackTo(&unpacked);
  for (const auto& p : unpacked.params) {
    if (!p) continue;
    if (std::find(std::begin(kGraftingParams), std::end(kGraftingParams), p->name) == std::end(kGraftingParams)) {
      return rejected("blueprint_param: unknown parameter '" + p->name +
                      "' (known: loss_tolerance, gain_min, gain_max, gain_up, gain_down)");
    }
    if (!std::isfinite(p->value)) return rejected("blueprint_param: " + p->name + " is not finite");
  }
  const auto grafting = lifecycle::grafting_from_wire(unpacked, population.config().grafting);
  if (const auto problem = lifecycle::check_config(grafting)) return rejected("blueprint_grafting: " + *problem);
  if (!sim) {
    kernels::SeedSettings settings;
    settings.rank = b.rank() != 0 ? static_cast<int>(b.rank()) : d.config().rank;
    settings.learning_rate = lr != 0.0f ? lr : d.config().optimizer.learning_rate;
    d.set_seed_settings(s, settings);
    d.set_grafting(s, grafting);
  }
  wire::CommandResultT r = wire::command_result(wire::Status::OK, rank_);
  wire::SeedOutcomeT o;
  o.seed = s;
  o.status = wire::Status::OK;
  o.from = o.to = state;
  r.outcomes.push_back(std::make_unique<wire::SeedOutcomeT>(std::move(o)));
  return r;
}

wire::CommandResultT JobCommands::batch(const wire::BatchCommand& b, const wire::MsgId* id, std::uint64_t step,
                                        Simulation* sim) {
  const auto* commands = b.commands();
  if (commands == nullptr || commands->size() == 0) return rejected("an empty batch");
  for (flatbuffers::uoffset_t i = 0; i < commands->size(); ++i) {
    const auto* c = commands->Get(i);
    if (c == nullptr || c->body_type() == wire::CommandBody::NONE) {
      return rejected("batch member " + std::to_string(i) + " has no command");
    }
    if (c->body_type() == wire::CommandBody::BatchCommand) {
      return rejected("batch member " + std::to_string(i) + " is a batch; batches do not nest");
    }
  }
  wire::CommandResultT r = wire::command_result(wire::Status::OK, rank_);
  auto run_all = [&](Simulation* where, bool stop_on_error) {
    std::vector<std::unique_ptr<wire::CommandResultT>> out;
    std::size_t failed_at = commands->size();
    for (flatbuffers::uoffset_t i = 0; i < commands->size(); ++i) {
      if (failed_at < i) {
        out.push_back(std::make_unique<wire::CommandResultT>(rejected(
            "skipped: batch member " + std::to_string(failed_at) + " was not OK (stop_on_error)")));
        continue;
      }
      auto m = run(*commands->Get(i), id, step, where);
      if (!fully_ok(m) && stop_on_error && failed_at == commands->size()) failed_at = i;
      out.push_back(std::make_unique<wire::CommandResultT>(std::move(m)));
    }
    return out;
  };
  if (b.atomic() && sim == nullptr) {
    // Checked on copies first: either every member is fully OK there and all are applied here
    // (the same inputs give the same results), or none is.
    Simulation trial;
    for (const auto& d : drivers_) trial.populations.push_back(d->population());
    trial.held = held_;
    trial.stop = stop_;
    auto checked = run_all(&trial, false);
    for (std::size_t i = 0; i < checked.size(); ++i) {
      if (fully_ok(*checked[i])) continue;
      r.status = wire::Status::REJECTED;
      r.error = "atomic batch: member " + std::to_string(i) + " would not be fully OK (" +
                (checked[i]->error.empty() ? "a seed was rejected" : checked[i]->error) + "); nothing applied";
      r.members = std::move(checked);
      return r;
    }
  }
  r.members = run_all(sim, b.stop_on_error());
  std::size_t ok = 0;
  for (const auto& m : r.members) ok += fully_ok(*m) ? 1 : 0;
  if (ok < r.members.size()) {
    r.status = ok == 0 ? wire::Status::REJECTED : wire::Status::FAILED;
    r.error = std::to_string(ok) + " of " + std::to_string(r.members.size()) + " batch members fully OK" +
              (ok == 0 ? "" : "; partially applied (not atomic)");
  }
  return r;
}

wire::CommandResultT JobCommands::emergency_stop(const wire::EmergencyStop& s, const wire::MsgId* id,
                                                 std::uint64_t step, Simulation* sim) {
  const std::string reason = "emergency stop" + (s.reason() && s.reason()->size() ? ": " + s.reason()->str() : "");
  auto& stop = sim ? sim->stop : stop_;
  switch (s.scope()) {
    case wire::StopScope::JOB:
      if (!stop.requested) stop = Stop{true, false, reason, std::chrono::milliseconds(0)};
      return wire::command_result(wire::Status::OK, rank_);
    case wire::StopScope::LAYER:
    case wire::StopScope::SEED: break;
    default:
      return rejected("emergency stop scope " + std::to_string(static_cast<int>(s.scope())) + " is not JOB, LAYER or SEED");
  }
  if (s.layer() >= drivers_.size()) {
    return rejected("layer " + std::to_string(s.layer()) + " does not exist (this job has layers 0.." +
                    std::to_string(drivers_.size() - 1) + ")");
  }
  auto& d = *drivers_[s.layer()];
  auto& population = sim ? sim->populations[s.layer()] : d.population();
  std::vector<std::uint32_t> seeds;
  if (s.scope() == wire::StopScope::SEED) {
    if (s.seed() >= population.size()) {
      return rejected("no_such_seed: layer " + std::to_string(s.layer()) + " has seeds 0.." +
                      std::to_string(population.size() - 1));
    }
    seeds.push_back(s.seed());
  } else {
    for (std::uint32_t c = 0; c < population.size(); ++c) seeds.push_back(c);
  }
  auto& held = sim ? sim->held : held_;
  wire::CommandResultT r = wire::command_result(wire::Status::OK, rank_);
  for (const auto seed : seeds) {
    if (held.contains({s.layer(), seed})) continue;
    const State from = population.seed(seed).state();
    wire::SeedOutcomeT o;
    o.seed = seed;
    o.status = wire::Status::OK;
    o.from = o.to = from;
    if (const auto to = abort_state(from)) {
      const auto selection = lifecycle::Selection::ids({seed});
      const auto report = sim ? sim->populations[s.layer()].transition(selection, *to, reason, true, metrics_of(d))
                              : d.transition(selection, *to, reason, true);
      const auto& out = report.outcomes.at(0);
      if (out.applied()) {
        o.to = *to;
        if (!sim && events_ != nullptr && id != nullptr) {
          events_->emit(wire::state_transition(s.layer(), step, seed, from, *to, reason, "emergency_stop", *id));
        }
      } else {  // the table has the abort edge from every state abort_state names: cannot happen
        o.status = wire::Status::REJECTED;
        o.to = *to;
        o.error = out.rejection->message();
      }
    }
    held.insert({s.layer(), seed});
    r.outcomes.push_back(std::make_unique<wire::SeedOutcomeT>(std::move(o)));
  }
  return r;
}

wire::CommandResultT JobCommands::snapshot(const wire::RequestSnapshot& req, std::uint64_t step) const {
  std::vector<std::uint32_t> layers;
  if (req.layers() == nullptr || req.layers()->size() == 0) {
    for (std::uint32_t l = 0; l < drivers_.size(); ++l) layers.push_back(l);
  } else {
    for (const auto l : *req.layers()) {
      if (l >= drivers_.size()) {
        return rejected("layer " + std::to_string(l) + " does not exist (this job has layers 0.." +
                        std::to_string(drivers_.size() - 1) + ")");
      }
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
    }
  }
  wire::CommandResultT r = wire::command_result(wire::Status::OK, rank_);
  r.snapshot = std::make_unique<wire::StateSnapshotT>();
  r.snapshot->snapshot_sequence = step;
  for (const auto l : layers) {
    auto ls = std::make_unique<wire::LayerStateT>();
    ls->layer = l;
    ls->rank = rank_;
    ls->step = step;
    const auto& population = drivers_[l]->population();
    for (std::uint32_t c = 0; c < population.size(); ++c) ls->seeds.push_back(lifecycle::to_wire_status(c, population.seed(c)));
    r.snapshot->layers.push_back(std::move(ls));
  }
  return r;
}

}  // namespace esper::rank
