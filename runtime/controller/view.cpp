#include "controller/view.hpp"

#include <algorithm>
#include <cmath>

namespace esper::controller {

using wire::SeedState;
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

bool is_terminal(SeedState s) noexcept { return s >= SeedState::FOSSILIZED; }
bool contributes(SeedState s) noexcept { return s >= SeedState::GRAFTING && s <= SeedState::FOSSILIZED; }
bool growing(SeedState s) noexcept { return s == SeedState::GERMINATED || s == SeedState::TRAINING; }

double SeedView::task_loss() const { return has_metrics ? static_cast<double>(last.task_loss()) : kNaN; }

double SeedView::shadow_gain() const {
  if (!has_metrics || !(last.task_loss() > 0.0f)) return kNaN;
  return (static_cast<double>(last.task_loss()) - last.shadow_loss()) / last.task_loss();
}

double SeedView::improvement() const {
  if (!has_metrics || !(baseline_loss > 0.0)) return kNaN;
  return (baseline_loss - last.task_loss()) / baseline_loss;
}

std::array<std::uint32_t, kStates> LayerView::counts() const {
  std::array<std::uint32_t, kStates> c{};
  // States are checked where they enter the view; the index is checked again, should one not be.
  for (const auto& [id, s] : seeds) {
    if (const auto i = wire::index_of_checked(s.state); i && *i < c.size()) ++c[*i];
  }
  return c;
}

double LayerView::median_task_loss() const {
  std::vector<double> v;
  for (const auto& [id, s] : seeds) {
    if (s.has_metrics && std::isfinite(s.task_loss())) v.push_back(s.task_loss());
  }
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char* metric_name(Metric m) noexcept {
  switch (m) {
    case Metric::TaskLoss: return "task_loss";
    case Metric::ShadowLoss: return "shadow_loss";
    case Metric::ShadowGain: return "shadow_gain";
    case Metric::Improvement: return "improvement";
    case Metric::Alpha: return "alpha";
    case Metric::Health: return "health";
    case Metric::GradNorm: return "grad_norm";
    case Metric::StepsInState: return "steps_in_state";
  }
  return "?";
}

double metric_value(const SeedView& s, Metric m) {
  // Metrics from before the seed's last transition describe another state: unknown until the
  // first record of the new one.
  if (!s.has_metrics || s.last.step() < s.state_step) return kNaN;
  switch (m) {
    case Metric::TaskLoss: return s.last.task_loss();
    case Metric::ShadowLoss: return s.last.shadow_loss();
    case Metric::ShadowGain: return s.shadow_gain();
    case Metric::Improvement: return s.improvement();
    case Metric::Alpha: return s.last.alpha();
    case Metric::Health: return s.last.health();
    case Metric::GradNorm: return s.last.grad_norm();
    case Metric::StepsInState: return s.last.steps_in_state();
  }
  return kNaN;
}

PopulationView::PopulationView(wire::Bounds bounds) : bounds_(std::move(bounds)) {}

void PopulationView::reject(const char* kind, std::int32_t rank, const std::string& problem) {
  ++values_rejected_;
  reject_log_.reject("population view", kind, rank, problem);
}

void PopulationView::enter(SeedView& s, SeedState to, std::uint64_t step) {
  if (to == s.state) return;
  const bool failed = to == SeedState::CULLED || to == SeedState::CANCELLED || to == SeedState::ROLLED_BACK;
  if (failed) ++s.failures;
  if (to == SeedState::DORMANT) s.baseline_loss = kNaN;  // a fresh seed
  s.state = to;
  s.state_step = step;
}

std::size_t PopulationView::on_telemetry(const wire::TelemetryBatch& batch,
                                         std::vector<std::pair<std::uint32_t, wire::SeedMetrics>>* fresh) {
  if (auto problem = wire::check(batch, bounds_)) {
    reject("TelemetryBatch", batch.rank(), *problem);
    return 0;
  }
  auto& layer = layers_[batch.layer()];
  layer.layer = batch.layer();
  if (batch.rank() >= 0) add_rank(layer, batch.rank());
  if (batch.layers() != nullptr && batch.layers()->size() > 0) {
    const auto* lm = batch.layers()->Get(batch.layers()->size() - 1);
    if (lm->step() >= layer.step) layer.loss = lm->loss();
  }
  std::size_t n = 0;
  if (batch.seeds() == nullptr) return n;
  for (const auto* r : *batch.seeds()) {
    ++records_;
    auto& s = layer.seeds[r->seed()];
    if (s.has_metrics && r->step() <= s.last.step()) continue;  // seen (a replica's copy) or older
    ++n;
    if (fresh != nullptr) fresh->emplace_back(batch.layer(), *r);
    s.last = *r;
    s.has_metrics = true;
    layer.step = std::max(layer.step, r->step());
    step_ = std::max(step_, r->step());
    // The record is measured after the transitions of its step's boundary were applied.
    if (r->step() >= s.state_step) enter(s, r->state(), r->step());
    if (!contributes(s.state) && std::isfinite(r->task_loss())) s.baseline_loss = r->task_loss();
  }
  return n;
}

bool PopulationView::on_event(const wire::Event& event, std::int32_t source_rank) {
  auto problem = wire::check(event, bounds_);
  if (!problem && (source_rank < -1 || source_rank >= bounds_.ranks)) {
    problem = "source rank: " + std::to_string(source_rank) + " is not a rank id";
  }
  if (problem) {
    reject("Event", source_rank, *problem);
    return false;
  }
  if (const auto* j = event.body_as_RankJoined()) {
    if (j->layers() == nullptr) return true;
    for (const auto l : *j->layers()) {
      // A rank of the job may hold layers this view does not watch: those are not shown.
      if (!bounds_.hosted.empty() && !bounds_.hosted.contains(l)) continue;
      auto& layer = layers_[l];
      layer.layer = l;
      add_rank(layer, j->rank());
    }
    return true;
  }
  if (const auto* lost = event.body_as_RankLost()) {
    for (auto& [id, layer] : layers_) layer.ranks.erase(lost->rank());
    return true;
  }
  if (const auto* t = event.body_as_StateTransition()) {
    auto& layer = layers_[event.layer()];
    layer.layer = event.layer();
    if (source_rank >= 0) add_rank(layer, source_rank);
    auto& s = layer.seeds[t->seed()];
    if (event.step() >= s.state_step || s.state == t->from()) enter(s, t->to(), event.step());
  }
  return true;
}

void PopulationView::load(const fabric::JobState& state) {
  for (const auto& [key, seed] : state.seeds()) {
    auto problem = wire::check_seed(key.first, key.second, seed.state, bounds_);
    if (!problem && (seed.rank < -1 || seed.rank >= bounds_.ranks)) {
      problem = "rank: " + std::to_string(seed.rank) + " is not a rank id";
    }
    if (problem) {
      reject("snapshot entry", seed.rank, *problem);
      continue;
    }
    auto& layer = layers_[key.first];
    layer.layer = key.first;
    if (seed.rank >= 0) add_rank(layer, seed.rank);
    auto& s = layer.seeds[key.second];
    s.state = seed.state;
  }
}

bool PopulationView::set_state(std::uint32_t layer, std::uint32_t seed, SeedState state, std::uint64_t step) {
  if (auto problem = wire::check_seed(layer, seed, state, bounds_)) {
    reject("command outcome", -1, *problem);
    return false;
  }
  auto& l = layers_[layer];
  l.layer = layer;
  auto& s = l.seeds[seed];
  if (step >= s.state_step) enter(s, state, step);
  return true;
}

void PopulationView::add_rank(LayerView& layer, std::int32_t rank) {
  layer.ranks.insert(rank);
  ranks_seen_.insert(rank);
}

std::set<std::int32_t> PopulationView::live_ranks() const {
  std::set<std::int32_t> live;
  for (const auto& [id, layer] : layers_) live.insert(layer.ranks.begin(), layer.ranks.end());
  return live;
}

const LayerView* PopulationView::layer(std::uint32_t id) const {
  const auto it = layers_.find(id);
  return it == layers_.end() ? nullptr : &it->second;
}

std::vector<std::uint32_t> PopulationView::select(std::uint32_t layer_id, const Selection& sel) const {
  const auto* layer = this->layer(layer_id);
  if (layer == nullptr) return {};
  std::vector<std::pair<double, std::uint32_t>> picked;
  for (const auto& [id, s] : layer->seeds) {
    if (sel.exclude.contains(id) || s.failures > sel.max_failures) continue;
    if (!sel.from.empty() && std::find(sel.from.begin(), sel.from.end(), s.state) == sel.from.end()) continue;
    const bool within = std::all_of(sel.bounds.begin(), sel.bounds.end(), [&](const Bound& b) {
      const double v = metric_value(s, b.metric);
      return v >= b.min && v <= b.max;  // false for NaN
    });
    if (!within) continue;
    const double loss = s.task_loss();
    picked.emplace_back(std::isfinite(loss) ? -loss : 0.0, id);
  }
  std::sort(picked.begin(), picked.end());
  std::vector<std::uint32_t> out;
  for (const auto& [key, id] : picked) {
    if (sel.limit != 0 && out.size() >= sel.limit) break;
    out.push_back(id);
  }
  return out;
}

}  // namespace esper::controller
