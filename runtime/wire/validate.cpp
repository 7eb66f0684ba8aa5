// Range checks of decoded values (validate.hpp). The checks run on every telemetry batch a
// subscriber receives, so the loops over records compare numbers only: a problem's text is built
// once, when there is one.
#include "wire/validate.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "wire/codec.hpp"

namespace esper::wire {
namespace {

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return ec == std::errc() ? std::string(buffer, end) : std::string("?");
}

std::string at(std::string_view list, std::size_t i) { return std::string(list) + "[" + std::to_string(i) + "]."; }

Problem prefixed(std::string prefix, Problem p) {
  if (p) p = std::move(prefix) + *p;
  return p;
}

template <class E>
Problem enum_value(std::string_view field, E value, std::string_view type) {
  if (is_known(value)) return std::nullopt;
  using U = std::underlying_type_t<E>;
  return std::string(field) + ": " + std::to_string(+static_cast<U>(value)) + " is not a " + std::string(type) + " (" +
         std::to_string(+static_cast<U>(E::MIN)) + ".." + std::to_string(+static_cast<U>(E::MAX)) + ")";
}

Problem text(std::string_view field, const flatbuffers::String* s, const Bounds& b) {
  if (s == nullptr || s->size() <= b.text) return std::nullopt;
  return std::string(field) + ": " + std::to_string(s->size()) + " bytes, more than the " + std::to_string(b.text) +
         " a string may hold";
}

// A layer id: below the bound, and one the receiver hosts when it says which (`hosted_only`).
Problem layer_id(std::string_view field, std::uint32_t layer, const Bounds& b, bool hosted_only) {
  if (layer >= b.layers) {
    return std::string(field) + ": " + std::to_string(layer) + " is past the last layer id " + std::to_string(b.layers - 1);
  }
  if (!hosted_only || b.hosted.empty() || b.hosted.contains(layer)) return std::nullopt;
  std::string known;
  std::size_t shown = 0;
  for (const auto& [id, seeds] : b.hosted) {
    if (shown++ == 8) {
      known += ", ...";
      break;
    }
    known += (known.empty() ? "" : ", ") + std::to_string(id);
  }
  return std::string(field) + ": " + std::to_string(layer) + " is not one of the " + std::to_string(b.hosted.size()) +
         " layers this receiver hosts (" + known + ")";
}

Problem seed_id(std::string_view field, std::uint32_t seed, std::uint32_t layer, const Bounds& b) {
  const std::uint32_t n = b.seeds_in(layer);
  if (seed < n) return std::nullopt;
  const bool known = b.hosted.contains(layer) && b.hosted.at(layer) != 0 && b.hosted.at(layer) <= b.seeds;
  return std::string(field) + ": " + std::to_string(seed) + " is past " +
         (known ? "layer " + std::to_string(layer) + "'s " + std::to_string(n) + " seeds (0.." + std::to_string(n - 1) + ")"
                : "the last seed id " + std::to_string(n - 1));
}

// A rank id: -1 ("none") where `none_ok`, else 0 .. ranks-1.
Problem rank_id(std::string_view field, std::int32_t rank, const Bounds& b, bool none_ok) {
  if ((rank >= 0 || (none_ok && rank == -1)) && rank < b.ranks) return std::nullopt;
  return std::string(field) + ": " + std::to_string(rank) + " is not a rank id (" + (none_ok ? "-1" : "0") + ".." +
         std::to_string(b.ranks - 1) + ")";
}

Problem at_most(std::string_view field, std::uint64_t value, std::uint64_t max) {
  if (value <= max) return std::nullopt;
  return std::string(field) + ": " + std::to_string(value) + " is past the sane maximum " + std::to_string(max);
}

Problem step_or_none(std::string_view field, std::int64_t step, const Bounds& b) {
  if (step >= -1 && (step < 0 || static_cast<std::uint64_t>(step) <= b.steps)) return std::nullopt;
  return std::string(field) + ": " + std::to_string(step) + " is neither -1 nor a step (0.." + std::to_string(b.steps) + ")";
}

template <class T>
Problem list_size(std::string_view field, const flatbuffers::Vector<T>* v, std::uint64_t max) {
  if (v == nullptr || v->size() <= max) return std::nullopt;
  return std::string(field) + ": " + std::to_string(v->size()) + " entries, more than the " + std::to_string(max) +
         " it may hold";
}

// A loss: NaN (unknown) or >= 0; +inf is a diverged loss, which the anomaly detector reports.
bool sane_loss(float v) { return std::isnan(v) || v >= 0.0f; }
// A fraction: NaN (unknown) or within [0, 1].
bool sane_fraction(float v) { return std::isnan(v) || (v >= 0.0f && v <= 1.0f); }

Problem metric(std::string_view field, float v, bool ok, const char* rule) {
  if (ok) return std::nullopt;
  return std::string(field) + ": " + number(v) + " is not " + rule;
}

Problem layers_list(std::string_view field, const flatbuffers::Vector<std::uint32_t>* v, const Bounds& b) {
  if (auto p = list_size(field, v, b.layers)) return p;
  if (v == nullptr) return std::nullopt;
  for (std::uint32_t i = 0; i < v->size(); ++i) {
    if (v->Get(i) >= b.layers) return layer_id(std::string(field) + "[" + std::to_string(i) + "]", v->Get(i), b, false);
  }
  return std::nullopt;
}

Problem seeds_list(std::string_view field, const flatbuffers::Vector<std::uint32_t>* v, std::uint32_t layer,
                   const Bounds& b) {
  if (auto p = list_size(field, v, b.seeds_in(layer))) return p;
  if (v == nullptr) return std::nullopt;
  const std::uint32_t n = b.seeds_in(layer);
  for (std::uint32_t i = 0; i < v->size(); ++i) {
    if (v->Get(i) >= n) return seed_id(std::string(field) + "[" + std::to_string(i) + "]", v->Get(i), layer, b);
  }
  return std::nullopt;
}

Problem record(const SeedMetrics& r, std::uint32_t layer, const Bounds& b) {
  if (r.seed() >= b.seeds_in(layer)) return seed_id("seed", r.seed(), layer, b);
  if (auto p = enum_value("state", r.state(), "SeedState")) return p;
  if (r.step() > b.steps) return at_most("step", r.step(), b.steps);
  if (!sane_loss(r.task_loss())) return metric("task_loss", r.task_loss(), false, "a loss (NaN or >= 0)");
  if (!sane_loss(r.shadow_loss())) return metric("shadow_loss", r.shadow_loss(), false, "a loss (NaN or >= 0)");
  if (!sane_fraction(r.alpha())) return metric("alpha", r.alpha(), false, "within [0, 1] (or NaN)");
  if (!sane_fraction(r.health())) return metric("health", r.health(), false, "within [0, 1] (or NaN)");
  return std::nullopt;
}

Problem layer_record(const LayerMetrics& r, const Bounds& b) {
  if (r.step() > b.steps) return at_most("step", r.step(), b.steps);
  if (!sane_loss(r.loss())) return metric("loss", r.loss(), false, "a loss (NaN or >= 0)");
  const float rate = r.samples_per_s();
  if (!(std::isnan(rate) || (std::isfinite(rate) && rate >= 0.0f))) {
    return metric("samples_per_s", rate, false, "a throughput (NaN or finite >= 0)");
  }
  return std::nullopt;
}

Problem seed_status(const SeedStatus& s, std::uint32_t layer, const Bounds& b) {
  if (s.seed() >= b.seeds_in(layer)) return seed_id("seed", s.seed(), layer, b);
  if (auto p = enum_value("state", s.state(), "SeedState")) return p;
  if (auto p = enum_value("parent_state", s.parent_state(), "SeedState")) return p;
  if (!sane_fraction(s.alpha())) return metric("alpha", s.alpha(), false, "within [0, 1] (or NaN)");
  return std::nullopt;
}

Problem seed_outcome(const SeedOutcome& o, const Bounds& b) {
  // The seed id echoes the command's (an id past the layer is answered no_such_seed): not bounded.
  if (auto p = enum_value("status", o.status(), "Status")) return p;
  if (auto p = enum_value("from", o.from(), "SeedState")) return p;
  if (auto p = enum_value("to", o.to(), "SeedState")) return p;
  return text("error", o.error(), b);
}

// CommandResult's members and snapshot (schema 1.3) are checked where the generated code has
// them; a template, so that the test of whether it does is a SFINAE test, not an error.
template <class Result>
Problem result_of(const Result& r, const Bounds& b) {
  if (auto p = enum_value("status", r.status(), "Status")) return p;
  if (auto p = text("error", r.error(), b)) return p;
  if (auto p = rank_id("rank", r.rank(), b, true)) return p;
  if (auto p = step_or_none("applied_at_step", r.applied_at_step(), b)) return p;
  if (const auto* outcomes = r.outcomes()) {
    for (std::uint32_t i = 0; i < outcomes->size(); ++i) {
      if (auto p = seed_outcome(*outcomes->Get(i), b)) return prefixed(at("outcomes", i), std::move(p));
    }
  }
  if constexpr (requires { r.members(); }) {
    if (const auto* members = r.members()) {
      for (std::uint32_t i = 0; i < members->size(); ++i) {
        if (auto p = result_of(*members->Get(i), b)) return prefixed(at("members", i), std::move(p));
      }
    }
  }
  if constexpr (requires { r.snapshot(); }) {
    if (const auto* snapshot = r.snapshot()) {
      if (auto p = check(*snapshot, b)) return prefixed("snapshot.", std::move(p));
    }
  }
  return std::nullopt;
}

Problem target_of(const CommandTarget& t, const Bounds& b) {
  if (auto p = enum_value("target.kind", t.kind(), "TargetKind")) return p;
  if (t.kind() == TargetKind::RANK) return rank_id("target.rank", t.rank(), b, false);
  if (t.kind() == TargetKind::LAYER) return layer_id("target.layer", t.layer(), b, false);
  return std::nullopt;
}

Problem command_body(const Command& c, const Bounds& b) {
  switch (c.body_type()) {
    case CommandBody::TransitionSeeds: {
      const auto& t = *c.body_as_TransitionSeeds();
      if (auto p = layer_id("body.layer", t.layer(), b, false)) return p;
      if (auto p = enum_value("body.target", t.target(), "SeedState")) return p;
      return text("body.reason", t.reason(), b);
    }
    case CommandBody::SetBlueprint: {
      const auto& s = *c.body_as_SetBlueprint();
      if (auto p = layer_id("body.layer", s.layer(), b, false)) return p;
      if (auto p = enum_value("body.kind", s.kind(), "BlueprintKind")) return p;
      if (auto p = enum_value("body.grafting", s.grafting(), "GraftingStrategy")) return p;
      if (const auto* params = s.params()) {
        for (std::uint32_t i = 0; i < params->size(); ++i) {
          if (auto p = text("name", params->Get(i)->name(), b)) return prefixed("body." + at("params", i), std::move(p));
        }
      }
      return std::nullopt;
    }
    case CommandBody::BatchCommand: {
      const auto& batch = *c.body_as_BatchCommand();
      if (const auto* commands = batch.commands()) {
        for (std::uint32_t i = 0; i < commands->size(); ++i) {
          if (auto p = check(*commands->Get(i), b)) return prefixed("body." + at("commands", i), std::move(p));
        }
      }
      return std::nullopt;
    }
    case CommandBody::EmergencyStop: {
      const auto& e = *c.body_as_EmergencyStop();
      if (auto p = enum_value("body.scope", e.scope(), "StopScope")) return p;
      if (e.scope() != StopScope::JOB) {
        if (auto p = layer_id("body.layer", e.layer(), b, false)) return p;
      }
      return text("body.reason", e.reason(), b);
    }
    case CommandBody::RequestSnapshot: {
      const auto& r = *c.body_as_RequestSnapshot();
      if (auto p = layers_list("body.layers", r.layers(), b)) return p;
      return text("body.reply_topic", r.reply_topic(), b);
    }
    case CommandBody::Shutdown: return text("body.reason", c.body_as_Shutdown()->reason(), b);
    default: return std::nullopt;  // none, or a kind of a newer minor: the handler answers it
  }
}

}  // namespace

