// CUDA kernels of the seed layer; the products (X Wᵀ, X Aᵀ, dx, dA, dW) are cuBLAS calls in
// cuda_seed_layer.cpp. Semantics are those of the CPU reference (kernels/cpu/cpu_seed_layer.cpp).
// blend: the forward epilogue. Reads y = X Wᵀ and the seeds' hidden activations once, writes
//   o = y + b (+ α f), and accumulates the telemetry from registers: per thread over its rows, per
//   block over its 8 row lanes, written as per-feature partials of its row slice (no atomics, so the
//   telemetry is deterministic); finalize sums them per chunk in a fixed order.
// Every reduction here runs in a fixed order: the same inputs give bit-identical results.
#include <cstdint>

#include "kernels/cuda/seed_kernels.hpp"
#include "kernels/layer_math.hpp"

namespace esper::kernels::cuda {
namespace {

constexpr int kBlendFeatures = 32, kBlendLanes = 8;

__device__ __forceinline__ float hidden_of(float z, bool mlp) { return mlp ? fmaxf(z, 0.0f) : z; }

__global__ void blend_kernel(BlendArgs a) {
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int j = static_cast<int>(blockIdx.x) * kBlendFeatures + tx;
  const int slice = static_cast<int>(blockIdx.y);
  const int row_end = min(a.batch, (slice + 1) * kBlendRowsPerSlice);
  double sum = 0, sq = 0, loss = 0, loss_base = 0, loss_shadow = 0;
  int alive = 0;
  if (j < a.n) {
    const int c = a.chunk_of_feature[j];
    const ChunkControl ctl = a.control[c];
    const float bias = a.bias[j];
    const float* bj = a.b + static_cast<long>(j) * a.r;
    for (int row = slice * kBlendRowsPerSlice + ty; row < row_end; row += kBlendLanes) {
      const long at = static_cast<long>(row) * a.n + j;
      const float y = a.y[at] + bias;
      float o = y, f = 0.0f;
      if (ctl.evaluated) {
        const float* zc = a.z + static_cast<long>(row) * a.hw + static_cast<long>(c) * a.r;
        for (int k = 0; k < a.r; ++k) f += bj[k] * hidden_of(zc[k], a.mlp);
        if (ctl.alpha != 0.0f) o = y + ctl.alpha * f;
      }
      a.out[at] = o;
      if (a.telemetry) {
        sum += o;
        sq += static_cast<double>(o) * o;
        alive += o > a.dead_threshold ? 1 : 0;
        if (a.target != nullptr) {
          const double t = a.target[at], d = o - t, d_base = y - t;
          const double d_shadow = ctl.evaluated ? static_cast<double>(y + f) - t : d_base;
          loss += d * d;
          loss_base += d_base * d_base;
          loss_shadow += d_shadow * d_shadow;
        }
      }
    }
  }
  if (!a.telemetry) return;
  __shared__ double shared[5][kBlendLanes][kBlendFeatures];
  __shared__ int shared_alive[kBlendLanes][kBlendFeatures];
  shared[0][ty][tx] = sum;
  shared[1][ty][tx] = sq;
  shared[2][ty][tx] = loss;
  shared[3][ty][tx] = loss_base;
  shared[4][ty][tx] = loss_shadow;
  shared_alive[ty][tx] = alive;
  __syncthreads();
  if (ty != 0 || j >= a.n) return;
  double total[5] = {0, 0, 0, 0, 0};
  int total_alive = 0;
  for (int lane = 0; lane < kBlendLanes; ++lane) {
    for (int q = 0; q < 5; ++q) total[q] += shared[q][lane][tx];
    total_alive += shared_alive[lane][tx];
  }
  const long p = static_cast<long>(slice) * a.n + j;
  a.partials.sum[p] = total[0];
  a.partials.sum_squares[p] = total[1];
  a.partials.alive[p] = total_alive;
  if (a.target != nullptr) {
    a.partials.loss[p] = total[2];
    a.partials.loss_without_seed[p] = total[3];
    a.partials.shadow_loss[p] = total[4];
  }
}

__global__ void finalize_kernel(FeaturePartials p, int slices, int n, const int* offsets, int chunks, int batch,
                                bool has_loss, ChunkTelemetryDevice* out) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c >= chunks) return;
  ChunkTelemetryDevice t{};
  for (int j = offsets[c]; j < offsets[c + 1]; ++j) {
    int alive = 0;
    for (int s = 0; s < slices; ++s) {
      const long at = static_cast<long>(s) * n + j;
      t.sum += p.sum[at];
      t.sum_squares += p.sum_squares[at];
      alive += p.alive[at];
      if (has_loss) {
        t.loss += p.loss[at];
        t.loss_without_seed += p.loss_without_seed[at];
        t.shadow_loss += p.shadow_loss[at];
      }
    }
    t.dead_units += alive == 0 ? 1 : 0;
  }
  const double scale = 1.0 / (static_cast<double>(batch) * n);
  t.loss *= scale;
  t.loss_without_seed *= scale;
  t.shadow_loss *= scale;
  t.elements = static_cast<std::int64_t>(batch) * (offsets[c + 1] - offsets[c]);
  t.has_loss = has_loss ? 1 : 0;
  out[c] = t;
}

