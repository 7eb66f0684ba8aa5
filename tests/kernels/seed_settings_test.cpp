// Per-seed settings (SetBlueprint) on the CPU reference: a seed of rank r_c is exactly an adapter of
// rank r_c, its tail stays exactly 0, its learning rate moves only its own parameters, reset_seed
// restores the defaults, the settings are in the digest, and bad values are refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using testing::cpu_layer;
using testing::random_vector;
using testing::read;
using testing::read_gradient;

std::size_t at(int i) { return static_cast<std::size_t>(i); }

SeedLayerConfig settings_config(int rank, Blueprint blueprint, OptimizerKind optimizer) {
  auto c =
      testing::layer_config({.in_features = 11, .out_features = 23, .chunks = 5, .rank = rank}, 17, blueprint, false);
  c.optimizer.kind = optimizer;
  c.optimizer.learning_rate = 0.02f;
  return c;
}

// B (out × rank) from the first `rank` columns of a B that is out × full wide.
std::vector<float> narrow_b(const std::vector<float>& b, int out, int full, int rank) {
  std::vector<float> narrow(at(out * rank));
  for (int j = 0; j < out; ++j) {
    for (int k = 0; k < rank; ++k) narrow[at(j * rank + k)] = b[at(j * full + k)];
  }
  return narrow;
}

std::vector<float> run_forward(SeedLayer& layer, const std::vector<float>& x) {
  std::vector<float> out(x.size() / at(layer.config().in_features) * at(layer.config().out_features));
  layer.forward(x, out, {.telemetry = false});
  return out;
}

// Every tail entry (A_c rows ≥ rank, B_c columns ≥ rank) of parameters `values` is +0, bit for bit.
void expect_tail_zero(const SeedLayer& layer, Tensor t, const std::vector<float>& values, const char* what) {
  testing::expect_tail_zero(layer, t, values, true, what);
}

TEST(SeedSettings, DefaultsAreTheConfigRankAndLearningRate) {
  const auto c = settings_config(4, Blueprint::LowRank, OptimizerKind::Adam);
  auto layer = cpu_layer(c);
  for (int chunk = 0; chunk < c.chunks; ++chunk) {
    const auto s = layer->seed_settings(chunk);
    EXPECT_EQ(s.rank, 4);
    EXPECT_EQ(s.learning_rate, 0.02f);
    EXPECT_EQ(s, layer->default_seed_settings());
  }
  EXPECT_THROW(layer->seed_settings(c.chunks), Error);
}

