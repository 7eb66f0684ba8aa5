// Initial parameters, identical on both backends: W, b, A ~ U(-1/√in, 1/√in) drawn from the
// counter-based stream of layer_math.hpp; B = 0 (a fresh seed changes nothing). A reset seed draws
// its A_c from the next generation of its own stream, so replicas that reset together stay equal.
#pragma once

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

// Fills A_c (seed_a_block floats) for `chunk` at `generation`.
inline void init_seed_a(const SeedLayerConfig& c, int chunk, std::uint32_t generation, float* a_block) {
  const auto stream = seed_stream(chunk, generation);
  for (std::size_t i = 0; i < seed_a_block(c); ++i) a_block[i] = init_uniform(c.init_seed, stream, i, init_scale(c));
}

}  // namespace esper::kernels::detail