__global__ void hidden_gradient_kernel(const float* g, const float* b, const float* z, const int* offsets,
                                       const ChunkControl* control, const int* ranks, int batch, int n, int r,
                                       int chunks, bool mlp, bool want_input, float* dz_param, float* dz_input) {
  const int hw = chunks * r;
  const long e = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<long>(batch) * hw) return;
  const int row = static_cast<int>(e / hw), q = static_cast<int>(e % hw), c = q / r, k = q % r;
  const ChunkControl ctl = control[c];
  const bool feeds_input = want_input && ctl.evaluated && ctl.alpha != 0.0f;
  float dh = 0.0f;
  if ((ctl.trains || feeds_input) && k < ranks[c]) {
    const float* g_row = g + static_cast<long>(row) * n;
    for (int j = offsets[c]; j < offsets[c + 1]; ++j) dh += g_row[j] * b[static_cast<long>(j) * r + k];
    if (mlp && !(z[e] > 0.0f)) dh = 0.0f;
  }
  dz_param[e] = ctl.trains ? ctl.gradient_scale * dh : 0.0f;
  if (want_input) dz_input[e] = feeds_input ? ctl.alpha * dh : 0.0f;
}

constexpr int kGradRowsPerSlice = 256;

__global__ void b_gradient_partial_kernel(const float* g, const float* z, const int* chunk_of_feature,
                                          const ChunkControl* control, int batch, int n, int r, int hw,
                                          bool mlp, float* partials) {
  const long e = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<long>(n) * r) return;
  const int j = static_cast<int>(e / r), k = static_cast<int>(e % r), c = chunk_of_feature[j];
  const int slice = static_cast<int>(blockIdx.y), hw_index = c * r + k;
  float acc = 0.0f;
  if (control[c].trains) {
    const int row_end = min(batch, (slice + 1) * kGradRowsPerSlice);
    for (int row = slice * kGradRowsPerSlice; row < row_end; ++row) {
      acc += g[static_cast<long>(row) * n + j] * hidden_of(z[static_cast<long>(row) * hw + hw_index], mlp);
    }
  }
  partials[static_cast<long>(slice) * n * r + e] = acc;
}

__global__ void b_gradient_reduce_kernel(const float* partials, int slices, const int* chunk_of_feature,
                                         const ChunkControl* control, const int* ranks, int n, int r, float* db) {
  const long e = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<long>(n) * r) return;
  float acc = 0.0f;
  for (int s = 0; s < slices; ++s) acc += partials[static_cast<long>(s) * n * r + e];
  const int c = chunk_of_feature[e / r];
  const ChunkControl ctl = control[c];
  db[e] = ctl.trains && static_cast<int>(e % r) < ranks[c] ? ctl.gradient_scale * acc : 0.0f;
}

__global__ void column_sums_kernel(const float* g, int batch, int n, float* out) {
  const int j = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (j >= n) return;
  double s = 0.0;
  for (int row = 0; row < batch; ++row) s += g[static_cast<long>(row) * n + j];
  out[j] = static_cast<float>(s);
}

__global__ void advance_steps_kernel(const ChunkControl* control, int chunks, std::uint64_t* steps) {
  const int c = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (c < chunks && control[c].trains) ++steps[c];
}

__device__ __forceinline__ void update_one(const OptimizerArgs& o, float learning_rate, float* p, float g, float* m,
                                           float* v, std::uint64_t step) {
  if (!o.adam) {
    *p -= learning_rate * g;
    return;
  }
  const float t = static_cast<float>(step);
  const float correction1 = 1.0f - powf(o.beta1, t), correction2 = 1.0f - powf(o.beta2, t);
  *m = o.beta1 * *m + (1.0f - o.beta1) * g;
  *v = o.beta2 * *v + (1.0f - o.beta2) * g * g;
  const float m_hat = *m / correction1, v_hat = *v / correction2;
  *p -= learning_rate * m_hat / (sqrtf(v_hat) + o.epsilon);
}

__global__ void update_kernel(OptimizerArgs o, float* p, const float* g, float* m, float* v, std::size_t count,
                              const ChunkControl* control, const std::uint64_t* steps, const float* learning_rates,
                              const int* ranks, SeedGroups groups) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int group = groups.group_of != nullptr ? groups.group_of[i / static_cast<std::size_t>(groups.row_width)]
                                                 : static_cast<int>(i / groups.group_size);
    if (!control[group].trains) continue;
    const int k = static_cast<int>((i / groups.rank_stride) % static_cast<std::size_t>(groups.r));
    if (k >= ranks[group]) continue;  // the seed's tail stays 0
    update_one(o, learning_rates[group], p + i, g[i], o.adam ? m + i : nullptr, o.adam ? v + i : nullptr,
               steps[group]);
  }
}

__global__ void update_base_kernel(OptimizerArgs o, float* p, const float* g, float* m, float* v, std::size_t count,
                                   std::uint64_t step) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    update_one(o, o.learning_rate, p + i, g[i], o.adam ? m + i : nullptr, o.adam ? v + i : nullptr, step);
  }
}

