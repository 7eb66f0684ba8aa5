// Helpers shared by the seed-layer tests: deterministic data, a naive double-precision model of the
// layer (the definition of docs/design.md §5, written as plainly as possible), a normwise comparison, and the
// comparisons of a CUDA layer with the CPU reference that the CUDA tests share.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
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

struct LayerShape {
  int in_features, out_features, chunks, rank;
};

inline SeedLayerConfig layer_config(LayerShape shape, std::uint64_t init_seed, Blueprint blueprint, bool train_base) {
  SeedLayerConfig c;
  c.in_features = shape.in_features;
  c.out_features = shape.out_features;
  c.chunks = shape.chunks;
  c.rank = shape.rank;
  c.blueprint = blueprint;
  c.train_base = train_base;
  c.init_seed = init_seed;
  return c;
}

inline SeedLayerConfig small_config(Blueprint blueprint, bool train_base = false) {
  return layer_config({.in_features = 9, .out_features = 14, .chunks = 4, .rank = 3}, 7, blueprint, train_base);
}

inline std::unique_ptr<SeedLayer> cpu_layer(const SeedLayerConfig& c) {
  auto layer = make_seed_layer(Backend::Cpu, c);
  if (!layer) ADD_FAILURE() << layer.error().message();
  return std::move(layer).value();
}

// ---- A CUDA layer against the CPU reference (kernels_cuda_test) ----

#define REQUIRE_CUDA_DEVICE() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_status().reason

// layer_config with the optimizer the CUDA comparisons train with.
inline SeedLayerConfig cuda_compare_config(LayerShape shape, std::uint64_t init_seed, Blueprint blueprint,
                                           bool train_base, OptimizerKind optimizer) {
  auto c = layer_config(shape, init_seed, blueprint, train_base);
  c.optimizer.kind = optimizer;
  c.optimizer.learning_rate = 1e-2f;
  c.optimizer.epsilon = 1e-3f;  // keeps Adam's first step lr·g/(|g|+eps) from amplifying rounding of tiny g
  return c;
}

struct LayerPair {
  std::unique_ptr<SeedLayer> cpu, gpu;
};

// How cuda_pair hands the seed states to the layers: in one set_seeds call, or one set_seed a chunk.
enum class SetSeeds : std::uint8_t { Together, OneAtATime };

// The CPU reference and a CUDA layer with `memory`, both with the same nonzero B (drawn from b_seed)
// and every state represented (chunk i in state i mod kSeedStateCount), all at `alpha`.
inline LayerPair cuda_pair(const SeedLayerConfig& c, Memory memory, std::uint32_t b_seed, float alpha, SetSeeds how) {
  auto cpu = make_seed_layer(Backend::Cpu, c);
  auto gpu = make_seed_layer(Backend::Cuda, c, memory);
  EXPECT_TRUE(gpu) << (gpu ? "" : gpu.error().message());
  LayerPair p{std::move(cpu).value(), std::move(gpu).value()};
  const auto b = random_vector(tensor_size(c, Tensor::SeedB), b_seed, 0.5f);
  p.cpu->write(Tensor::SeedB, b);
  p.gpu->write(Tensor::SeedB, b);
  std::vector<SeedState> states;
  for (int i = 0; i < c.chunks; ++i) states.push_back(static_cast<SeedState>(i % kSeedStateCount));
  if (how == SetSeeds::Together) {
    const std::vector<float> alphas(states.size(), alpha);
    p.cpu->set_seeds(states, alphas);
    p.gpu->set_seeds(states, alphas);
  } else {
    for (int i = 0; i < c.chunks; ++i) {
      p.cpu->set_seed(i, states[static_cast<std::size_t>(i)], alpha);
      p.gpu->set_seed(i, states[static_cast<std::size_t>(i)], alpha);
    }
  }
  return p;
}

// Counts and flags exactly; sums and losses to `tolerance` relative to max(scale, 1).
inline void expect_telemetry_near(const std::vector<ChunkTelemetry>& gpu, const std::vector<ChunkTelemetry>& cpu,
                                  double tolerance) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (std::size_t c = 0; c < cpu.size(); ++c) {
    SCOPED_TRACE(c);
    EXPECT_EQ(gpu[c].elements, cpu[c].elements);
    EXPECT_EQ(gpu[c].dead_units, cpu[c].dead_units);
    EXPECT_EQ(gpu[c].has_loss, cpu[c].has_loss);
    auto near = [tolerance](double a, double b, double scale) {
      EXPECT_LE(std::abs(a - b), tolerance * std::max(scale, 1.0));
    };
    near(gpu[c].sum, cpu[c].sum, std::sqrt(cpu[c].sum_squares));
    near(gpu[c].sum_squares, cpu[c].sum_squares, cpu[c].sum_squares);
    near(gpu[c].loss, cpu[c].loss, cpu[c].loss);
    near(gpu[c].loss_without_seed, cpu[c].loss_without_seed, cpu[c].loss_without_seed);
    near(gpu[c].shadow_loss, cpu[c].shadow_loss, cpu[c].shadow_loss);
  }
}

// Calls body(make_config(blueprint, train_base, optimizer)) for every combination, each under a
// SCOPED_TRACE that names it.
template <typename MakeConfig, typename Body>
void for_each_training_case(MakeConfig&& make_config, Body&& body) {
  for (auto optimizer : {OptimizerKind::Sgd, OptimizerKind::Adam}) {
    for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
      for (bool train_base : {false, true}) {
        SCOPED_TRACE(std::string(blueprint == Blueprint::LowRank ? "LowRank" : "Mlp") +
                     (optimizer == OptimizerKind::Adam ? " Adam" : " SGD") + (train_base ? " base trained" : ""));
        body(make_config(blueprint, train_base, optimizer));
      }
    }
  }
}