Bounds Bounds::job(std::uint32_t layers, std::uint32_t seeds) {
  Bounds b;
  if (seeds > 0) b.seeds = std::min(seeds, kMaxSeedsPerLayer);
  for (std::uint32_t l = 0; l < std::min(layers, kMaxLayers); ++l) b.hosted.emplace(l, b.seeds < kMaxSeedsPerLayer ? b.seeds : 0);
  return b;
}

std::uint32_t Bounds::seeds_in(std::uint32_t layer) const {
  if (const auto it = hosted.find(layer); it != hosted.end() && it->second != 0) return std::min(it->second, seeds);
  return seeds;
}

Problem check(const TelemetryBatch& batch, const Bounds& b) {
  if (auto p = layer_id("layer", batch.layer(), b, true)) return p;
  if (auto p = rank_id("rank", batch.rank(), b, true)) return p;
  if (auto p = at_most("dropped_records", batch.dropped_records(), b.counts)) return p;
  if (const auto* seeds = batch.seeds()) {
    for (std::uint32_t i = 0; i < seeds->size(); ++i) {
      if (auto p = record(*seeds->Get(i), batch.layer(), b)) return prefixed(at("seeds", i), std::move(p));
    }
  }
  if (const auto* layers = batch.layers()) {
    for (std::uint32_t i = 0; i < layers->size(); ++i) {
      if (auto p = layer_record(*layers->Get(i), b)) return prefixed(at("layers", i), std::move(p));
    }
  }
  return std::nullopt;
}

