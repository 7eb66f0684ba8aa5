// CUDA seed layer: the semantics of the CPU reference (kernels/cpu/cpu_seed_layer.cpp) with
// parameters, gradients, optimizer moments, step counts, per-chunk states/alphas/control and
// telemetry in device memory, on the default stream. Products are cuBLAS SGEMMs in pure fp32 (no
// TF32); the blend with its telemetry, the seed gradients, the optimizer and the digest are the
// kernels of seed_kernels.cu. The host keeps a mirror of the states (it decides which products to
// skip) and only the base layer's step count. Seed settings: per-chunk ranks and learning rates in
// device arrays that the gradient and update kernels read; a lowered rank's tail is zeroed by
// memsets (A_c's rows are contiguous, B_c's columns a 2D memset), a write() masks its host copy.
// Host-staged mode (Memory::Host) wraps the device-span forward and backward: host x, target and
// grad_out are copied into device buffers the layer owns (x's copy is what backward reads), out and
// grad_x are copied back. All of it is on the legacy default stream, like the kernels, so no extra
// synchronisation is needed; the copies back to the host return when the data is there.
#include "kernels/cuda/cuda_seed_layer.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/seed_kernels.hpp"
#include "kernels/init.hpp"
#include "kernels/layer_math.hpp"

namespace esper::kernels::cuda {
namespace {

std::size_t sz(int n) { return static_cast<std::size_t>(n); }

template <class T>
void upload(const DeviceBuffer<T>& dst, const T* src, std::size_t count, std::size_t offset = 0) {
  if (count > 0) ESPER_CUDA_CHECK(cudaMemcpy(dst.data() + offset, src, count * sizeof(T), cudaMemcpyHostToDevice));
}

template <class T>
void zero_range(const DeviceBuffer<T>& buf, std::size_t offset, std::size_t count) {
  if (!buf.empty() && count > 0) ESPER_CUDA_CHECK(cudaMemset(buf.data() + offset, 0, count * sizeof(T)));
}

// Columns [col, width) of rows [row, row + rows) of a row-major matrix `width` floats wide.
void zero_columns(const DeviceBuffer<float>& buf, std::size_t row, std::size_t rows, std::size_t col,
                  std::size_t width) {
  if (buf.empty() || rows == 0 || col >= width) return;
  ESPER_CUDA_CHECK(
      cudaMemset2D(buf.data() + row * width + col, width * sizeof(float), 0, (width - col) * sizeof(float), rows));
}

struct AdamMoments {
  DeviceBuffer<float> m, v;
  explicit AdamMoments(std::size_t count = 0) : m(count), v(count) {
    m.zero();
    v.zero();
  }
};

// Row-major products through column-major cuBLAS (C row-major M×N = column-major Cᵀ N×M).
class Gemm {
 public:
  explicit Gemm(cublasHandle_t h) : h_(h) {}
  // C = alpha A Bᵀ + beta C, A M×K, B N×K
  void nt(int M, int N, int K, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float alpha,
          float beta) const {
    ESPER_CUBLAS_CHECK(cublasSgemm(h_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, b, ldb, a, lda, &beta, c, ldc));
  }
  // C = alpha A B + beta C, A M×K, B K×N
  void nn(int M, int N, int K, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float alpha,
          float beta) const {
    ESPER_CUBLAS_CHECK(cublasSgemm(h_, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, b, ldb, a, lda, &beta, c, ldc));
  }
  // C = alpha Aᵀ B + beta C, A K×M, B K×N
  void tn(int M, int N, int K, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float alpha,
          float beta) const {
    ESPER_CUBLAS_CHECK(cublasSgemm(h_, CUBLAS_OP_N, CUBLAS_OP_T, N, M, K, &alpha, b, ldb, a, lda, &beta, c, ldc));
  }

 private:
  cublasHandle_t h_;
};

class CudaSeedLayer final : public SeedLayer {
 public:
  CudaSeedLayer(const SeedLayerConfig& config, Memory memory);