// After a backward on both layers of p: every tensor's gradient within `tolerance` (normwise) of the
// reference's; then one optimizer step on both, and every tensor within `tolerance` after it.
inline void expect_gradients_and_step_near(LayerPair& p, double tolerance, int step) {
  for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) {
    EXPECT_LE(normwise_error(read_gradient(*p.gpu, t), read_gradient(*p.cpu, t)), tolerance)
        << "gradient of tensor " << static_cast<int>(t) << ", step " << step;
  }
  p.cpu->step();
  p.gpu->step();
  for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) {
    EXPECT_LE(normwise_error(read(*p.gpu, t), read(*p.cpu, t)), tolerance)
        << "tensor " << static_cast<int>(t) << " after step " << step;
  }
}

// ---- Seed settings, shared by the CPU and CUDA comparisons ----

// Chunk i of both layers at rank (i mod r) + 1 (every rank present once C ≥ r) with learning rate
// (1 + i mod 3)·lr: seeds of one layer that train at different ranks and rates.
inline void set_mixed_settings(LayerPair& p) {
  const auto& c = p.cpu->config();
  for (int i = 0; i < c.chunks; ++i) {
    const SeedSettings s{i % c.rank + 1, static_cast<float>(1 + i % 3) * c.optimizer.learning_rate};
    p.cpu->set_seed_settings(i, s);
    p.gpu->set_seed_settings(i, s);
  }
}

// The tail of `values` (a SeedA- or SeedB-shaped tensor or gradient of `layer`): A_c rows and B_c
// columns at or beyond the seed's rank. Parameters must be +0 bit for bit; gradients 0 of any sign.
inline void expect_tail_zero(const SeedLayer& layer, Tensor t, const std::vector<float>& values, bool exact_bits,
                             const std::string& what) {
  const auto& c = layer.config();
  const auto at = [](int i) { return static_cast<std::size_t>(i); };
  for (int chunk = 0; chunk < c.chunks; ++chunk) {
    const int rank = layer.seed_settings(chunk).rank;
    std::vector<std::size_t> tail;
    if (t == Tensor::SeedA) {
      const int begin = (chunk * c.rank + rank) * c.in_features, end = (chunk + 1) * c.rank * c.in_features;
      for (int i = begin; i < end; ++i) tail.push_back(at(i));
    } else {
      for (int j = layer.partition().begin(chunk); j < layer.partition().end(chunk); ++j) {
        for (int k = rank; k < c.rank; ++k) tail.push_back(at(j * c.rank + k));
      }
    }
    for (const std::size_t i : tail) {
      const float v = values[i];
      std::uint32_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      ASSERT_TRUE(exact_bits ? bits == 0u : v == 0.0f) << what << ": chunk " << chunk << " element " << i << " = " << v;
    }
  }
}

// Parameters and the last gradients of both seed tensors have their tails at 0.
inline void expect_tails_zero(const SeedLayer& layer, const std::string& what) {
  for (auto t : {Tensor::SeedA, Tensor::SeedB}) {
    expect_tail_zero(layer, t, read(layer, t), true, what + (t == Tensor::SeedA ? " A" : " B"));
    expect_tail_zero(layer, t, read_gradient(layer, t), false, what + (t == Tensor::SeedA ? " dA" : " dB"));
  }
}

// On a fresh pair: settings, masked tails and redrawn rows give the CPU's parameters and digest
// exactly; so do a masked write, raising a rank back and reset_seed.
inline void expect_settings_like_cpu(LayerPair& p) {
  set_mixed_settings(p);
  for (int i = 0; i < p.cpu->config().chunks; ++i) EXPECT_EQ(p.gpu->seed_settings(i), p.cpu->seed_settings(i));
  for (auto t : {Tensor::SeedA, Tensor::SeedB}) EXPECT_EQ(read(*p.gpu, t), read(*p.cpu, t)) << static_cast<int>(t);
  expect_tails_zero(*p.gpu, "after set_seed_settings");
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest()) << "after set_seed_settings";

  const auto b = random_vector(tensor_size(p.cpu->config(), Tensor::SeedB), 77, 0.5f);
  p.cpu->write(Tensor::SeedB, b);
  p.gpu->write(Tensor::SeedB, b);
  EXPECT_EQ(read(*p.gpu, Tensor::SeedB), read(*p.cpu, Tensor::SeedB)) << "a write is masked";
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest()) << "after a masked write";

  const SeedSettings full = p.cpu->default_seed_settings();
  p.cpu->set_seed_settings(0, full);  // chunk 0 was at rank 1: rows 1.. are redrawn
  p.gpu->set_seed_settings(0, full);
  EXPECT_EQ(read(*p.gpu, Tensor::SeedA), read(*p.cpu, Tensor::SeedA)) << "raising a rank";
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest()) << "after raising a rank";

  p.cpu->reset_seed(1);
  p.gpu->reset_seed(1);
  EXPECT_EQ(p.gpu->seed_settings(1), full);
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest()) << "after reset_seed";
  p.cpu->set_seed_settings(1, {1, full.learning_rate});  // back to mixed for training
  p.gpu->set_seed_settings(1, {1, full.learning_rate});
}

}  // namespace esper::kernels::testing