Problem check(const Event& e, const Bounds& b) {
  if (auto p = at_most("step", e.step(), b.steps)) return p;
  switch (e.body_type()) {
    case EventBody::StateTransition: {
      const auto& t = *e.body_as_StateTransition();
      if (auto p = layer_id("layer", e.layer(), b, true)) return p;
      if (auto p = seed_id("body.seed", t.seed(), e.layer(), b)) return p;
      if (auto p = enum_value("body.from", t.from(), "SeedState")) return p;
      if (auto p = enum_value("body.to", t.to(), "SeedState")) return p;
      if (auto p = text("body.reason", t.reason(), b)) return p;
      return text("body.triggered_by", t.triggered_by(), b);
    }
    case EventBody::AnomalyAlert: {
      const auto& a = *e.body_as_AnomalyAlert();
      if (auto p = layer_id("layer", e.layer(), b, true)) return p;
      if (auto p = seed_id("body.seed", a.seed(), e.layer(), b)) return p;
      if (auto p = enum_value("body.severity", a.severity(), "Severity")) return p;
      if (auto p = text("body.metric", a.metric(), b)) return p;
      return text("body.detector", a.detector(), b);
    }
    case EventBody::RankJoined: {
      const auto& j = *e.body_as_RankJoined();
      if (auto p = layer_id("layer", e.layer(), b, false)) return p;
      if (auto p = rank_id("body.rank", j.rank(), b, false)) return p;
      if (j.world_size() < 0 || j.world_size() > b.ranks || (j.world_size() > 0 && j.rank() >= j.world_size())) {
        return "body.world_size: " + std::to_string(j.world_size()) + " does not hold rank " + std::to_string(j.rank()) +
               " (0: unknown)";
      }
      if (auto p = text("body.host", j.host(), b)) return p;
      return layers_list("body.layers", j.layers(), b);
    }
    case EventBody::RankLost: {
      const auto& l = *e.body_as_RankLost();
      if (auto p = layer_id("layer", e.layer(), b, false)) return p;
      if (auto p = rank_id("body.rank", l.rank(), b, false)) return p;
      return text("body.reason", l.reason(), b);
    }
    case EventBody::CommandFailed: {
      const auto& f = *e.body_as_CommandFailed();
      if (auto p = layer_id("layer", e.layer(), b, false)) return p;
      if (auto p = rank_id("body.target_rank", f.target_rank(), b, true)) return p;
      if (auto p = enum_value("body.reason", f.reason(), "FailureReason")) return p;
      return text("body.detail", f.detail(), b);
    }
    case EventBody::Checkpoint:
      if (auto p = layer_id("layer", e.layer(), b, false)) return p;
      return text("body.path", e.body_as_Checkpoint()->path(), b);
    case EventBody::Decision: {
      const auto& d = *e.body_as_Decision();
      if (auto p = layer_id("layer", e.layer(), b, true)) return p;
      if (auto p = enum_value("body.action", d.action(), "DecisionAction")) return p;
      if (auto p = enum_value("body.target", d.target(), "SeedState")) return p;
      if (auto p = enum_value("body.status", d.status(), "Status")) return p;
      if (auto p = seeds_list("body.seeds", d.seeds(), e.layer(), b)) return p;
      if (auto p = seeds_list("body.applied", d.applied(), e.layer(), b)) return p;
      if (auto p = seeds_list("body.rejected", d.rejected(), e.layer(), b)) return p;
      if (auto p = text("body.policy", d.policy(), b)) return p;
      if (auto p = text("body.reason", d.reason(), b)) return p;
      return text("body.failure", d.failure(), b);
    }
    default:  // none, or a kind of a newer minor: no value a consumer here reads
      return layer_id("layer", e.layer(), b, false);
  }
}