  Backend backend() const override { return Backend::Cuda; }
  void reset_seed(int chunk) override;
  void forward(std::span<const float> x, std::span<float> out, const ForwardOptions& options) override;
  void backward(std::span<const float> grad_out, std::span<float> grad_x) override;
  void step() override;
  std::vector<ChunkTelemetry> telemetry() const override;
  void read(Tensor tensor, std::span<float> values) const override;
  void write(Tensor tensor, std::span<const float> values) override;
  void read_gradient(Tensor tensor, std::span<float> values) const override;
  std::span<float> gradient_buffer(Tensor tensor) override {
    const auto& g = gradient(tensor);
    return {g.data(), g.size()};
  }
  std::uint64_t digest() const override;

  EpilogueTiming time_epilogue(int iterations);

 protected:
  void seeds_changed() override;
  void seed_settings_changed(int chunk, const SeedSettings& previous) override;

 private:
  void forward_device(std::span<const float> x, std::span<float> out, const ForwardOptions& options);
  void backward_device(std::span<const float> grad_out, std::span<float> grad_x);
  const DeviceBuffer<float>& tensor(Tensor t) const;
  const DeviceBuffer<float>& gradient(Tensor t) const;
  int hidden_width() const { return config_.chunks * config_.rank; }
  void run_blend();
  OptimizerArgs optimizer_args() const;
  void upload_settings(int chunk);
  void zero_seed_tail(int chunk);

  CublasHandle cublas_;
  DeviceBuffer<float> w_, bias_, a_, b_, dw_, dbias_, da_, db_;
  AdamMoments adam_w_, adam_bias_, adam_a_, adam_b_;
  DeviceBuffer<int> chunk_of_feature_, chunk_offsets_;
  DeviceBuffer<std::uint8_t> states_dev_;
  DeviceBuffer<float> alphas_dev_;
  DeviceBuffer<ChunkControl> control_, forward_control_;
  DeviceBuffer<std::uint64_t> seed_steps_;
  DeviceBuffer<float> seed_learning_rates_;
  DeviceBuffer<int> seed_ranks_;
  std::uint64_t base_steps_ = 0;
  std::vector<std::uint32_t> generation_;
  std::vector<ChunkControl> control_host_, forward_control_host_;

  // Per forward.
  const float* x_ = nullptr;
  int batch_ = 0;
  BlendArgs blend_{};
  bool telemetry_ready_ = false;
  bool telemetry_has_loss_ = false;
  DeviceBuffer<float> y_, z_, dz_param_, dz_input_, db_partials_;
  DeviceBuffer<double> partial_sum_, partial_sq_, partial_loss_, partial_loss_base_, partial_loss_shadow_;
  DeviceBuffer<int> partial_alive_;
  DeviceBuffer<ChunkTelemetryDevice> telemetry_dev_;
  mutable DeviceBuffer<unsigned long long> digest_dev_;
  bool seed_gradients_pending_ = false, base_gradients_pending_ = false;