// A layer of rank 4 with seed c at rank r_c against layers built with rank r_c: chunk c's outputs,
// its parameter gradients and, after optimizer steps, its parameters are bit-identical (the CPU
// products depend only on their inputs and K, and the tail only adds exact zeros).
TEST(SeedSettings, ASeedOfRankRcIsExactlyALayerBuiltWithRankRc) {
  constexpr int kFull = 4;
  for (auto optimizer : {OptimizerKind::Sgd, OptimizerKind::Adam}) {
    for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
      SCOPED_TRACE(std::string(blueprint == Blueprint::LowRank ? "LowRank" : "Mlp") +
                   (optimizer == OptimizerKind::Adam ? " Adam" : " SGD"));
      const auto c = settings_config(kFull, blueprint, optimizer);
      auto layer = cpu_layer(c);
      const std::vector<int> ranks = {1, 3, 2, 4, 1};
      for (int chunk = 0; chunk < c.chunks; ++chunk) layer->set_seed_settings(chunk, {ranks[at(chunk)], 0.02f});
      const auto b_full = random_vector(tensor_size(c, Tensor::SeedB), 31, 0.5f);
      layer->write(Tensor::SeedB, b_full);
      std::map<int, std::unique_ptr<SeedLayer>> reference;  // by rank
      for (int rank = 1; rank <= kFull; ++rank) {
        reference[rank] = cpu_layer(settings_config(rank, blueprint, optimizer));
        reference[rank]->write(Tensor::SeedB, narrow_b(b_full, c.out_features, kFull, rank));
      }
      const std::vector<SeedState> states = {SeedState::FINE_TUNING, SeedState::GRAFTING, SeedState::TRAINING,
                                             SeedState::FINE_TUNING, SeedState::GRAFTING};
      const std::vector<float> alphas(states.size(), 0.625f);
      layer->set_seeds(states, alphas);
      for (auto& [rank, ref] : reference) ref->set_seeds(states, alphas);

      for (int step = 0; step < 6; ++step) {
        SCOPED_TRACE(step);
        const auto x = random_vector(at(7 * c.in_features), 40u + static_cast<unsigned>(step));
        const auto target = random_vector(at(7 * c.out_features), 50u + static_cast<unsigned>(step));
        auto train = [&](SeedLayer& l) {
          const auto out = run_forward(l, x);
          std::vector<float> g(out.size());
          for (std::size_t i = 0; i < g.size(); ++i) g[i] = out[i] - target[i];
          l.backward(g, {});
          return out;
        };
        const auto out = train(*layer);
        const auto a = read(*layer, Tensor::SeedA), b = read(*layer, Tensor::SeedB);
        const auto da = read_gradient(*layer, Tensor::SeedA), db = read_gradient(*layer, Tensor::SeedB);
        for (int chunk = 0; chunk < c.chunks; ++chunk) {
          const int rank = ranks[at(chunk)];
          auto& ref = *reference[rank];
          const auto ref_out = train(ref);
          const auto ref_a = read(ref, Tensor::SeedA), ref_b = read(ref, Tensor::SeedB);
          const auto ref_da = read_gradient(ref, Tensor::SeedA), ref_db = read_gradient(ref, Tensor::SeedB);
          for (int row = 0; row < 7; ++row) {
            for (int j = layer->partition().begin(chunk); j < layer->partition().end(chunk); ++j) {
              ASSERT_EQ(out[at(row * c.out_features + j)], ref_out[at(row * c.out_features + j)])
                  << "chunk " << chunk << " output " << j;
            }
          }
          for (int k = 0; k < rank; ++k) {
            for (int i = 0; i < c.in_features; ++i) {
              const auto mine = at((chunk * kFull + k) * c.in_features + i),
                         theirs = at((chunk * rank + k) * c.in_features + i);
              ASSERT_EQ(a[mine], ref_a[theirs]) << "A chunk " << chunk << " row " << k;
              ASSERT_EQ(da[mine], ref_da[theirs]) << "dA chunk " << chunk << " row " << k;
            }
          }
          for (int j = layer->partition().begin(chunk); j < layer->partition().end(chunk); ++j) {
            for (int k = 0; k < rank; ++k) {
              ASSERT_EQ(b[at(j * kFull + k)], ref_b[at(j * rank + k)]) << "B row " << j << " column " << k;
              ASSERT_EQ(db[at(j * kFull + k)], ref_db[at(j * rank + k)]) << "dB row " << j << " column " << k;
            }
          }
        }
        // The tail's gradient is 0 (its sign is not part of the contract).
        for (int chunk = 0; chunk < c.chunks; ++chunk) {
          for (int k = ranks[at(chunk)]; k < kFull; ++k) {
            for (int i = 0; i < c.in_features; ++i) ASSERT_EQ(da[at((chunk * kFull + k) * c.in_features + i)], 0.0f);
            for (int j = layer->partition().begin(chunk); j < layer->partition().end(chunk); ++j) {
              ASSERT_EQ(db[at(j * kFull + k)], 0.0f);
            }
          }
        }
        expect_tail_zero(*layer, Tensor::SeedA, a, "A");
        expect_tail_zero(*layer, Tensor::SeedB, b, "B");
        layer->step();
        for (auto& [rank, ref] : reference) ref->step();
      }
      // Training moved the seeds: the comparisons above were not of untouched initial values.
      EXPECT_NE(read(*layer, Tensor::SeedB), read(*cpu_layer(c), Tensor::SeedB));
    }
  }
}

// With every seed at rank 2, dL/dx equals that of a layer of rank 2 up to the order of the sum over
// the hidden units (the tail adds zeros between them).
TEST(SeedSettings, InputGradientOfRankRcSeedsMatchesALayerOfRankRc) {
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    const auto c = settings_config(4, blueprint, OptimizerKind::Adam);
    auto layer = cpu_layer(c), ref = cpu_layer(settings_config(2, blueprint, OptimizerKind::Adam));
    for (int chunk = 0; chunk < c.chunks; ++chunk) layer->set_seed_settings(chunk, {2, 0.02f});
    const auto b_full = random_vector(tensor_size(c, Tensor::SeedB), 33, 0.5f);
    layer->write(Tensor::SeedB, b_full);
    ref->write(Tensor::SeedB, narrow_b(b_full, c.out_features, 4, 2));
    const std::vector<SeedState> states(at(c.chunks), SeedState::FINE_TUNING);
    layer->set_seeds(states, std::vector<float>(states.size(), 0.0f));
    ref->set_seeds(states, std::vector<float>(states.size(), 0.0f));
    const auto x = random_vector(at(9 * c.in_features), 61);
    const auto g = random_vector(at(9 * c.out_features), 62);
    std::vector<float> gx(x.size()), ref_gx(x.size());
    EXPECT_EQ(run_forward(*layer, x), run_forward(*ref, x));
    layer->backward(g, gx);
    ref->backward(g, ref_gx);
    EXPECT_LE(testing::normwise_error(gx, ref_gx), 1e-6);
    EXPECT_GT(testing::normwise_error(gx, std::vector<float>(gx.size(), 0.0f)), 0.01) << "dx is not trivially 0";
  }
}

