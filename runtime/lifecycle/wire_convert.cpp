// Lifecycle <-> wire conversions. Field for field, no policy beyond command_status and the
// zero-means-default reading of SetBlueprint's numeric grafting fields.
#include "lifecycle/wire_convert.hpp"

#include <algorithm>
#include <limits>

namespace esper::lifecycle {

Selection selection_from_wire(const wire::SeedSet* set) {
  Selection s;
  if (set == nullptr) return s;
  if (set->all()) return Selection::all();
  if (const auto* ids = set->ids())
    for (const std::uint32_t id : *ids) s.add_id(id);
  if (const auto* ranges = set->ranges())
    for (const wire::SeedRange* r : *ranges) s.add_range(r->first(), r->last());
  return s;
}

Selection selection_from_wire(const wire::SeedSetT& set) {
  if (set.all) return Selection::all();
  Selection s = Selection::ids(set.ids);
  for (const wire::SeedRange& r : set.ranges) s.add_range(r.first(), r.last());
  return s;
}

wire::SeedOutcomeT to_wire(const SeedOutcome& outcome) {
  wire::SeedOutcomeT o;
  o.seed = outcome.seed;
  o.status = outcome.applied() ? wire::Status::OK : wire::Status::REJECTED;
  o.from = outcome.from;
  o.to = outcome.to;
  if (outcome.rejection) o.error = outcome.rejection->message();
  return o;
}

std::vector<wire::SeedOutcomeT> to_wire(const TransitionReport& report) {
  std::vector<wire::SeedOutcomeT> out;
  out.reserve(report.outcomes.size());
  for (const SeedOutcome& o : report.outcomes) out.push_back(to_wire(o));
  return out;
}

wire::Status command_status(const TransitionReport& report) noexcept {
  return report.applied_count() > 0 ? wire::Status::OK : wire::Status::REJECTED;
}

wire::SeedStatus to_wire_status(std::uint32_t id, const Seed& seed) noexcept {
  return wire::SeedStatus(id, seed.state(), seed.parent_state(), 0, seed.steps_in_state(), seed.error_count(),
                          seed.alpha());
}

GraftingConfig grafting_from_wire(const wire::SetBlueprintT& blueprint, GraftingConfig base) {
  base.strategy = blueprint.grafting;
  if (blueprint.ramp_steps != 0) base.ramp_steps = blueprint.ramp_steps;
  if (blueprint.drift_threshold != 0.0F) base.drift_threshold = static_cast<double>(blueprint.drift_threshold);
  for (const auto& param : blueprint.params) {
    if (!param) continue;
    if (param->name == "loss_tolerance")
      base.loss_tolerance = param->value;
    else if (param->name == "gain_min")
      base.gain_min = param->value;
    else if (param->name == "gain_max")
      base.gain_max = param->value;
    else if (param->name == "gain_up")
      base.gain_up = param->value;
    else if (param->name == "gain_down")
      base.gain_down = param->value;
  }
  return base;
}

}  // namespace esper::lifecycle