  // Host-staged mode: device copies of the host spans.
  bool host_io_ = false;
  DeviceBuffer<float> x_stage_, target_stage_, out_stage_, grad_out_stage_, grad_x_stage_;
};

CudaSeedLayer::CudaSeedLayer(const SeedLayerConfig& config, Memory memory)
    : SeedLayer(config),
      w_(tensor_size(config, Tensor::BaseWeight)),
      bias_(tensor_size(config, Tensor::BaseBias)),
      a_(tensor_size(config, Tensor::SeedA)),
      b_(tensor_size(config, Tensor::SeedB)),
      dw_(w_.size()),
      dbias_(bias_.size()),
      da_(a_.size()),
      db_(b_.size()),
      chunk_of_feature_(sz(config.out_features)),
      chunk_offsets_(sz(config.chunks) + 1),
      states_dev_(sz(config.chunks)),
      alphas_dev_(sz(config.chunks)),
      control_(sz(config.chunks)),
      forward_control_(sz(config.chunks)),
      seed_steps_(sz(config.chunks)),
      seed_learning_rates_(sz(config.chunks)),
      seed_ranks_(sz(config.chunks)),
      generation_(sz(config.chunks), 0),
      telemetry_dev_(sz(config.chunks)),
      digest_dev_(1),
      host_io_(memory == Memory::Host) {
  const bool adam = config.optimizer.kind == OptimizerKind::Adam;
  if (adam) {
    adam_a_ = AdamMoments(a_.size());
    adam_b_ = AdamMoments(b_.size());
    if (config.train_base) {
      adam_w_ = AdamMoments(w_.size());
      adam_bias_ = AdamMoments(bias_.size());
    }
  }
  std::vector<float> w, bias, a(a_.size());
  detail::init_base(config, w, bias);
  for (int c = 0; c < config.chunks; ++c) detail::init_seed_a(config, c, 0, a.data() + sz(c) * detail::seed_a_block(config));
  upload(w_, w.data(), w.size());
  upload(bias_, bias.data(), bias.size());
  upload(a_, a.data(), a.size());
  for (const auto* buf : {&b_, &dw_, &dbias_, &da_, &db_}) buf->zero();
  seed_steps_.zero();
  for (int c = 0; c < config.chunks; ++c) upload_settings(c);
  std::vector<int> chunk_of(sz(config.out_features));
  for (int c = 0; c < config.chunks; ++c) {
    for (int j = partition_.begin(c); j < partition_.end(c); ++j) chunk_of[sz(j)] = c;
  }
  upload(chunk_of_feature_, chunk_of.data(), chunk_of.size());
  upload(chunk_offsets_, partition_.offsets.data(), partition_.offsets.size());
  ESPER_CUBLAS_CHECK(cublasSetMathMode(cublas_.get(), CUBLAS_DEFAULT_MATH));  // fp32, never TF32
  seeds_changed();
  forward_control_host_ = control_host_;
  upload(forward_control_, forward_control_host_.data(), forward_control_host_.size());
}

void CudaSeedLayer::seeds_changed() {
  const int C = config_.chunks;
  control_host_.assign(sz(C), ChunkControl{});
  std::vector<std::uint8_t> states(sz(C));
  for (int c = 0; c < C; ++c) {
    const SeedState s = states_[sz(c)];
    const float alpha = alphas_[sz(c)];
    auto& ctl = control_host_[sz(c)];
    ctl.alpha = effective_alpha(s, alpha);
    ctl.gradient_scale = seed_gradient_scale(s, alpha);
    ctl.state = static_cast<std::uint8_t>(s);
    ctl.evaluated = seed_evaluated(s) ? 1 : 0;
    ctl.trains = seed_trains(s) ? 1 : 0;
    states[sz(c)] = static_cast<std::uint8_t>(s);
  }
  upload(control_, control_host_.data(), control_host_.size());
  upload(states_dev_, states.data(), states.size());
  upload(alphas_dev_, alphas_.data(), alphas_.size());
}

void CudaSeedLayer::upload_settings(int chunk) {
  const SeedSettings& s = settings_[sz(chunk)];
  upload(seed_learning_rates_, &s.learning_rate, 1, sz(chunk));
  upload(seed_ranks_, &s.rank, 1, sz(chunk));
}

void CudaSeedLayer::zero_seed_tail(int chunk) {
  const auto rank = sz(settings_[sz(chunk)].rank), r = sz(config_.rank), in = sz(config_.in_features);
  if (rank == r) return;
  const std::size_t a0 = sz(chunk) * detail::seed_a_block(config_) + rank * in, an = (r - rank) * in;
  for (const auto* buf : {&a_, &da_, &adam_a_.m, &adam_a_.v}) zero_range(*buf, a0, an);
  for (const auto* buf : {&b_, &db_, &adam_b_.m, &adam_b_.v}) {
    zero_columns(*buf, sz(partition_.begin(chunk)), sz(partition_.size(chunk)), rank, r);
  }
}

void CudaSeedLayer::seed_settings_changed(int chunk, const SeedSettings& previous) {
  const int rank = settings_[sz(chunk)].rank;
  if (rank > previous.rank) {
    const std::size_t in = sz(config_.in_features), offset = sz(previous.rank) * in;
    std::vector<float> a(detail::seed_a_block(config_));
    detail::init_seed_a_rows(config_, chunk, generation_[sz(chunk)], previous.rank, rank, a.data());
    upload(a_, a.data() + offset, sz(rank) * in - offset, sz(chunk) * a.size() + offset);
  }
  zero_seed_tail(chunk);
  upload_settings(chunk);
}

void CudaSeedLayer::reset_seed(int chunk) {
  if (chunk < 0 || chunk >= config_.chunks) throw Error("reset_seed: chunk out of range");
  restore_default_settings(chunk);
  upload_settings(chunk);
  const auto c = sz(chunk);
  ++generation_[c];
  const std::size_t a_block = detail::seed_a_block(config_);
  std::vector<float> a(a_block);
  detail::init_seed_a(config_, chunk, generation_[c], a.data());
  upload(a_, a.data(), a_block, c * a_block);
  const std::size_t r = sz(config_.rank), b0 = sz(partition_.begin(chunk)) * r, bn = sz(partition_.size(chunk)) * r;
  for (const auto* buf : {&da_, &adam_a_.m, &adam_a_.v}) zero_range(*buf, c * a_block, a_block);
  for (const auto* buf : {&b_, &db_, &adam_b_.m, &adam_b_.v}) zero_range(*buf, b0, bn);
  zero_range(seed_steps_, c, 1);
  forward_control_host_[c].trains = 0;  // its pending gradient, if any, is gone
  upload(forward_control_, &forward_control_host_[c], 1, c);
}

void CudaSeedLayer::forward(std::span<const float> x, std::span<float> out, const ForwardOptions& options) {
  if (!host_io_) return forward_device(x, out, options);
  batch_of(x, out);
  const bool with_target = !options.target.empty();
  if (with_target && options.target.size() != out.size()) throw Error("forward: target must be batch×out_features");
  x_ = nullptr;  // the staging buffers may move
  x_stage_.reserve(x.size());
  out_stage_.reserve(out.size());
  upload(x_stage_, x.data(), x.size());
  ForwardOptions staged{{}, options.telemetry};
  if (with_target) {
    target_stage_.reserve(out.size());
    upload(target_stage_, options.target.data(), out.size());
    staged.target = {target_stage_.data(), out.size()};
  }
  forward_device({x_stage_.data(), x.size()}, {out_stage_.data(), out.size()}, staged);
  ESPER_CUDA_CHECK(cudaMemcpy(out.data(), out_stage_.data(), out.size_bytes(), cudaMemcpyDeviceToHost));
}

void CudaSeedLayer::forward_device(std::span<const float> x, std::span<float> out, const ForwardOptions& options) {
  const int batch = batch_of(x, out);
  const int in = config_.in_features, n = config_.out_features, hw = hidden_width();
  const bool with_target = !options.target.empty();
  if (with_target && options.target.size() != out.size()) throw Error("forward: target must be batch×out_features");
  x_ = x.data();
  batch_ = batch;
  forward_control_host_ = control_host_;
  ESPER_CUDA_CHECK(cudaMemcpyAsync(forward_control_.data(), control_.data(), control_.bytes(), cudaMemcpyDeviceToDevice));

  const std::size_t rows = sz(batch);
  y_.reserve(rows * sz(n));
  z_.reserve(rows * sz(hw));
  const Gemm gemm(cublas_.get());
  gemm.nt(batch, n, in, x.data(), in, w_.data(), in, y_.data(), n, 1.0f, 0.0f);
  const bool any_evaluated = std::any_of(control_host_.begin(), control_host_.end(), [](const auto& c) { return c.evaluated != 0; });
  if (any_evaluated) gemm.nt(batch, hw, in, x.data(), in, a_.data(), in, z_.data(), hw, 1.0f, 0.0f);

  const int slices = blend_slices(batch);
  if (options.telemetry) {
    const std::size_t count = sz(slices) * sz(n);
    for (auto* buf : {&partial_sum_, &partial_sq_}) buf->reserve(count);
    partial_alive_.reserve(count);
    if (with_target) {
      for (auto* buf : {&partial_loss_, &partial_loss_base_, &partial_loss_shadow_}) buf->reserve(count);
    }
  }
  blend_ = BlendArgs{y_.data(), bias_.data(), z_.data(), b_.data(), with_target ? options.target.data() : nullptr,
                     chunk_of_feature_.data(), forward_control_.data(), out.data(), batch, n, config_.rank, hw,
                     config_.blueprint == Blueprint::BottleneckMlp, options.telemetry, config_.dead_threshold,
                     FeaturePartials{partial_sum_.data(), partial_sq_.data(), partial_loss_.data(),
                                     partial_loss_base_.data(), partial_loss_shadow_.data(), partial_alive_.data()}};
  run_blend();
  telemetry_ready_ = options.telemetry;
  telemetry_has_loss_ = with_target;
}

void CudaSeedLayer::run_blend() {
  ESPER_CUDA_CHECK(launch_blend(blend_));
  if (blend_.telemetry) {
    ESPER_CUDA_CHECK(launch_finalize_telemetry(blend_.partials, blend_slices(blend_.batch), blend_.n,
                                               chunk_offsets_.data(), config_.chunks, blend_.batch,
                                               blend_.target != nullptr, telemetry_dev_.data()));
  }
}

void CudaSeedLayer::backward(std::span<const float> grad_out, std::span<float> grad_x) {
  if (!host_io_) return backward_device(grad_out, grad_x);
  if (x_ == nullptr) throw Error("backward: no forward pass to differentiate");
  grad_out_stage_.reserve(grad_out.size());
  upload(grad_out_stage_, grad_out.data(), grad_out.size());
  if (!grad_x.empty()) grad_x_stage_.reserve(grad_x.size());
  backward_device({grad_out_stage_.data(), grad_out.size()},
                  grad_x.empty() ? std::span<float>{} : std::span<float>(grad_x_stage_.data(), grad_x.size()));
  if (!grad_x.empty()) {
    ESPER_CUDA_CHECK(cudaMemcpy(grad_x.data(), grad_x_stage_.data(), grad_x.size_bytes(), cudaMemcpyDeviceToHost));
  }
}

void CudaSeedLayer::backward_device(std::span<const float> grad_out, std::span<float> grad_x) {
  if (x_ == nullptr) throw Error("backward: no forward pass to differentiate");
  const int batch = batch_, in = config_.in_features, n = config_.out_features, r = config_.rank, hw = hidden_width();
  if (grad_out.size() != sz(batch) * sz(n)) throw Error("backward: grad_out must be batch×out_features of the last forward");
  if (!grad_x.empty() && grad_x.size() != sz(batch) * sz(in)) throw Error("backward: grad_x must be batch×in_features");
  const bool want_input = !grad_x.empty();
  bool any_trains = false, any_input = false;
  for (const auto& ctl : forward_control_host_) {
    any_trains |= ctl.trains != 0;
    any_input |= want_input && ctl.evaluated != 0 && ctl.alpha != 0.0f;
  }
  const bool mlp = config_.blueprint == Blueprint::BottleneckMlp;
  const float* g = grad_out.data();
  const Gemm gemm(cublas_.get());

  if (any_trains || any_input) {
    dz_param_.reserve(sz(batch) * sz(hw));
    if (want_input) dz_input_.reserve(sz(batch) * sz(hw));
    ESPER_CUDA_CHECK(launch_hidden_gradient(g, b_.data(), z_.data(), chunk_offsets_.data(), forward_control_.data(),
                                            seed_ranks_.data(), batch, n, r, config_.chunks, mlp, want_input,
                                            dz_param_.data(), dz_input_.data()));
  }
  if (any_trains) {
    gemm.tn(hw, in, batch, dz_param_.data(), hw, x_, in, da_.data(), in, 1.0f, 0.0f);
    const int slices = b_gradient_slices(batch);
    db_partials_.reserve(sz(slices) * b_.size());
    ESPER_CUDA_CHECK(launch_b_gradient(g, z_.data(), chunk_of_feature_.data(), forward_control_.data(),
                                       seed_ranks_.data(), batch, n, r, hw, mlp, db_partials_.data(), slices,
                                       db_.data()));
  } else {
    da_.zero();
    db_.zero();
  }
  if (config_.train_base) {
    gemm.tn(n, in, batch, g, n, x_, in, dw_.data(), in, 1.0f, 0.0f);
    ESPER_CUDA_CHECK(launch_column_sums(g, batch, n, dbias_.data()));
  }
  if (want_input) {
    gemm.nn(batch, in, n, g, n, w_.data(), in, grad_x.data(), in, 1.0f, 0.0f);
    if (any_input) gemm.nn(batch, in, hw, dz_input_.data(), hw, a_.data(), in, grad_x.data(), in, 1.0f, 1.0f);
  }
  seed_gradients_pending_ = any_trains;
  base_gradients_pending_ = config_.train_base;
}

OptimizerArgs CudaSeedLayer::optimizer_args() const {
  const auto& o = config_.optimizer;
  return OptimizerArgs{o.kind == OptimizerKind::Adam, o.learning_rate, o.beta1, o.beta2, o.epsilon};
}

void CudaSeedLayer::step() {
  const OptimizerArgs opt = optimizer_args();
  if (seed_gradients_pending_) {
    seed_gradients_pending_ = false;
    ESPER_CUDA_CHECK(launch_advance_steps(forward_control_.data(), config_.chunks, seed_steps_.data()));
    const SeedGroups a_groups{detail::seed_a_block(config_), nullptr, 1, sz(config_.in_features), config_.rank};
    const SeedGroups b_groups{1, chunk_of_feature_.data(), config_.rank, 1, config_.rank};
    ESPER_CUDA_CHECK(launch_update(opt, a_.data(), da_.data(), adam_a_.m.data(), adam_a_.v.data(), a_.size(),
                                   forward_control_.data(), seed_steps_.data(), seed_learning_rates_.data(),
                                   seed_ranks_.data(), a_groups));
    ESPER_CUDA_CHECK(launch_update(opt, b_.data(), db_.data(), adam_b_.m.data(), adam_b_.v.data(), b_.size(),
                                   forward_control_.data(), seed_steps_.data(), seed_learning_rates_.data(),
                                   seed_ranks_.data(), b_groups));
  }
  if (base_gradients_pending_) {
    base_gradients_pending_ = false;
    ++base_steps_;
    ESPER_CUDA_CHECK(launch_update_base(opt, w_.data(), dw_.data(), adam_w_.m.data(), adam_w_.v.data(), w_.size(), base_steps_));
    ESPER_CUDA_CHECK(launch_update_base(opt, bias_.data(), dbias_.data(), adam_bias_.m.data(), adam_bias_.v.data(),
                                        bias_.size(), base_steps_));
  }
}

std::vector<ChunkTelemetry> CudaSeedLayer::telemetry() const {
  std::vector<ChunkTelemetry> out(sz(config_.chunks));
  if (!telemetry_ready_) return out;
  std::vector<ChunkTelemetryDevice> dev(out.size());
  ESPER_CUDA_CHECK(cudaMemcpy(dev.data(), telemetry_dev_.data(), telemetry_dev_.bytes(), cudaMemcpyDeviceToHost));
  for (std::size_t c = 0; c < out.size(); ++c) {
    const auto& d = dev[c];
    out[c] = ChunkTelemetry{d.sum, d.sum_squares, d.elements, d.dead_units, d.has_loss != 0,
                            d.loss, d.loss_without_seed, d.shadow_loss};
  }
  return out;
}

const DeviceBuffer<float>& CudaSeedLayer::tensor(Tensor t) const {
  return detail::select(t, w_, bias_, a_, b_);
}

const DeviceBuffer<float>& CudaSeedLayer::gradient(Tensor t) const {
  return detail::select(t, dw_, dbias_, da_, db_);
}

void CudaSeedLayer::read(Tensor t, std::span<float> values) const {
  detail::check_copy_size(tensor(t).size(), values.size());
  ESPER_CUDA_CHECK(cudaMemcpy(values.data(), tensor(t).data(), tensor(t).bytes(), cudaMemcpyDeviceToHost));
}

void CudaSeedLayer::write(Tensor t, std::span<const float> values) {
  detail::check_copy_size(tensor(t).size(), values.size());
  const bool seed_tensor = t == Tensor::SeedA || t == Tensor::SeedB;
  const bool masked =
      std::any_of(settings_.begin(), settings_.end(), [&](const SeedSettings& s) { return s.rank < config_.rank; });
  if (!seed_tensor || !masked) return upload(tensor(t), values.data(), values.size());
  std::vector<float> copy(values.begin(), values.end());
  for (int c = 0; c < config_.chunks; ++c) {
    detail::zero_beyond_rank(config_, partition_, c, settings_[sz(c)].rank, t, copy.data());
  }
  upload(tensor(t), copy.data(), copy.size());
}

void CudaSeedLayer::read_gradient(Tensor t, std::span<float> values) const {
  detail::check_copy_size(gradient(t).size(), values.size());
  ESPER_CUDA_CHECK(cudaMemcpy(values.data(), gradient(t).data(), gradient(t).bytes(), cudaMemcpyDeviceToHost));
}

std::uint64_t CudaSeedLayer::digest() const {
  digest_dev_.zero();
  auto add = [&](const auto& buf, std::uint64_t tag) {
    using T = typename std::remove_cvref_t<decltype(buf)>::value_type;
    ESPER_CUDA_CHECK(launch_digest(buf.data(), static_cast<int>(sizeof(T)), buf.size(), tag, digest_dev_.data()));
  };
  add(states_dev_, detail::kTagStates);
  add(seed_steps_, detail::kTagSeedSteps);
  add(alphas_dev_, detail::kTagAlphas);
  add(w_, detail::kTagW);
  add(bias_, detail::kTagBias);
  add(a_, detail::kTagA);
  add(b_, detail::kTagB);
  add(adam_w_.m, detail::kTagMomentW);
  add(adam_w_.v, detail::kTagVarW);
  add(adam_bias_.m, detail::kTagMomentBias);
  add(adam_bias_.v, detail::kTagVarBias);
  add(adam_a_.m, detail::kTagMomentA);
  add(adam_a_.v, detail::kTagVarA);
  add(adam_b_.m, detail::kTagMomentB);
  add(adam_b_.v, detail::kTagVarB);
  unsigned long long sum = 0;
  ESPER_CUDA_CHECK(cudaMemcpy(&sum, digest_dev_.data(), sizeof sum, cudaMemcpyDeviceToHost));
  const std::uint64_t total = sum + detail::digest_element(detail::kTagBaseSteps, 0, base_steps_) + settings_digest();
  return detail::splitmix64(total);
}

EpilogueTiming CudaSeedLayer::time_epilogue(int iterations) {
  if (x_ == nullptr) throw Error("time_forward_epilogue: run a forward first");
  cudaEvent_t start = nullptr, stop = nullptr;
  ESPER_CUDA_CHECK(cudaEventCreate(&start));
  ESPER_CUDA_CHECK(cudaEventCreate(&stop));
  float ms = 0;
  try {
    run_blend();  // warm
    ESPER_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < iterations; ++i) run_blend();
    ESPER_CUDA_CHECK(cudaEventRecord(stop));
    ESPER_CUDA_CHECK(cudaEventSynchronize(stop));
    ESPER_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const double elements = static_cast<double>(blend_.batch) * blend_.n;
  const bool any_evaluated = std::any_of(forward_control_host_.begin(), forward_control_host_.end(),
                                         [](const auto& c) { return c.evaluated != 0; });
  double bytes = 2.0 * elements * sizeof(float);
  if (blend_.target != nullptr) bytes += elements * sizeof(float);
  if (any_evaluated) bytes += static_cast<double>(blend_.batch) * blend_.hw * sizeof(float);
  return {static_cast<double>(ms) / iterations, bytes};
}

// Device `index`'s properties, or why the kernels cannot run on it.
Expected<cudaDeviceProp, LayerError> usable_device(int index) {
  cudaDeviceProp prop{};
  if (const cudaError_t e = cudaGetDeviceProperties(&prop, index); e != cudaSuccess) {
    return unexpected(LayerError{std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(e)});
  }
  if (prop.major < 8) {
    return unexpected(LayerError{std::string("device ") + prop.name + " has compute capability " +
                                 std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                                 "; the kernels are built for 8.0 and 9.0"});
  }
  return prop;
}

}  // namespace

CudaStatus probe_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it so that later calls start clean
    const std::string why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(status) + ": " +
                            cudaGetErrorString(status);
    return {false, why, 0};
  }
  if (count == 0) return {false, "no CUDA device found", 0};
  const auto prop = usable_device(0);
  if (!prop) return {false, prop.error().text, count};
  return {true, std::string(prop->name) + " (compute capability " + std::to_string(prop->major) + "." +
                    std::to_string(prop->minor) + ")", count};
}

