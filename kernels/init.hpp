// Initial parameters, identical on both backends: W, b, A ~ U(-1/√in, 1/√in) drawn from the
// counter-based stream of layer_math.hpp; B = 0 (a fresh seed changes nothing). A reset seed draws
// its A_c from the next generation of its own stream, so replicas that reset together stay equal.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/layer_math.hpp"
#include "kernels/seed_layer.hpp"

namespace esper::kernels::detail {

inline float init_scale(const SeedLayerConfig& c) { return 1.0f / std::sqrt(static_cast<float>(c.in_features)); }

inline void init_base(const SeedLayerConfig& c, std::vector<float>& w, std::vector<float>& bias) {
  w.resize(tensor_size(c, Tensor::BaseWeight));
  bias.resize(tensor_size(c, Tensor::BaseBias));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = init_uniform(c.init_seed, kInitW, i, init_scale(c));
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = init_uniform(c.init_seed, kInitBias, i, init_scale(c));
}

inline std::size_t seed_a_block(const SeedLayerConfig& c) {
  return static_cast<std::size_t>(c.rank) * static_cast<std::size_t>(c.in_features);
}

// Fills rows [row_begin, row_end) of A_c (a_block points at its row 0) for `chunk` at `generation`.
// Row k's values do not depend on the rank, so a seed of rank r_c has the first r_c rows of a
// seed of rank r.
inline void init_seed_a_rows(const SeedLayerConfig& c, int chunk, std::uint32_t generation, int row_begin, int row_end,
                             float* a_block) {
  const auto stream = seed_stream(chunk, generation);
  const auto in = static_cast<std::size_t>(c.in_features);
  for (std::size_t i = static_cast<std::size_t>(row_begin) * in; i < static_cast<std::size_t>(row_end) * in; ++i) {
    a_block[i] = init_uniform(c.init_seed, stream, i, init_scale(c));
  }
}

// Fills A_c (seed_a_block floats) for `chunk` at `generation`.
inline void init_seed_a(const SeedLayerConfig& c, int chunk, std::uint32_t generation, float* a_block) {
  init_seed_a_rows(c, chunk, generation, 0, c.rank, a_block);
}

// Zeroes what lies beyond `rank` in chunk `chunk`'s part of a buffer shaped like `tensor` (SeedA:
// rows rank..r−1 of A_c; SeedB: columns rank..r−1 of the rows of B_c): parameters, gradients and
// moments alike.
inline void zero_beyond_rank(const SeedLayerConfig& c, const ChunkPartition& p, int chunk, int rank, Tensor tensor,
                             float* values) {
  const auto r = static_cast<std::size_t>(c.rank), k0 = static_cast<std::size_t>(rank);
  if (tensor == Tensor::SeedA) {
    const auto in = static_cast<std::size_t>(c.in_features);
    float* block = values + static_cast<std::size_t>(chunk) * seed_a_block(c);
    std::fill(block + k0 * in, block + r * in, 0.0f);
  } else if (tensor == Tensor::SeedB) {
    for (int j = p.begin(chunk); j < p.end(chunk); ++j) {
      float* row = values + static_cast<std::size_t>(j) * r;
      std::fill(row + k0, row + r, 0.0f);
    }
  }
}

}  // namespace esper::kernels::detail