TEST(SeedSettings, TheTailStaysExactlyZeroThroughManyStepsWritesAndReducedGradients) {
  const auto c = settings_config(4, Blueprint::BottleneckMlp, OptimizerKind::Adam);
  auto layer = cpu_layer(c);
  layer->set_seed_settings(0, {1, 0.05f});
  layer->set_seed_settings(2, {3, 0.01f});
  layer->set_seed_settings(4, {2, 0.02f});
  layer->write(Tensor::SeedB, random_vector(tensor_size(c, Tensor::SeedB), 70, 0.5f));
  layer->write(Tensor::SeedA, random_vector(tensor_size(c, Tensor::SeedA), 71, 0.5f));
  expect_tail_zero(*layer, Tensor::SeedA, read(*layer, Tensor::SeedA), "A after write");
  expect_tail_zero(*layer, Tensor::SeedB, read(*layer, Tensor::SeedB), "B after write");
  layer->set_seeds(std::vector<SeedState>(at(c.chunks), SeedState::FINE_TUNING),
                   std::vector<float>(at(c.chunks), 0.0f));
  const auto b_before = read(*layer, Tensor::SeedB);
  for (int step = 0; step < 200; ++step) {
    const auto x = random_vector(at(8 * c.in_features), 100u + static_cast<unsigned>(step));
    const auto out = run_forward(*layer, x);
    layer->backward(random_vector(out.size(), 500u + static_cast<unsigned>(step)), {});
    if (step % 50 == 7) {
      // What a collective might leave in the tail of the gradients: step must not apply it.
      for (auto t : {Tensor::SeedA, Tensor::SeedB}) {
        for (auto& v : layer->gradient_buffer(t)) v = 1.0f;
      }
    } else {
      testing::expect_tail_zero(*layer, Tensor::SeedA, read_gradient(*layer, Tensor::SeedA), false, "dA");
      testing::expect_tail_zero(*layer, Tensor::SeedB, read_gradient(*layer, Tensor::SeedB), false, "dB");
    }
    layer->step();
    expect_tail_zero(*layer, Tensor::SeedA, read(*layer, Tensor::SeedA), "A");
    expect_tail_zero(*layer, Tensor::SeedB, read(*layer, Tensor::SeedB), "B");
    if (::testing::Test::HasFatalFailure()) return;
  }
  const auto b_after = read(*layer, Tensor::SeedB);
  const int j = layer->partition().begin(0);
  EXPECT_NE(b_after[at(j * 4)], b_before[at(j * 4)]) << "the rank-1 seed's one column trained";
}

