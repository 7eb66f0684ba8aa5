// The morphogenesis driver: teacher, frozen base, lifecycle-driven seeds (morphogenesis.hpp).
#include "morphogenesis/morphogenesis.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace esper::morphogenesis {
namespace {

using lifecycle::State;

std::size_t sz(int n) { return static_cast<std::size_t>(n); }

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Independent streams of one seed: the teacher, the training batches, the held-out set.
enum Stream : std::uint64_t { kTeacher = 1, kTraining = 2, kHeldOut = 3 };
std::uint64_t stream_seed(std::uint64_t seed, Stream s) { return splitmix64(seed ^ splitmix64(s)); }

void check_config(const Config& c) {
  auto fail = [](const std::string& what) { throw Error("morphogenesis config: " + what); };
  if (c.in_features < 1 || c.out_features < 1) fail("in_features and out_features must be >= 1");
  if (c.chunks < 1 || c.chunks > c.out_features) fail("need 1 <= chunks <= out_features");
  if (c.rank < 1 || c.residual_rank < 0) fail("need rank >= 1 and residual_rank >= 0");
  if (c.batch < 1 || c.held_out < 1) fail("batch and held_out must be >= 1");
  if (!(c.smoothing >= 0.0 && c.smoothing < 1.0)) fail("smoothing must lie in [0, 1)");
  if (c.stability_window < 2) fail("stability_window must be >= 2");
  if (!(c.residual_scale >= 0.0f && c.base_noise >= 0.0f && c.label_noise >= 0.0f)) fail("scales must be >= 0");
  if (const auto problem = lifecycle::check_config(c.lifecycle)) fail(*problem);
}

std::unique_ptr<kernels::SeedLayer> make_layer(const Config& c) {
  kernels::SeedLayerConfig lc;
  lc.in_features = c.in_features;
  lc.out_features = c.out_features;
  lc.chunks = c.chunks;
  lc.rank = c.rank;
  lc.blueprint = c.blueprint;
  lc.train_base = false;
  lc.optimizer = c.optimizer;
  lc.init_seed = c.seed;
  auto made = kernels::make_seed_layer(c.backend, lc, kernels::Memory::Host);
  if (!made) throw Error("morphogenesis: " + made.error().message());
  return std::move(made).value();
}

double mean_squared_error(std::span<const float> out, std::span<const float> target) {
  double s = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = static_cast<double>(out[i]) - target[i];
    s += d * d;
  }
  return s / static_cast<double>(out.size());
}

}  // namespace

std::uint64_t Rng::next_u64() {
  state_ += 0x9E3779B97F4A7C15ull;
  return splitmix64(state_);
}