Problem check_fields(const LayerState& l, const Bounds& b) {
  if (auto p = layer_id("layer", l.layer(), b, true)) return p;
  if (auto p = rank_id("rank", l.rank(), b, true)) return p;
  return at_most("step", l.step(), b.steps);
}

Problem check(const SeedStatus& s, std::uint32_t layer, const Bounds& b) { return seed_status(s, layer, b); }

Problem check(const LayerState& l, const Bounds& b) {
  if (auto p = check_fields(l, b)) return p;
  if (auto p = list_size("seeds", l.seeds(), b.seeds_in(l.layer()))) return p;
  if (const auto* seeds = l.seeds()) {
    for (std::uint32_t j = 0; j < seeds->size(); ++j) {
      if (auto p = seed_status(*seeds->Get(j), l.layer(), b)) return prefixed(at("seeds", j), std::move(p));
    }
  }
  return std::nullopt;
}

Problem check(const StateSnapshot& s, const Bounds& b) {
  if (s.parts() == 0 || s.part() >= s.parts()) {
    return "part: " + std::to_string(s.part()) + " of " + std::to_string(s.parts()) + " parts (0 .. parts-1, parts >= 1)";
  }
  if (const auto* layers = s.layers()) {
    for (std::uint32_t i = 0; i < layers->size(); ++i) {
      if (auto p = check(*layers->Get(i), b)) return prefixed(at("layers", i), std::move(p));
    }
  }
  return std::nullopt;
}

