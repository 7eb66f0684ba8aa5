// Launchers for the CUDA seed-layer kernels (seed_kernels.cu). Each returns the launch's error
// (cudaGetLastError) so that the host code checks it where it has the context.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace esper::kernels::cuda {

// Per-chunk control in device memory, derived from the state and alpha by kernels/seed_rules.hpp.
struct ChunkControl {
  float alpha;           // α in effect
  float gradient_scale;  // factor on the chunk's upstream gradient for the seed's parameter gradients
  std::uint8_t state;    // wire::SeedState
  std::uint8_t evaluated;
  std::uint8_t trains;
  std::uint8_t reserved;
};

// Per-feature partial telemetry of one row slice; the finalize kernel reduces slices and features.
struct FeaturePartials {
  double* sum;
  double* sum_squares;
  double* loss;
  double* loss_without_seed;
  double* shadow_loss;
  int* alive;
};

struct ChunkTelemetryDevice {
  double sum, sum_squares, loss, loss_without_seed, shadow_loss;
  std::int64_t elements;
  std::int32_t dead_units;
  std::int32_t has_loss;
};

struct BlendArgs {
  const float* y;  // batch×n, X Wᵀ
  const float* bias;
  const float* z;  // batch×hw
  const float* b;  // n×r
  const float* target;  // may be null
  const int* chunk_of_feature;
  const ChunkControl* control;
  float* out;
  int batch, n, r, hw;
  bool mlp;
  bool telemetry;
  float dead_threshold;
  FeaturePartials partials;  // [slice][n]
};
constexpr int kBlendRowsPerSlice = 128;
inline int blend_slices(int batch) { return (batch + kBlendRowsPerSlice - 1) / kBlendRowsPerSlice; }

cudaError_t launch_blend(const BlendArgs& args);
cudaError_t launch_finalize_telemetry(const FeaturePartials& partials, int slices, int n, const int* chunk_offsets,
                                      int chunks, int batch, bool has_loss, ChunkTelemetryDevice* telemetry);

// dz_param = gradient_scale·dZ and dz_input = α·dZ (0 where a chunk does not need it), dZ = (G_c B_c) ⊙ h'(Z);
// 0 for k ≥ ranks[c] (a seed's rank, SeedSettings).
cudaError_t launch_hidden_gradient(const float* grad_out, const float* b, const float* z, const int* chunk_offsets,
                                   const ChunkControl* control, const int* ranks, int batch, int n, int r, int chunks,
                                   bool mlp, bool want_input, float* dz_param, float* dz_input);
// dB[j][k] = s_c Σ_b G[b][j] h(Z[b][c r + k]) (0 for k ≥ ranks[c]), deterministic: partials per row
// slice, then a fixed-order sum.
cudaError_t launch_b_gradient(const float* grad_out, const float* z, const int* chunk_of_feature,
                              const ChunkControl* control, const int* ranks, int batch, int n, int r, int hw, bool mlp,
                              float* partials, int slices, float* db);
int b_gradient_slices(int batch);
cudaError_t launch_column_sums(const float* grad_out, int batch, int n, float* db);

struct OptimizerArgs {
  bool adam;
  float learning_rate, beta1, beta2, epsilon;  // learning_rate: the base's
};
// How launch_update finds an element's seed and rank index: group g = element / group_size (A: chunk
// blocks) or g = group_of[element / row_width] (B); k = (element / rank_stride) mod r.
struct SeedGroups {
  std::size_t group_size;
  const int* group_of;
  int row_width;
  std::size_t rank_stride;
  int r;
};
// Advances each training chunk's step count (trains flag) and the base's (when base_trains).
cudaError_t launch_advance_steps(const ChunkControl* control, int chunks, std::uint64_t* seed_steps);
// Updates the params of the training groups with each group's learning rate (learning_rates[g]),
// skipping a group's tail k ≥ ranks[g].
cudaError_t launch_update(const OptimizerArgs& opt, float* param, const float* grad, float* m, float* v,
                          std::size_t count, const ChunkControl* control, const std::uint64_t* steps,
                          const float* learning_rates, const int* ranks, const SeedGroups& groups);
cudaError_t launch_update_base(const OptimizerArgs& opt, float* param, const float* grad, float* m, float* v,
                               std::size_t count, std::uint64_t step);

// digest += Σ digest_element(tag, i, bits(values[i])), bits of width `element_bytes` (1, 4 or 8).
cudaError_t launch_digest(const void* values, int element_bytes, std::size_t count, std::uint64_t tag,
                          unsigned long long* digest);

}  // namespace esper::kernels::cuda