__global__ void digest_kernel(const void* values, int element_bytes, std::size_t count, std::uint64_t tag,
                              unsigned long long* digest) {
  unsigned long long acc = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::uint64_t bits = 0;
    if (element_bytes == 1) bits = static_cast<const std::uint8_t*>(values)[i];
    if (element_bytes == 4) bits = static_cast<const std::uint32_t*>(values)[i];
    if (element_bytes == 8) bits = static_cast<const std::uint64_t*>(values)[i];
    acc += detail::digest_element(tag, i, bits);
  }
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if ((threadIdx.x & 31u) == 0) atomicAdd(digest, acc);  // a sum mod 2^64: any order gives the same value
}

unsigned blocks_for(std::size_t count, unsigned threads, unsigned cap = 65535u) {
  const std::size_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < cap ? (blocks == 0 ? 1 : blocks) : cap);
}

}  // namespace

cudaError_t launch_blend(const BlendArgs& args) {
  const dim3 block(kBlendFeatures, kBlendLanes);
  const dim3 grid(static_cast<unsigned>((args.n + kBlendFeatures - 1) / kBlendFeatures),
                  static_cast<unsigned>(blend_slices(args.batch)));
  blend_kernel<<<grid, block>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_finalize_telemetry(const FeaturePartials& partials, int slices, int n, const int* chunk_offsets,
                                      int chunks, int batch, bool has_loss, ChunkTelemetryDevice* telemetry) {
  finalize_kernel<<<blocks_for(static_cast<std::size_t>(chunks), 128), 128>>>(partials, slices, n, chunk_offsets,
                                                                              chunks, batch, has_loss, telemetry);
  return cudaGetLastError();
}

cudaError_t launch_hidden_gradient(const float* grad_out, const float* b, const float* z, const int* chunk_offsets,
                                   const ChunkControl* control, const int* ranks, int batch, int n, int r, int chunks,
                                   bool mlp, bool want_input, float* dz_param, float* dz_input) {
  const std::size_t count = static_cast<std::size_t>(batch) * static_cast<std::size_t>(chunks) * r;
  hidden_gradient_kernel<<<blocks_for(count, 256, 1u << 30), 256>>>(grad_out, b, z, chunk_offsets, control, ranks,
                                                                     batch, n, r, chunks, mlp, want_input, dz_param,
                                                                     dz_input);
  return cudaGetLastError();
}

int b_gradient_slices(int batch) { return (batch + kGradRowsPerSlice - 1) / kGradRowsPerSlice; }

cudaError_t launch_b_gradient(const float* grad_out, const float* z, const int* chunk_of_feature,
                              const ChunkControl* control, const int* ranks, int batch, int n, int r, int hw, bool mlp,
                              float* partials, int slices, float* db) {
  const std::size_t count = static_cast<std::size_t>(n) * r;
  const dim3 grid(blocks_for(count, 256, 1u << 30), static_cast<unsigned>(slices));
  b_gradient_partial_kernel<<<grid, 256>>>(grad_out, z, chunk_of_feature, control, batch, n, r, hw, mlp, partials);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  b_gradient_reduce_kernel<<<blocks_for(count, 256, 1u << 30), 256>>>(partials, slices, chunk_of_feature, control,
                                                                      ranks, n, r, db);
  return cudaGetLastError();
}

cudaError_t launch_column_sums(const float* grad_out, int batch, int n, float* db) {
  column_sums_kernel<<<blocks_for(static_cast<std::size_t>(n), 128), 128>>>(grad_out, batch, n, db);
  return cudaGetLastError();
}

cudaError_t launch_advance_steps(const ChunkControl* control, int chunks, std::uint64_t* seed_steps) {
  advance_steps_kernel<<<blocks_for(static_cast<std::size_t>(chunks), 128), 128>>>(control, chunks, seed_steps);
  return cudaGetLastError();
}

cudaError_t launch_update(const OptimizerArgs& opt, float* param, const float* grad, float* m, float* v,
                          std::size_t count, const ChunkControl* control, const std::uint64_t* steps,
                          const float* learning_rates, const int* ranks, const SeedGroups& groups) {
  update_kernel<<<blocks_for(count, 256, 4096), 256>>>(opt, param, grad, m, v, count, control, steps, learning_rates,
                                                       ranks, groups);
  return cudaGetLastError();
}

cudaError_t launch_update_base(const OptimizerArgs& opt, float* param, const float* grad, float* m, float* v,
                               std::size_t count, std::uint64_t step) {
  update_base_kernel<<<blocks_for(count, 256, 4096), 256>>>(opt, param, grad, m, v, count, step);
  return cudaGetLastError();
}

cudaError_t launch_digest(const void* values, int element_bytes, std::size_t count, std::uint64_t tag,
                          unsigned long long* digest) {
  if (count == 0) return cudaSuccess;
  digest_kernel<<<blocks_for(count, 256, 1024), 256>>>(values, element_bytes, count, tag, digest);
  return cudaGetLastError();
}

}  // namespace esper::kernels::cuda