TEST(SeedSettings, ASeedsLearningRateChangesOnlyThatSeedsUpdate) {
  auto c = settings_config(3, Blueprint::LowRank, OptimizerKind::Sgd);
  c.train_base = true;
  c.optimizer.learning_rate = 0.05f;
  auto one = cpu_layer(c), two = cpu_layer(c);
  one->set_seed_settings(2, {3, 0.2f});  // 4× the layer's rate
  const std::vector<SeedState> states(at(c.chunks), SeedState::FINE_TUNING);
  const auto b = random_vector(tensor_size(c, Tensor::SeedB), 80, 0.5f);
  for (auto* l : {one.get(), two.get()}) {
    l->write(Tensor::SeedB, b);
    l->set_seeds(states, std::vector<float>(states.size(), 0.0f));
  }
  const auto x = random_vector(at(6 * c.in_features), 81);
  const auto g = random_vector(at(6 * c.out_features), 82);
  for (auto* l : {one.get(), two.get()}) {
    run_forward(*l, x);
    l->backward(g, {});
  }
  const Tensor tensors[] = {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias};
  std::vector<std::vector<float>> before, grad;
  for (auto t : tensors) {
    before.push_back(read(*one, t));
    grad.push_back(read_gradient(*one, t));
    ASSERT_EQ(grad.back(), read_gradient(*two, t)) << "the rate does not enter the gradients";
  }
  one->step();
  two->step();
  auto chunk_of = [&](Tensor t, std::size_t i) {
    if (t == Tensor::SeedA) return static_cast<int>(i / (at(c.rank) * at(c.in_features)));
    if (t == Tensor::SeedB) return one->partition().chunk_of(static_cast<int>(i / at(c.rank)));
    return -1;  // the base
  };
  int seed_two_elements = 0;
  for (std::size_t ti = 0; ti < 4; ++ti) {
    const auto after = read(*one, tensors[ti]), other = read(*two, tensors[ti]);
    for (std::size_t i = 0; i < after.size(); ++i) {
      const bool fast = chunk_of(tensors[ti], i) == 2;
      const float lr = fast ? 0.2f : 0.05f;
      ASSERT_EQ(after[i], before[ti][i] - lr * grad[ti][i]) << "tensor " << ti << " element " << i;
      if (!fast) {
        ASSERT_EQ(after[i], other[i]) << "tensor " << ti << " element " << i;
      }
      if (fast && grad[ti][i] != 0.0f) {
        ++seed_two_elements;
        // 0.2f is 4 × 0.05f exactly, so the two updates differ by exactly that factor.
        EXPECT_EQ(0.2f * grad[ti][i], 4.0f * (0.05f * grad[ti][i]));
        EXPECT_EQ(other[i], before[ti][i] - 0.05f * grad[ti][i]);
      }
    }
  }
  EXPECT_GT(seed_two_elements, 0);
}

TEST(SeedSettings, AdamUsesTheSeedsLearningRate) {
  const auto c = settings_config(3, Blueprint::BottleneckMlp, OptimizerKind::Adam);
  auto one = cpu_layer(c), two = cpu_layer(c);
  one->set_seed_settings(1, {3, 0.08f});  // 4× the layer's 0.02
  const auto b = random_vector(tensor_size(c, Tensor::SeedB), 90, 0.5f);
  for (auto* l : {one.get(), two.get()}) {
    l->write(Tensor::SeedB, b);
    l->set_seeds(std::vector<SeedState>(at(c.chunks), SeedState::FINE_TUNING), std::vector<float>(at(c.chunks), 0.0f));
  }
  const auto before = read(*one, Tensor::SeedB);
  for (int step = 0; step < 3; ++step) {
    const auto x = random_vector(at(6 * c.in_features), 91u + static_cast<unsigned>(step));
    for (auto* l : {one.get(), two.get()}) {
      run_forward(*l, x);
      l->backward(random_vector(at(6 * c.out_features), 95), {});
      l->step();
    }
    if (step == 0) {
      const auto a1 = read(*one, Tensor::SeedB), a2 = read(*two, Tensor::SeedB);
      int moved = 0;
      for (std::size_t i = 0; i < a1.size(); ++i) {
        if (one->partition().chunk_of(static_cast<int>(i / 3)) != 1) {
          ASSERT_EQ(a1[i], a2[i]);
          continue;
        }
        const double d1 = before[i] - a1[i], d2 = before[i] - a2[i];
        if (d2 == 0.0) continue;
        ++moved;
        EXPECT_NEAR(d1, 4.0 * d2, 1e-6) << "element " << i;
      }
      EXPECT_GT(moved, 0);
    }
  }
}

TEST(SeedSettings, ResetRestoresTheDefaults) {
  const auto c = settings_config(4, Blueprint::LowRank, OptimizerKind::Adam);
  auto one = cpu_layer(c), two = cpu_layer(c);
  one->set_seed_settings(1, {2, 0.5f});
  EXPECT_EQ(one->seed_settings(1), (SeedSettings{2, 0.5f}));
  one->reset_seed(1);
  two->reset_seed(1);
  EXPECT_EQ(one->seed_settings(1), one->default_seed_settings());
  EXPECT_EQ(read(*one, Tensor::SeedA), read(*two, Tensor::SeedA)) << "A_c redrawn at full rank";
  EXPECT_EQ(one->digest(), two->digest());
}