Problem check(const CommandResult& r, const Bounds& b) { return result_of(r, b); }

Problem check(const Command& c, const Bounds& b) {
  if (const auto* t = c.target()) {
    if (auto p = target_of(*t, b)) return p;
  }
  if (auto p = step_or_none("apply_at_step", c.apply_at_step(), b)) return p;
  return command_body(c, b);
}

Problem check(const RouteTable& t, const Bounds& b) {
  const auto* ranks = t.ranks();
  if (ranks == nullptr) return std::nullopt;
  for (std::uint32_t i = 0; i < ranks->size(); ++i) {
    const auto& r = *ranks->Get(i);
    Problem p = rank_id("rank", r.rank(), b, false);
    if (!p) p = layers_list("layers", r.layers(), b);
    if (!p) p = text("command_endpoint", r.command_endpoint(), b);
    if (p) return prefixed(at("ranks", i), std::move(p));
  }
  return std::nullopt;
}

Problem check(const CommandDispatch& d, const Bounds& b) {
  if (auto p = enum_value("reason", d.reason(), "DispatchReason")) return p;
  if (const auto* ranks = d.ranks()) {
    for (std::uint32_t i = 0; i < ranks->size(); ++i) {
      if (auto p = rank_id("ranks[" + std::to_string(i) + "]", ranks->Get(i), b, false)) return p;
    }
  }
  return text("detail", d.detail(), b);
}

