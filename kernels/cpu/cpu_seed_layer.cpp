// CPU reference seed layer: the test oracle for the CUDA kernels, single-threaded, fp32 arithmetic
// with telemetry and loss sums in double.
// Forward: Z = X Aᵀ for the evaluated seeds (cached for backward), then o = X Wᵀ tile by tile, and on
// each finished tile, still in cache, y = o + b, o = y + α f with f = B_c h(Z_c) (h = identity or ReLU)
// and the chunk's telemetry: the activations are read once. A seed with α = 0 is not added at all,
// so its output is bit-identical to the base.
// Backward: dZ_c = (G_c B_c) ⊙ h'(Z_c); dB_c = s_c G_cᵀ h(Z_c), dA_c = s_c dZ_cᵀ X with s_c from
// seed_gradient_scale; dx = G W + Σ_c α_c dZ_c A_c; dW = Gᵀ X, db = Σ_b G when the base trains.
// A seed of rank r_c < r: its tail (rows r_c.. of A_c, columns r_c.. of B_c, their gradients and
// moments) is zeroed when the rank is set and on write; backward leaves the tail's dZ and dB at 0
// and step skips it, so the tail stays 0 whatever a caller reduces into the gradients.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gemm.hpp"
#include "kernels/init.hpp"
#include "kernels/layer_math.hpp"
#include "kernels/seed_layer.hpp"

namespace esper::kernels {
namespace {

using cpu::gemm_nt;
using cpu::transpose;

std::size_t sz(int n) { return static_cast<std::size_t>(n); }

struct AdamMoments {
  std::vector<float> m, v;
  void resize(std::size_t n) { m.assign(n, 0.0f); v.assign(n, 0.0f); }
};

class CpuSeedLayer final : public SeedLayer {
 public:
  explicit CpuSeedLayer(const SeedLayerConfig& config);

  Backend backend() const override { return Backend::Cpu; }
  void reset_seed(int chunk) override;
  void forward(std::span<const float> x, std::span<float> out, const ForwardOptions& options) override;
  void backward(std::span<const float> grad_out, std::span<float> grad_x) override;
  void step() override;
  std::vector<ChunkTelemetry> telemetry() const override { return telemetry_; }
  void read(Tensor tensor, std::span<float> values) const override;
  void write(Tensor tensor, std::span<const float> values) override;
  void read_gradient(Tensor tensor, std::span<float> values) const override;
  std::span<float> gradient_buffer(Tensor tensor) override {
    auto& g = const_cast<std::vector<float>&>(gradient(tensor));  // NOLINT: our own member
    return {g.data(), g.size()};
  }
  std::uint64_t digest() const override;

 protected:
  void seeds_changed() override {}
  void seed_settings_changed(int chunk, const SeedSettings& previous) override;

 private:
  template <bool kTelemetry, bool kTarget>
  void blend_tile(int m0, int m1, int n0, int n1, float* out, const float* target);
  void draw_seed_a(int chunk);
  void zero_seed_tail(int chunk);
  std::vector<float>& tensor(Tensor t);
  const std::vector<float>& tensor(Tensor t) const { return const_cast<CpuSeedLayer*>(this)->tensor(t); }
  const std::vector<float>& gradient(Tensor t) const;
  bool mlp() const { return config_.blueprint == Blueprint::BottleneckMlp; }
  float hidden(float z) const { return mlp() ? std::max(z, 0.0f) : z; }
  int hidden_width() const { return config_.chunks * config_.rank; }

  std::vector<int> chunk_of_feature_;
  std::vector<float> w_, bias_, a_, b_;          // parameters
  std::vector<float> dw_, dbias_, da_, db_;      // gradients of the last backward
  AdamMoments adam_w_, adam_bias_, adam_a_, adam_b_;
  std::vector<std::uint64_t> seed_steps_;
  std::uint64_t base_steps_ = 0;
  std::vector<std::uint32_t> generation_;
  std::vector<unsigned char> seed_has_gradient_;  // set by backward, consumed by step
  bool base_has_gradient_ = false;