double Rng::uniform() { return (static_cast<double>(next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

float Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return static_cast<float>(spare_);
  }
  const double radius = std::sqrt(-2.0 * std::log(uniform())), angle = 2.0 * std::numbers::pi * uniform();
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return static_cast<float>(radius * std::cos(angle));
}

Teacher::Teacher(const Config& c)
    : in_(c.in_features), out_(c.out_features), chunks_(c.chunks), rank_(c.residual_rank), label_noise_(c.label_noise) {
  Rng rng(stream_seed(c.seed, kTeacher));
  const float w_scale = 1.0f / std::sqrt(static_cast<float>(in_));
  weight_.resize(sz(out_) * sz(in_));
  for (auto& w : weight_) w = w_scale * rng.normal();
  bias_.resize(sz(out_));
  for (auto& b : bias_) b = 0.1f * rng.normal();
  // Residual of chunk c: U_c V_c x, V_c ~ N(0, 1/in) so that V_c x has unit variance, U_c scaled so
  // that each output's residual has variance residual_scale².
  const float u_scale = rank_ > 0 ? c.residual_scale / std::sqrt(static_cast<float>(rank_)) : 0.0f;
  u_.resize(sz(out_) * sz(rank_));
  for (auto& u : u_) u = u_scale * rng.normal();
  v_.resize(sz(c.chunks) * sz(rank_) * sz(in_));
  for (auto& v : v_) v = w_scale * rng.normal();
  base_weight_ = weight_;
  for (auto& w : base_weight_) w += c.base_noise * w_scale * rng.normal();
  const auto partition = kernels::partition_features(out_, c.chunks);
  chunk_of_.resize(sz(out_));
  for (int j = 0; j < out_; ++j) chunk_of_[sz(j)] = partition.chunk_of(j);
}

void Teacher::sample(Rng& rng, int batch, std::span<float> x, std::span<float> target) const {
  if (x.size() != sz(batch) * sz(in_) || target.size() != sz(batch) * sz(out_)) {
    throw Error("Teacher::sample: x must be batch×in and target batch×out");
  }
  for (auto& v : x) v = rng.normal();
  std::vector<double> proj(sz(chunks_) * sz(rank_));
  for (int row = 0; row < batch; ++row) {
    const float* xr = x.data() + sz(row) * sz(in_);
    for (std::size_t k = 0; k < proj.size(); ++k) {
      double s = 0.0;
      for (int i = 0; i < in_; ++i) s += static_cast<double>(v_[k * sz(in_) + sz(i)]) * xr[i];
      proj[k] = s;
    }
    for (int j = 0; j < out_; ++j) {
      double s = bias_[sz(j)];
      for (int i = 0; i < in_; ++i) s += static_cast<double>(weight_[sz(j) * sz(in_) + sz(i)]) * xr[i];
      const std::size_t c = sz(chunk_of_[sz(j)]);
      for (int k = 0; k < rank_; ++k)
        s += static_cast<double>(u_[sz(j) * sz(rank_) + sz(k)]) * proj[c * sz(rank_) + sz(k)];
      target[sz(row) * sz(out_) + sz(j)] = static_cast<float>(s) + label_noise_ * rng.normal();
    }
  }
}

Driver::Driver(const Config& config, Replication replication)
    : config_((check_config(config), config)),
      replication_(std::move(replication)),
      teacher_(config_),
      rng_(config_.data_stream == 0 ? stream_seed(config_.seed, kTraining)
                                    : stream_seed(config_.seed, kTraining) ^ splitmix64(config_.data_stream)),
      layer_(make_layer(config_)),
      base_(make_layer(config_)),
      population_(static_cast<std::uint32_t>(config_.chunks), config_.lifecycle),
      x_(sz(config_.batch) * sz(config_.in_features)),
      target_(sz(config_.batch) * sz(config_.out_features)),
      out_(target_.size()),
      shadow_out_(target_.size()),
      grad_(target_.size()),
      held_x_(sz(config_.held_out) * sz(config_.in_features)),
      held_target_(sz(config_.held_out) * sz(config_.out_features)),
      held_out_(held_target_.size()),
      metrics_(sz(config_.chunks)),
      ema_loss_(sz(config_.chunks)),
      ema_base_(sz(config_.chunks)),
      ema_shadow_(sz(config_.chunks)),
      window_(sz(config_.chunks), std::vector<double>(config_.stability_window, 0.0)) {
  for (auto* layer : {layer_.get(), base_.get()}) {
    layer->write(kernels::Tensor::BaseWeight, teacher_.base_weight());
    layer->write(kernels::Tensor::BaseBias, teacher_.base_bias());
  }
  Rng held(stream_seed(config_.seed, kHeldOut));
  teacher_.sample(held, config_.held_out, held_x_, held_target_);
  params_.resize(kernels::tensor_size(layer_->config(), kernels::Tensor::SeedA) +
                 kernels::tensor_size(layer_->config(), kernels::Tensor::SeedB));
  sync_layer();
}

void Driver::sync_layer() {
  std::vector<kernels::SeedState> states(sz(config_.chunks));
  std::vector<float> alphas(sz(config_.chunks));
  for (std::uint32_t c = 0; c < population_.size(); ++c) {
    states[c] = population_.seed(c).state();
    alphas[c] = population_.seed(c).alpha();
  }
  layer_->set_seeds(states, alphas);
}

// The shadow output: the layer's output with every TRAINING seed blended at α = 1 (as GRAFTING at
// the end of its ramp), then the layer is set back. False when no seed is in TRAINING.
bool Driver::shadow_forward() {
  std::vector<kernels::SeedState> states = layer_->states();
  std::vector<float> alphas = layer_->alphas();
  bool any = false;
  for (std::size_t c = 0; c < states.size(); ++c) {
    if (states[c] != State::TRAINING) continue;
    states[c] = State::GRAFTING;
    alphas[c] = 1.0f;
    any = true;
  }
  if (!any) return false;
  layer_->set_seeds(states, alphas);
  layer_->forward(x_, shadow_out_, kernels::ForwardOptions{{}, false});
  sync_layer();
  return true;
}

StepReport Driver::step() {
  teacher_.sample(rng_, config_.batch, x_, target_);
  const bool shadow = shadow_forward();
  layer_->forward(x_, out_, kernels::ForwardOptions{target_, true});
  // d/do of Σ(o − t)² / (batch·out); a TRAINING chunk's at its shadow output y_c + f_c.
  const float scale = 2.0f / static_cast<float>(out_.size());
  const auto& states = layer_->states();
  const auto& partition = layer_->partition();
  const auto n = sz(config_.out_features);
  for (std::size_t i = 0; i < out_.size(); ++i) {
    const bool in_shadow = shadow && states[sz(partition.chunk_of(static_cast<int>(i % n)))] == State::TRAINING;
    grad_[i] = scale * ((in_shadow ? shadow_out_[i] : out_[i]) - target_[i]);
  }
  layer_->backward(grad_, {});
  if (replication_.reduce_gradients) replication_.reduce_gradients(*layer_);
  layer_->step();

  auto telemetry = layer_->telemetry();
  if (replication_.reduce_losses) {
    std::vector<double> losses;
    for (const auto& t : telemetry) losses.insert(losses.end(), {t.loss, t.loss_without_seed, t.shadow_loss});
    replication_.reduce_losses(losses);
    for (std::size_t c = 0; c < telemetry.size(); ++c) {
      telemetry[c].loss = losses[3 * c];
      telemetry[c].loss_without_seed = losses[3 * c + 1];
      telemetry[c].shadow_loss = losses[3 * c + 2];
    }
  }
  StepReport report;
  for (const auto& t : telemetry) {
    report.loss += t.loss;
    report.loss_without_seeds += t.loss_without_seed;
  }
  update_metrics(telemetry);
  telemetry_ = std::move(telemetry);
  population_.tick(metrics_);

  for (std::uint32_t id = 0; config_.auto_advance && id < population_.size(); ++id) {
    report.transitions += advance_seed(id, report.rejections);
  }
  sync_layer();
  report.step = population_.step();
  report.states = population_.count_by_state();
  return report;
}

void Driver::update_metrics(const std::vector<kernels::ChunkTelemetry>& telemetry) {
  // Relative weight drift per seed: A_c and the rows of B_c.
  const auto& lc = layer_->config();
  const std::size_t a_size = kernels::tensor_size(lc, kernels::Tensor::SeedA);
  prev_params_.swap(params_);
  params_.resize(prev_params_.size());
  layer_->read(kernels::Tensor::SeedA, std::span<float>(params_).first(a_size));
  layer_->read(kernels::Tensor::SeedB, std::span<float>(params_).subspan(a_size));
  const auto& partition = layer_->partition();
  const std::size_t a_block = sz(lc.rank) * sz(lc.in_features);

  const bool first = population_.step() == 0;
  const double s = config_.smoothing;
  auto smooth = [&](double& ema, double value) { ema = first ? value : s * ema + (1.0 - s) * value; };
  const std::size_t w = config_.stability_window;
  window_fill_ = std::min(window_fill_ + 1, w);
  for (std::size_t c = 0; c < telemetry.size(); ++c) {
    const auto& t = telemetry[c];
    smooth(ema_loss_[c], t.loss);
    smooth(ema_base_[c], t.loss_without_seed);
    smooth(ema_shadow_[c], t.shadow_loss);
    window_[c][window_head_] = ema_loss_[c];

    auto& m = metrics_[c];
    m.chunk_loss = ema_loss_[c];
    m.shadow_loss = ema_shadow_[c];
    m.performance_delta = ema_base_[c] - ema_shadow_[c];
    m.improvement = ema_base_[c] > 0.0 ? (ema_base_[c] - ema_loss_[c]) / ema_base_[c] : 0.0;
    if (window_fill_ == w) {
      double mean = 0.0, sq = 0.0;
      for (const double v : window_[c]) mean += v;
      mean /= static_cast<double>(w);
      for (const double v : window_[c]) sq += (v - mean) * (v - mean);
      const double rel_std = mean > 0.0 ? std::sqrt(sq / static_cast<double>(w)) / mean : 0.0;
      m.stability = std::max(0.0, 1.0 - rel_std);
    }

    double diff = 0.0, norm = 0.0;
    auto accumulate = [&](std::size_t begin, std::size_t end) {
      if (prev_params_.empty()) return;
      for (std::size_t i = begin; i < end; ++i) {
        const double d = static_cast<double>(params_[i]) - prev_params_[i];
        diff += d * d;
        norm += static_cast<double>(prev_params_[i]) * prev_params_[i];
      }
    };
    accumulate(c * a_block, (c + 1) * a_block);
    accumulate(a_size + sz(partition.begin(static_cast<int>(c))) * sz(lc.rank),
               a_size + sz(partition.end(static_cast<int>(c))) * sz(lc.rank));
    m.weight_drift = norm > 0.0 ? std::sqrt(diff / norm) : 0.0;
  }
  window_head_ = (window_head_ + 1) % w;
}

lifecycle::TransitionReport Driver::transition(const lifecycle::Selection& selection, State to,
                                               const std::string& reason, bool force) {
  auto report = population_.transition(selection, to, reason, force, metrics_);
  for (const auto& o : report.outcomes) {
    if (o.applied()) {
      ++transitions_;
      if (to == State::DORMANT) layer_->reset_seed(static_cast<int>(o.seed));
    } else {
      ++rejections_[static_cast<std::size_t>(o.rejection->rule)];
    }
  }
  sync_layer();
  return report;
}

void Driver::set_seed_settings(std::uint32_t seed, const kernels::SeedSettings& settings) {
  if (seed >= population_.size()) {
    throw Error("set_seed_settings: seed " + std::to_string(seed) + " is not in a population of " +
                std::to_string(population_.size()));
  }
  layer_->set_seed_settings(static_cast<int>(seed), settings);
}

void Driver::set_grafting(std::uint32_t seed, const lifecycle::GraftingConfig& grafting) {
  population_.seed(seed).set_grafting(grafting);  // throws for a seed outside the population
}

bool Driver::try_transition(std::uint32_t id, State to, const char* reason, std::uint32_t& rejected) {
  const auto report = population_.transition(lifecycle::Selection::ids({id}), to, reason, false, metrics_);
  const auto& outcome = report.outcomes.at(0);
  if (outcome.applied()) {
    ++transitions_;
    return true;
  }
  ++rejections_[static_cast<std::size_t>(outcome.rejection->rule)];
  ++rejected;
  return false;
}

// One attempt per seed per step, once its minimum steps in state are met.
std::uint32_t Driver::advance_seed(std::uint32_t id, std::uint32_t& rejected) {
  const auto& seed = population_.seed(id);
  const State state = seed.state();
  const std::uint32_t steps = seed.steps_in_state();
  const std::uint32_t minimum = population_.config().minimum_steps.in(state);
  if (steps < minimum) return 0;
  const bool impatient = steps > minimum + config_.patience;
  auto go = [&](State to, const char* reason) -> std::uint32_t {
    return try_transition(id, to, reason, rejected) ? 1 : 0;
  };
  auto cull = [&](const char* reason) -> std::uint32_t {
    const std::uint32_t moved = go(State::CULLED, reason);
    culls_ += moved;
    return moved;
  };
  switch (state) {
    case State::DORMANT:
      if (population_.step() < static_cast<std::uint64_t>(id) * config_.germination_interval) return 0;
      return go(State::GERMINATED, "scheduled germination");
    case State::GERMINATED:
      return go(State::TRAINING, "train in the shadow");
    case State::TRAINING:
      if (impatient) return cull("shadow loss did not beat the chunk loss in time");
      return go(State::GRAFTING, "shadow loss below the chunk loss");
    case State::GRAFTING:
      return go(State::STABILIZATION, "ramp complete");
    case State::STABILIZATION:
      return go(State::EVALUATING, "stabilized");
    case State::EVALUATING:
      if (impatient) return cull("no stable positive performance delta in time");
      return go(State::FINE_TUNING, "seed helps and is stable");
    case State::FINE_TUNING: {
      if (go(State::FOSSILIZED, "improvement is stable")) return 1;
      if (impatient && !(metrics_[id].improvement > 0.0)) return cull("fine-tuning does not improve on the base");
      return 0;
    }
    case State::CULLED:
    case State::CANCELLED:
    case State::ROLLED_BACK:
      if (!go(State::DORMANT, "free the slot")) return 0;
      layer_->reset_seed(static_cast<int>(id));
      return 1;
    case State::FOSSILIZED:
      return 0;
  }
  return 0;
}

double Driver::mse(kernels::SeedLayer& layer) {
  layer.forward(held_x_, held_out_, kernels::ForwardOptions{{}, false});
  return mean_squared_error(held_out_, held_target_);
}

double Driver::held_out_loss() { return mse(*layer_); }
double Driver::base_held_out_loss() { return mse(*base_); }

std::uint64_t Driver::digest() const { return splitmix64(layer_->digest() ^ splitmix64(population_.digest())); }

Summary Driver::summary() {
  Summary s;
  s.steps = population_.step();
  s.base_loss = base_held_out_loss();
  s.final_loss = held_out_loss();
  s.reduction = s.base_loss > 0.0 ? 1.0 - s.final_loss / s.base_loss : 0.0;
  s.states = population_.count_by_state();
  for (const auto& seed : population_.seeds()) s.seed_states.push_back(seed.state());
  s.transitions = transitions_;
  s.culls = culls_;
  s.rejections = rejections_;
  s.digest = digest();
  return s;
}

}  // namespace esper::morphogenesis