Problem check(const Heartbeat& h, const Bounds& b) {
  if (auto p = at_most("step", h.step(), b.steps)) return p;
  if (auto p = at_most("telemetry_dropped", h.telemetry_dropped(), b.counts)) return p;
  if (auto p = layers_list("layers", h.layers(), b)) return p;
  if (h.world_size() < 0 || h.world_size() > b.ranks) {
    return "world_size: " + std::to_string(h.world_size()) + " is not a number of ranks (0: unknown, at most " +
           std::to_string(b.ranks) + ")";
  }
  return text("command_endpoint", h.command_endpoint(), b);
}

Problem check_seed(std::uint32_t layer, std::uint32_t seed, SeedState state, const Bounds& b) {
  if (auto p = layer_id("layer", layer, b, true)) return p;
  if (auto p = seed_id("seed", seed, layer, b)) return p;
  return enum_value("state", state, "SeedState");
}

Problem check_envelope(const Envelope& e, const Bounds& b) {
  if (auto p = enum_value("envelope.priority", e.priority(), "Priority")) return p;
  if (const auto* s = e.source()) {
    if (auto p = enum_value("envelope.source.role", s->role(), "Role")) return p;
    if (auto p = rank_id("envelope.source.rank", s->rank(), b, true)) return p;
    if (auto p = text("envelope.source.job_id", s->job_id(), b)) return p;
    if (auto p = text("envelope.source.host", s->host(), b)) return p;
  }
  return std::nullopt;
}

Problem check(const Message& m, const Bounds& b) {
  if (auto p = check_envelope(m.envelope(), b)) return p;
  if (const auto* x = m.body<TelemetryBatch>()) return check(*x, b);
  if (const auto* x = m.body<Event>()) return check(*x, b);
  if (const auto* x = m.body<Command>()) return check(*x, b);
  if (const auto* x = m.body<CommandResult>()) return check(*x, b);
  if (const auto* x = m.body<StateSnapshot>()) return check(*x, b);
  if (const auto* x = m.body<RouteTable>()) return check(*x, b);
  if (const auto* x = m.body<Heartbeat>()) return check(*x, b);
  if (const auto* x = m.body<CommandDispatch>()) return check(*x, b);
  return std::nullopt;
}

std::string field_of(std::string_view problem) {
  const auto colon = problem.find(':');
  const std::string_view path = problem.substr(0, colon);
  std::string out;
  out.reserve(path.size());
  bool in_index = false;
  for (const char c : path) {
    if (c == '[') {
      in_index = true;
      out += "[]";
    } else if (c == ']') {
      in_index = false;
    } else if (!in_index) {
      out += c;
    }
  }
  return out;
}

bool RejectThrottle::should_log(std::string_view kind, std::string_view problem, std::uint64_t& suppressed,
                                Clock::time_point now) {
  ++total_;
  auto key = std::string(kind) + "/" + field_of(problem);
  auto it = fields_.find(key);
  if (it == fields_.end()) {
    if (fields_.size() >= kMaxFields) {
      ++overflow_;
      return false;
    }
    fields_.emplace(std::move(key), Field{now, 0});
    suppressed = 0;
    return true;
  }
  if (now - it->second.logged < interval_) {
    ++it->second.suppressed;
    return false;
  }
  suppressed = it->second.suppressed;
  it->second = Field{now, 0};
  return true;
}

}  // namespace esper::wire