  // Per forward: control snapshot, caches and telemetry accumulators.
  std::vector<SeedState> forward_states_;
  std::vector<float> forward_alphas_;
  std::vector<unsigned char> evaluated_;
  std::vector<float> alpha_;
  const float* x_ = nullptr;
  int batch_ = 0;
  std::vector<float> z_;  // batch × C·r pre-activations (evaluated chunks only)
  std::vector<double> tel_sum_, tel_sq_, tel_loss_, tel_loss_base_, tel_loss_shadow_;
  std::vector<int> alive_;  // per feature: samples with o > dead_threshold
  std::vector<ChunkTelemetry> telemetry_;

  // Backward scratch.
  std::vector<float> xt_, gt_, wt_, at_, dz_, dzt_, dz_alpha_;
};

CpuSeedLayer::CpuSeedLayer(const SeedLayerConfig& config)
    : SeedLayer(config),
      chunk_of_feature_(sz(config.out_features)),
      w_(tensor_size(config, Tensor::BaseWeight)),
      bias_(tensor_size(config, Tensor::BaseBias)),
      a_(tensor_size(config, Tensor::SeedA)),
      b_(tensor_size(config, Tensor::SeedB), 0.0f),
      dw_(w_.size(), 0.0f),
      dbias_(bias_.size(), 0.0f),
      da_(a_.size(), 0.0f),
      db_(b_.size(), 0.0f),
      seed_steps_(sz(config.chunks), 0),
      generation_(sz(config.chunks), 0),
      seed_has_gradient_(sz(config.chunks), 0),
      telemetry_(sz(config.chunks)) {
  for (int c = 0; c < config.chunks; ++c) {
    for (int j = partition_.begin(c); j < partition_.end(c); ++j) chunk_of_feature_[sz(j)] = c;
  }
  detail::init_base(config, w_, bias_);
  for (int c = 0; c < config.chunks; ++c) draw_seed_a(c);
  if (config.optimizer.kind == OptimizerKind::Adam) {
    adam_a_.resize(a_.size());
    adam_b_.resize(b_.size());
    if (config.train_base) {
      adam_w_.resize(w_.size());
      adam_bias_.resize(bias_.size());
    }
  }
}

void CpuSeedLayer::draw_seed_a(int chunk) {
  detail::init_seed_a(config_, chunk, generation_[sz(chunk)], a_.data() + sz(chunk) * detail::seed_a_block(config_));
}

void CpuSeedLayer::reset_seed(int chunk) {
  if (chunk < 0 || chunk >= config_.chunks) throw Error("reset_seed: chunk out of range");
  restore_default_settings(chunk);
  ++generation_[sz(chunk)];
  draw_seed_a(chunk);
  const std::size_t a_block = sz(config_.rank) * sz(config_.in_features);
  const std::size_t b0 = sz(partition_.begin(chunk)) * sz(config_.rank), b1 = sz(partition_.end(chunk)) * sz(config_.rank);
  std::fill(b_.begin() + static_cast<long>(b0), b_.begin() + static_cast<long>(b1), 0.0f);
  for (auto* v : {&da_, &adam_a_.m, &adam_a_.v}) {
    if (!v->empty()) std::fill_n(v->begin() + static_cast<long>(sz(chunk) * a_block), a_block, 0.0f);
  }
  for (auto* v : {&db_, &adam_b_.m, &adam_b_.v}) {
    if (!v->empty()) std::fill(v->begin() + static_cast<long>(b0), v->begin() + static_cast<long>(b1), 0.0f);
  }
  seed_steps_[sz(chunk)] = 0;
  seed_has_gradient_[sz(chunk)] = 0;
}

void CpuSeedLayer::zero_seed_tail(int chunk) {
  const int rank = settings_[sz(chunk)].rank;
  if (rank == config_.rank) return;
  for (auto* v : {&a_, &da_, &adam_a_.m, &adam_a_.v}) {
    if (!v->empty()) detail::zero_beyond_rank(config_, partition_, chunk, rank, Tensor::SeedA, v->data());
  }
  for (auto* v : {&b_, &db_, &adam_b_.m, &adam_b_.v}) {
    if (!v->empty()) detail::zero_beyond_rank(config_, partition_, chunk, rank, Tensor::SeedB, v->data());
  }
}

void CpuSeedLayer::seed_settings_changed(int chunk, const SeedSettings& previous) {
  const int rank = settings_[sz(chunk)].rank;
  if (rank > previous.rank) {
    detail::init_seed_a_rows(config_, chunk, generation_[sz(chunk)], previous.rank, rank,
                             a_.data() + sz(chunk) * detail::seed_a_block(config_));
  }
  zero_seed_tail(chunk);
}

// The epilogue on rows [m0, m1) × features [n0, n1) of `out`, which holds X Wᵀ there.
template <bool kTelemetry, bool kTarget>
void CpuSeedLayer::blend_tile(int m0, int m1, int n0, int n1, float* out, const float* target) {
  const int n = config_.out_features, r = config_.rank, hw = hidden_width();
  const float threshold = config_.dead_threshold;
  for (int row = m0; row < m1; ++row) {
    float* o_row = out + static_cast<long>(row) * n;
    const float* z_row = z_.data() + static_cast<long>(row) * hw;
    const float* t_row = kTarget ? target + static_cast<long>(row) * n : nullptr;
    for (int j = n0; j < n1; ++j) {
      const int c = chunk_of_feature_[sz(j)];
      const float y = o_row[j] + bias_[sz(j)];
      float o = y, f = 0.0f;
      if (evaluated_[sz(c)]) {
        const float* bj = b_.data() + static_cast<long>(j) * r;
        const float* zc = z_row + static_cast<long>(c) * r;
        for (int k = 0; k < r; ++k) f += bj[k] * hidden(zc[k]);
        if (alpha_[sz(c)] != 0.0f) o = y + alpha_[sz(c)] * f;
      }
      o_row[j] = o;
      if constexpr (kTelemetry) {
        tel_sum_[sz(c)] += o;
        tel_sq_[sz(c)] += static_cast<double>(o) * o;
        alive_[sz(j)] += o > threshold ? 1 : 0;
        if constexpr (kTarget) {
          const double t = t_row[j], d = o - t, d_base = y - t;
          const double d_shadow = evaluated_[sz(c)] ? static_cast<double>(y + f) - t : d_base;
          tel_loss_[sz(c)] += d * d;
          tel_loss_base_[sz(c)] += d_base * d_base;
          tel_loss_shadow_[sz(c)] += d_shadow * d_shadow;
        }
      }
    }
  }
}

void CpuSeedLayer::forward(std::span<const float> x, std::span<float> out, const ForwardOptions& options) {
  const int batch = batch_of(x, out);
  const int in = config_.in_features, n = config_.out_features, r = config_.rank, hw = hidden_width(), C = config_.chunks;
  const bool with_target = !options.target.empty();
  if (with_target && options.target.size() != out.size()) throw Error("forward: target must be batch×out_features");
  x_ = x.data();
  batch_ = batch;
  forward_states_ = states_;
  forward_alphas_ = alphas_;
  evaluated_.assign(sz(C), 0);
  alpha_.assign(sz(C), 0.0f);
  for (int c = 0; c < C; ++c) {
    evaluated_[sz(c)] = seed_evaluated(states_[sz(c)]) ? 1 : 0;
    alpha_[sz(c)] = effective_alpha(states_[sz(c)], alphas_[sz(c)]);
  }

  z_.resize(sz(batch) * sz(hw));
  for (int c0 = 0; c0 < C;) {  // one product per run of consecutive evaluated seeds
    if (!evaluated_[sz(c0)]) { ++c0; continue; }
    int c1 = c0;
    while (c1 < C && evaluated_[sz(c1)]) ++c1;
    gemm_nt(batch, (c1 - c0) * r, in, x.data(), in, a_.data() + sz(c0) * sz(r) * sz(in), in, z_.data() + c0 * r, hw,
            1.0f, false);
    c0 = c1;
  }

  if (options.telemetry) {
    for (auto* v : {&tel_sum_, &tel_sq_, &tel_loss_, &tel_loss_base_, &tel_loss_shadow_}) v->assign(sz(C), 0.0);
    alive_.assign(sz(n), 0);
  }
  const float* target = options.target.data();
  auto run = [&](auto epilogue) { gemm_nt(batch, n, in, x.data(), in, w_.data(), in, out.data(), n, 1.0f, false, epilogue); };
  if (!options.telemetry) {
    run([&](int m0, int m1, int n0, int n1) { blend_tile<false, false>(m0, m1, n0, n1, out.data(), target); });
  } else if (!with_target) {
    run([&](int m0, int m1, int n0, int n1) { blend_tile<true, false>(m0, m1, n0, n1, out.data(), target); });
  } else {
    run([&](int m0, int m1, int n0, int n1) { blend_tile<true, true>(m0, m1, n0, n1, out.data(), target); });
  }

  if (options.telemetry) {
    const double scale = 1.0 / (static_cast<double>(batch) * n);
    for (int c = 0; c < C; ++c) {
      auto& t = telemetry_[sz(c)];
      t = ChunkTelemetry{};
      t.sum = tel_sum_[sz(c)];
      t.sum_squares = tel_sq_[sz(c)];
      t.elements = static_cast<std::int64_t>(batch) * partition_.size(c);
      for (int j = partition_.begin(c); j < partition_.end(c); ++j) t.dead_units += alive_[sz(j)] == 0 ? 1 : 0;
      if (with_target) {
        t.has_loss = true;
        t.loss = tel_loss_[sz(c)] * scale;
        t.loss_without_seed = tel_loss_base_[sz(c)] * scale;
        t.shadow_loss = tel_loss_shadow_[sz(c)] * scale;
      }
    }
  }
}

void CpuSeedLayer::backward(std::span<const float> grad_out, std::span<float> grad_x) {
  if (x_ == nullptr) throw Error("backward: no forward pass to differentiate");
  const int batch = batch_, in = config_.in_features, n = config_.out_features, r = config_.rank, hw = hidden_width();
  const int C = config_.chunks;
  if (grad_out.size() != sz(batch) * sz(n)) throw Error("backward: grad_out must be batch×out_features of the last forward");
  if (!grad_x.empty() && grad_x.size() != sz(batch) * sz(in)) throw Error("backward: grad_x must be batch×in_features");
  const float* g = grad_out.data();

  std::vector<float> scale(sz(C), 0.0f);
  std::vector<unsigned char> needs_dz(sz(C), 0);
  bool any_trains = false, any_input = false;
  for (int c = 0; c < C; ++c) {
    scale[sz(c)] = seed_gradient_scale(forward_states_[sz(c)], forward_alphas_[sz(c)]);
    const bool trains = seed_trains(forward_states_[sz(c)]);
    seed_has_gradient_[sz(c)] = trains ? 1 : 0;
    const bool feeds_input = !grad_x.empty() && evaluated_[sz(c)] && alpha_[sz(c)] != 0.0f;
    needs_dz[sz(c)] = (trains || feeds_input) ? 1 : 0;
    any_trains |= trains;
    any_input |= feeds_input;
    if (!trains) scale[sz(c)] = 0.0f;
  }

  std::fill(da_.begin(), da_.end(), 0.0f);
  std::fill(db_.begin(), db_.end(), 0.0f);
  if (any_trains || any_input) {
    dz_.assign(sz(batch) * sz(hw), 0.0f);
    for (int row = 0; row < batch; ++row) {
      const float* g_row = g + static_cast<long>(row) * n;
      const float* z_row = z_.data() + static_cast<long>(row) * hw;
      float* dz_row = dz_.data() + static_cast<long>(row) * hw;
      for (int c = 0; c < C; ++c) {
        if (!needs_dz[sz(c)]) continue;
        const int rank = settings_[sz(c)].rank;  // the tail's dZ and dB stay 0
        const float* zc = z_row + c * r;
        float* dzc = dz_row + c * r;
        for (int j = partition_.begin(c); j < partition_.end(c); ++j) {
          const float* bj = b_.data() + static_cast<long>(j) * r;
          float* dbj = db_.data() + static_cast<long>(j) * r;
          for (int k = 0; k < rank; ++k) {
            dzc[k] += g_row[j] * bj[k];
            dbj[k] += g_row[j] * hidden(zc[k]);  // scaled (or zeroed) per chunk below
          }
        }
        if (mlp()) {
          for (int k = 0; k < rank; ++k) dzc[k] = zc[k] > 0.0f ? dzc[k] : 0.0f;
        }
      }
    }
    for (int c = 0; c < C; ++c) {
      for (int i = partition_.begin(c) * r; i < partition_.end(c) * r; ++i) db_[sz(i)] *= scale[sz(c)];
    }
  }

  if (any_trains || config_.train_base) {
    xt_.resize(sz(in) * sz(batch));
    transpose(batch, in, x_, in, xt_.data(), batch);
  }
  if (any_trains) {
    dzt_.resize(sz(hw) * sz(batch));
    transpose(batch, hw, dz_.data(), hw, dzt_.data(), batch);
    for (int c0 = 0; c0 < C;) {
      if (scale[sz(c0)] == 0.0f) { ++c0; continue; }
      int c1 = c0;
      while (c1 < C && scale[sz(c1)] != 0.0f) ++c1;
      float* da_run = da_.data() + sz(c0) * sz(r) * sz(in);
      gemm_nt((c1 - c0) * r, in, batch, dzt_.data() + sz(c0) * sz(r) * sz(batch), batch, xt_.data(), batch, da_run, in,
              1.0f, false);
      for (int c = c0; c < c1; ++c) {
        if (scale[sz(c)] == 1.0f) continue;
        float* dac = da_.data() + sz(c) * sz(r) * sz(in);
        for (int i = 0; i < r * in; ++i) dac[i] *= scale[sz(c)];
      }
      c0 = c1;
    }
  }

  base_has_gradient_ = config_.train_base;
  if (config_.train_base) {
    gt_.resize(sz(n) * sz(batch));
    transpose(batch, n, g, n, gt_.data(), batch);
    gemm_nt(n, in, batch, gt_.data(), batch, xt_.data(), batch, dw_.data(), in, 1.0f, false);
    for (int j = 0; j < n; ++j) {
      double s = 0.0;
      for (int row = 0; row < batch; ++row) s += g[static_cast<long>(row) * n + j];
      dbias_[sz(j)] = static_cast<float>(s);
    }
  }

  if (!grad_x.empty()) {
    wt_.resize(sz(in) * sz(n));
    transpose(n, in, w_.data(), in, wt_.data(), n);
    gemm_nt(batch, in, n, g, n, wt_.data(), n, grad_x.data(), in, 1.0f, false);
    if (any_input) {
      dz_alpha_.assign(sz(batch) * sz(hw), 0.0f);
      for (int row = 0; row < batch; ++row) {
        for (int c = 0; c < C; ++c) {
          if (!evaluated_[sz(c)] || alpha_[sz(c)] == 0.0f) continue;
          for (int k = c * r; k < (c + 1) * r; ++k) {
            dz_alpha_[sz(row) * sz(hw) + sz(k)] = alpha_[sz(c)] * dz_[sz(row) * sz(hw) + sz(k)];
          }
        }
      }
      at_.resize(sz(in) * sz(hw));
      transpose(hw, in, a_.data(), in, at_.data(), hw);
      gemm_nt(batch, in, hw, dz_alpha_.data(), hw, at_.data(), hw, grad_x.data(), in, 1.0f, true);
    }
  }
}

void apply_update(const OptimizerConfig& opt, float learning_rate, std::uint64_t step, float* p, const float* g,
                  AdamMoments* adam, std::size_t offset, std::size_t count) {
  if (opt.kind == OptimizerKind::Sgd) {
    for (std::size_t i = 0; i < count; ++i) p[i] -= learning_rate * g[i];
    return;
  }
  const float t = static_cast<float>(step);
  const float correction1 = 1.0f - std::pow(opt.beta1, t), correction2 = 1.0f - std::pow(opt.beta2, t);
  float* m = adam->m.data() + offset;
  float* v = adam->v.data() + offset;
  for (std::size_t i = 0; i < count; ++i) {
    m[i] = opt.beta1 * m[i] + (1.0f - opt.beta1) * g[i];
    v[i] = opt.beta2 * v[i] + (1.0f - opt.beta2) * g[i] * g[i];
    const float m_hat = m[i] / correction1, v_hat = v[i] / correction2;
    p[i] -= learning_rate * m_hat / (std::sqrt(v_hat) + opt.epsilon);
  }
}

// Each seed with its own learning rate, over the first `rank` rows of A_c and columns of B_c.
void CpuSeedLayer::step() {
  const auto& opt = config_.optimizer;
  const std::size_t a_block = sz(config_.rank) * sz(config_.in_features), r = sz(config_.rank);
  for (int c = 0; c < config_.chunks; ++c) {
    if (!seed_has_gradient_[sz(c)]) continue;
    seed_has_gradient_[sz(c)] = 0;
    const std::uint64_t t = ++seed_steps_[sz(c)];
    const SeedSettings& settings = settings_[sz(c)];
    const float lr = settings.learning_rate;
    const std::size_t rank = sz(settings.rank);
    const std::size_t a0 = sz(c) * a_block, b0 = sz(partition_.begin(c)) * r, bn = sz(partition_.size(c)) * r;
    apply_update(opt, lr, t, a_.data() + a0, da_.data() + a0, &adam_a_, a0, rank * sz(config_.in_features));
    if (rank == r) {
      apply_update(opt, lr, t, b_.data() + b0, db_.data() + b0, &adam_b_, b0, bn);
    } else {
      for (std::size_t row = b0; row < b0 + bn; row += r) {
        apply_update(opt, lr, t, b_.data() + row, db_.data() + row, &adam_b_, row, rank);
      }
    }
  }
  if (base_has_gradient_) {
    base_has_gradient_ = false;
    const std::uint64_t t = ++base_steps_;
    apply_update(opt, opt.learning_rate, t, w_.data(), dw_.data(), &adam_w_, 0, w_.size());
    apply_update(opt, opt.learning_rate, t, bias_.data(), dbias_.data(), &adam_bias_, 0, bias_.size());
  }
}

std::vector<float>& CpuSeedLayer::tensor(Tensor t) {
  return detail::select(t, w_, bias_, a_, b_);
}

const std::vector<float>& CpuSeedLayer::gradient(Tensor t) const {
  return detail::select(t, dw_, dbias_, da_, db_);
}

void CpuSeedLayer::read(Tensor t, std::span<float> values) const {
  detail::check_copy_size(tensor(t).size(), values.size());
  std::copy(tensor(t).begin(), tensor(t).end(), values.begin());
}

void CpuSeedLayer::write(Tensor t, std::span<const float> values) {
  detail::check_copy_size(tensor(t).size(), values.size());
  std::copy(values.begin(), values.end(), tensor(t).begin());
  for (int c = 0; c < config_.chunks; ++c) {
    detail::zero_beyond_rank(config_, partition_, c, settings_[sz(c)].rank, t, tensor(t).data());
  }
}

void CpuSeedLayer::read_gradient(Tensor t, std::span<float> values) const {
  detail::check_copy_size(gradient(t).size(), values.size());
  std::copy(gradient(t).begin(), gradient(t).end(), values.begin());
}

std::uint64_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::uint64_t CpuSeedLayer::digest() const {
  std::uint64_t sum = settings_digest();
  auto add_floats = [&](std::uint64_t tag, const std::vector<float>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) sum += detail::digest_element(tag, i, float_bits(v[i]));
  };
  for (std::size_t c = 0; c < states_.size(); ++c) {
    sum += detail::digest_element(detail::kTagStates, c, static_cast<std::uint64_t>(states_[c]));
    sum += detail::digest_element(detail::kTagSeedSteps, c, seed_steps_[c]);
  }
  sum += detail::digest_element(detail::kTagBaseSteps, 0, base_steps_);
  add_floats(detail::kTagAlphas, alphas_);
  add_floats(detail::kTagW, w_);
  add_floats(detail::kTagBias, bias_);
  add_floats(detail::kTagA, a_);
  add_floats(detail::kTagB, b_);
  add_floats(detail::kTagMomentW, adam_w_.m);
  add_floats(detail::kTagVarW, adam_w_.v);
  add_floats(detail::kTagMomentBias, adam_bias_.m);
  add_floats(detail::kTagVarBias, adam_bias_.v);
  add_floats(detail::kTagMomentA, adam_a_.m);
  add_floats(detail::kTagVarA, adam_a_.v);
  add_floats(detail::kTagMomentB, adam_b_.m);
  add_floats(detail::kTagVarB, adam_b_.v);
  return detail::splitmix64(sum);
}

}  // namespace

std::unique_ptr<SeedLayer> make_cpu_seed_layer(const SeedLayerConfig& config) {
  return std::make_unique<CpuSeedLayer>(config);
}

}  // namespace esper::kernels