TEST(SeedSettings, AreInTheDigest) {
  const auto c = settings_config(4, Blueprint::LowRank, OptimizerKind::Adam);
  auto one = cpu_layer(c), two = cpu_layer(c);
  const auto fresh = one->digest();
  one->set_seed_settings(3, {4, 0.03f});
  EXPECT_NE(one->digest(), fresh) << "a learning rate alone";
  two->set_seed_settings(3, {4, 0.03f});
  EXPECT_EQ(one->digest(), two->digest()) << "the same settings";
  two->set_seed_settings(3, {4, std::nextafter(0.03f, 1.0f)});
  EXPECT_NE(one->digest(), two->digest()) << "a learning rate's last bit";
  two->set_seed_settings(3, {3, 0.03f});
  EXPECT_NE(one->digest(), two->digest()) << "a rank";
  two->set_seed_settings(3, {4, 0.03f});
  EXPECT_EQ(one->digest(), two->digest()) << "raising the rank back redraws the same rows of A_c";
  one->set_seed_settings(3, one->default_seed_settings());
  EXPECT_EQ(one->digest(), fresh);
}

TEST(SeedSettings, RaisingTheRankKeepsTheOutputAndEnablesFreshRows) {
  const auto c = settings_config(4, Blueprint::LowRank, OptimizerKind::Adam);
  auto layer = cpu_layer(c);
  const auto fresh_a = read(*layer, Tensor::SeedA);
  layer->set_seed_settings(2, {1, 0.02f});
  layer->set_seeds(std::vector<SeedState>(at(c.chunks), SeedState::FINE_TUNING),
                   std::vector<float>(at(c.chunks), 0.0f));
  const auto x = random_vector(at(5 * c.in_features), 120);
  for (int step = 0; step < 5; ++step) {
    const auto out = run_forward(*layer, x);
    layer->backward(random_vector(out.size(), 121u + static_cast<unsigned>(step)), {});
    layer->step();
  }
  const auto out_before = run_forward(*layer, x);
  const auto a_trained = read(*layer, Tensor::SeedA);
  layer->set_seed_settings(2, {4, 0.02f});
  EXPECT_EQ(run_forward(*layer, x), out_before) << "the new B columns are 0";
  const auto a = read(*layer, Tensor::SeedA);
  const std::size_t block = at(4 * c.in_features), row = at(c.in_features);
  for (std::size_t i = 0; i < block; ++i) {
    const std::size_t e = 2 * block + i;
    if (i < row) {
      EXPECT_EQ(a[e], a_trained[e]) << "the trained row is kept";
    } else {
      EXPECT_EQ(a[e], fresh_a[e]) << "rows 1..3 as a fresh seed has them";
    }
  }
  const auto out = run_forward(*layer, x);
  layer->backward(random_vector(out.size(), 130), {});
  layer->step();
  const auto b = read(*layer, Tensor::SeedB);
  EXPECT_NE(b[at(layer->partition().begin(2) * 4 + 3)], 0.0f) << "the re-enabled column trains";
}

TEST(SeedSettings, InvalidValuesThrowNamingTheValue) {
  const auto c = settings_config(4, Blueprint::LowRank, OptimizerKind::Adam);
  auto layer = cpu_layer(c);
  const auto digest = layer->digest();
  auto message = [&](int chunk, SeedSettings s) -> std::string {
    try {
      layer->set_seed_settings(chunk, s);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  auto expect_names = [](const std::string& what, const std::string& name, const std::string& value) {
    EXPECT_NE(what.find(name), std::string::npos) << what;
    EXPECT_NE(what.find("got " + value), std::string::npos) << what;
  };
  expect_names(message(0, {0, 0.01f}), "rank", "0");
  expect_names(message(0, {5, 0.01f}), "rank", "5");
  expect_names(message(0, {-1, 0.01f}), "rank", "-1");
  expect_names(message(1, {2, 0.0f}), "learning_rate", "0");
  expect_names(message(1, {2, -0.5f}), "learning_rate", "-0.5");
  expect_names(message(1, {2, std::numeric_limits<float>::quiet_NaN()}), "learning_rate", "nan");
  expect_names(message(1, {2, std::numeric_limits<float>::infinity()}), "learning_rate", "inf");
  EXPECT_NE(message(5, {2, 0.01f}).find("chunk 5"), std::string::npos);
  EXPECT_NE(message(-1, {2, 0.01f}).find("chunk -1"), std::string::npos);
  for (int chunk = 0; chunk < c.chunks; ++chunk) EXPECT_EQ(layer->seed_settings(chunk), layer->default_seed_settings());
  EXPECT_EQ(layer->digest(), digest) << "a refused setting changes nothing";
}

}  // namespace
}  // namespace esper::kernels