std::unique_ptr<SeedLayer> make_cuda_seed_layer(const SeedLayerConfig& config, Memory memory) {
  return std::make_unique<CudaSeedLayer>(config, memory);
}

Expected<std::string, LayerError> select_device(int device) {
  const auto prop = usable_device(device);
  if (!prop) return unexpected(LayerError{"CUDA device " + std::to_string(device) + " unusable: " + prop.error().text});
  if (const cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return unexpected(LayerError{"cudaSetDevice(" + std::to_string(device) + ") failed: " + cudaGetErrorString(e)});
  }
  return "cuda:" + std::to_string(device) + " " + prop->name;
}

DeviceFloats::DeviceFloats(std::size_t count) : size_(count) {
  if (count > 0) {
    void* p = nullptr;
    ESPER_CUDA_CHECK(cudaMalloc(&p, count * sizeof(float)));
    data_ = static_cast<float*>(p);
  }
}

DeviceFloats::DeviceFloats(DeviceFloats&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceFloats& DeviceFloats::operator=(DeviceFloats&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceFloats::~DeviceFloats() {
  if (data_ != nullptr) cudaFree(data_);
}

void DeviceFloats::upload(std::span<const float> host) {
  if (host.size() != size_) throw Error("DeviceFloats::upload: size mismatch");
  if (size_ > 0) ESPER_CUDA_CHECK(cudaMemcpy(data_, host.data(), size_ * sizeof(float), cudaMemcpyHostToDevice));
}

std::vector<float> DeviceFloats::download() const {
  std::vector<float> host(size_);
  if (size_ > 0) ESPER_CUDA_CHECK(cudaMemcpy(host.data(), data_, size_ * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

EpilogueTiming time_forward_epilogue(SeedLayer& layer, int iterations) {
  auto* cuda_layer = dynamic_cast<CudaSeedLayer*>(&layer);
  if (cuda_layer == nullptr) throw Error("time_forward_epilogue: not a CUDA seed layer");
  return cuda_layer->time_epilogue(iterations);
}

double copy_bandwidth(std::size_t bytes, int iterations) {
  DeviceBuffer<unsigned char> src(bytes), dst(bytes);
  src.zero();
  cudaEvent_t start = nullptr, stop = nullptr;
  ESPER_CUDA_CHECK(cudaEventCreate(&start));
  ESPER_CUDA_CHECK(cudaEventCreate(&stop));
  float ms = 0;
  cudaError_t status = cudaMemcpy(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice);  // warm
  if (status == cudaSuccess) status = cudaEventRecord(start);
  for (int i = 0; i < iterations && status == cudaSuccess; ++i) {
    status = cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice);
  }
  if (status == cudaSuccess) status = cudaEventRecord(stop);
  if (status == cudaSuccess) status = cudaEventSynchronize(stop);
  if (status == cudaSuccess) status = cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  ESPER_CUDA_CHECK(status);
  return 2.0 * static_cast<double>(bytes) * iterations / (static_cast<double>(ms) * 1e-3);
}

void synchronize() { ESPER_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace esper::kernels::cuda
