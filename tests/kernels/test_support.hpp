// Helpers shared by the seed-layer tests: deterministic data, a naive double-precision model of the
// layer (the definition of DESIGN §5, written as plainly as possible), and a normwise comparison.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/seed_layer.hpp"

namespace esper::kernels::testing {

inline std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline std::vector<float> read(const SeedLayer& layer, Tensor t) {
  std::vector<float> v(tensor_size(layer.config(), t));
  layer.read(t, v);
  return v;
}

inline std::vector<float> read_gradient(const SeedLayer& layer, Tensor t) {
  std::vector<float> v(tensor_size(layer.config(), t));
  layer.read_gradient(t, v);
  return v;
}

// max |a − b| / max(max |b|, 1): the error relative to the scale of the reference b.
inline double normwise_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return a.size() == b.size() ? diff / scale : 1e30;
}

// The layer, recomputed naively in double from its parameters: y, f (per element) and o.
struct NaiveForward {
  std::vector<double> y, f, o;
  std::vector<double> z;  // batch × C·r pre-activations
};

inline NaiveForward naive_forward(const SeedLayer& layer, const std::vector<float>& x) {
  const auto& c = layer.config();
  const int in = c.in_features, n = c.out_features, r = c.rank, hw = c.chunks * r;
  const int batch = static_cast<int>(x.size()) / in;
  const auto w = read(layer, Tensor::BaseWeight), b = read(layer, Tensor::BaseBias);
  const auto a = read(layer, Tensor::SeedA), bb = read(layer, Tensor::SeedB);
  NaiveForward out;
  out.y.assign(static_cast<std::size_t>(batch * n), 0.0);
  out.f.assign(out.y.size(), 0.0);
  out.o.assign(out.y.size(), 0.0);
  out.z.assign(static_cast<std::size_t>(batch * hw), 0.0);
  for (int row = 0; row < batch; ++row) {
    for (int q = 0; q < hw; ++q) {
      double s = 0;
      for (int i = 0; i < in; ++i) s += static_cast<double>(a[static_cast<std::size_t>(q * in + i)]) * x[static_cast<std::size_t>(row * in + i)];
      out.z[static_cast<std::size_t>(row * hw + q)] = s;
    }
    for (int j = 0; j < n; ++j) {
      double y = b[static_cast<std::size_t>(j)];
      for (int i = 0; i < in; ++i) y += static_cast<double>(w[static_cast<std::size_t>(j * in + i)]) * x[static_cast<std::size_t>(row * in + i)];
      const int chunk = layer.partition().chunk_of(j);
      const SeedState s = layer.states()[static_cast<std::size_t>(chunk)];
      double f = 0;
      if (seed_evaluated(s)) {
        for (int k = 0; k < r; ++k) {
          double h = out.z[static_cast<std::size_t>(row * hw + chunk * r + k)];
          if (c.blueprint == Blueprint::BottleneckMlp) h = std::max(h, 0.0);
          f += static_cast<double>(bb[static_cast<std::size_t>(j * r + k)]) * h;
        }
      }
      const auto at = static_cast<std::size_t>(row * n + j);
      out.y[at] = y;
      out.f[at] = f;
      out.o[at] = y + static_cast<double>(layer.alpha_in_effect(chunk)) * f;
    }
  }
  return out;
}

inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

inline SeedLayerConfig small_config(Blueprint blueprint, bool train_base = false) {
  SeedLayerConfig c;
  c.in_features = 9;
  c.out_features = 14;
  c.chunks = 4;
  c.rank = 3;
  c.blueprint = blueprint;
  c.train_base = train_base;
  c.init_seed = 7;
  return c;
}

inline std::unique_ptr<SeedLayer> cpu_layer(const SeedLayerConfig& c) {
  auto layer = make_seed_layer(Backend::Cpu, c);
  if (!layer) ADD_FAILURE() << layer.error().message();
  return std::move(layer).value();
}

}  // namespace esper::kernels::testing
