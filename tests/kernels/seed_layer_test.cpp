// The CPU reference seed layer against docs/design.md §5: chunk partition, the per-state rule, forward
// against a naive model, telemetry, optimizers, digest and reset. Gradients: gradient_test.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <set>

#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using testing::cpu_layer;
using testing::naive_forward;
using testing::normwise_error;
using testing::random_vector;
using testing::read;
using testing::read_gradient;
using testing::small_config;

const std::vector<SeedState> kAllStates = {
    SeedState::DORMANT,     SeedState::GERMINATED, SeedState::TRAINING, SeedState::GRAFTING,
    SeedState::STABILIZATION, SeedState::EVALUATING, SeedState::FINE_TUNING, SeedState::FOSSILIZED,
    SeedState::CULLED,      SeedState::CANCELLED,  SeedState::ROLLED_BACK};

TEST(ChunkPartition, SizesDifferByAtMostOneAndCoverEveryFeature) {
  for (int features = 1; features <= 200; ++features) {
    for (int chunks = 1; chunks <= features; chunks += (chunks < 20 ? 1 : 7)) {
      const auto p = partition_features(features, chunks);
      ASSERT_EQ(p.chunks(), chunks);
      ASSERT_EQ(p.begin(0), 0);
      ASSERT_EQ(p.end(chunks - 1), features);
      int smallest = features, largest = 0;
      for (int c = 0; c < chunks; ++c) {
        ASSERT_EQ(p.end(c), c + 1 < chunks ? p.begin(c + 1) : features);
        smallest = std::min(smallest, p.size(c));
        largest = std::max(largest, p.size(c));
        for (int j = p.begin(c); j < p.end(c); ++j) ASSERT_EQ(p.chunk_of(j), c);
      }
      ASSERT_GE(smallest, 1) << features << " features, " << chunks << " chunks";
      ASSERT_LE(largest - smallest, 1) << features << " features, " << chunks << " chunks";
    }
  }
  const auto p = partition_features(768, 100);
  EXPECT_EQ(p.size(0), 8);
  EXPECT_EQ(p.size(67), 8);
  EXPECT_EQ(p.size(68), 7);
}

TEST(ChunkPartition, RejectsImpossibleSplits) {
  EXPECT_THROW(partition_features(10, 0), Error);
  EXPECT_THROW(partition_features(10, 11), Error);
}

TEST(SeedLayerFactory, RejectsInvalidConfigAsValue) {
  auto c = small_config(Blueprint::LowRank);
  c.chunks = c.out_features + 1;
  auto layer = make_seed_layer(Backend::Cpu, c);
  ASSERT_FALSE(layer);
  EXPECT_NE(layer.error().message().find("chunks"), std::string::npos);
  c = small_config(Blueprint::LowRank);
  c.rank = 0;
  EXPECT_FALSE(make_seed_layer(Backend::Cpu, c));
  c = small_config(Blueprint::LowRank);
  c.optimizer.beta2 = 1.0f;
  EXPECT_FALSE(make_seed_layer(Backend::Cpu, c));
}

TEST(SeedLayerFactory, CudaBackendWithoutDeviceIsAnErrorValueWithTheReason) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present: " << cuda_status().reason;
  auto layer = make_seed_layer(Backend::Cuda, small_config(Blueprint::LowRank));
  ASSERT_FALSE(layer);
  EXPECT_NE(layer.error().message().find("CUDA"), std::string::npos);
  EXPECT_FALSE(cuda_status().reason.empty());
}

// The one definition of docs/design.md §5's rule, which the lifecycle uses too (runtime/lifecycle/states.hpp).
TEST(SeedRules, AlphaEvaluationAndTrainingPerState) {
  struct Row { SeedState s; float alpha; bool evaluated, trains, shadow; float scale; };
  const float ramp = 0.37f;
  const Row rows[] = {
      {SeedState::DORMANT, 0, false, false, false, 0},      {SeedState::GERMINATED, 0, false, false, false, 0},
      {SeedState::TRAINING, 0, true, true, true, 1},        {SeedState::GRAFTING, ramp, true, true, false, ramp},
      {SeedState::STABILIZATION, 1, true, false, false, 0}, {SeedState::EVALUATING, 1, true, false, false, 0},
      {SeedState::FINE_TUNING, 1, true, true, false, 1},    {SeedState::FOSSILIZED, 1, true, false, false, 0},
      {SeedState::CULLED, 0, false, false, false, 0},       {SeedState::CANCELLED, 0, false, false, false, 0},
      {SeedState::ROLLED_BACK, 0, false, false, false, 0}};
  static_assert(std::size(rows) == kSeedStateCount);
  for (const auto& row : rows) {
    SCOPED_TRACE(static_cast<int>(row.s));
    EXPECT_EQ(effective_alpha(row.s, ramp), row.alpha);
    EXPECT_EQ(seed_evaluated(row.s), row.evaluated);
    EXPECT_EQ(seed_trains(row.s), row.trains);
    EXPECT_EQ(seed_trains_in_shadow(row.s), row.shadow);
    EXPECT_EQ(seed_gradient_scale(row.s, ramp), row.scale);
  }
}

TEST(SeedRules, AValueOutsideTheStatesIsNeverEvaluatedNorTrained) {
  for (int v : {kSeedStateCount, 42, 255}) {
    const auto s = static_cast<SeedState>(v);
    EXPECT_FALSE(seed_evaluated(s)) << v;
    EXPECT_FALSE(seed_trains(s)) << v;
    EXPECT_FALSE(seed_trains_in_shadow(s)) << v;
    EXPECT_EQ(effective_alpha(s, 0.5f), 0.0f) << v;
    EXPECT_EQ(seed_gradient_scale(s, 0.5f), 0.0f) << v;
  }
}

std::vector<float> forward(SeedLayer& layer, const std::vector<float>& x, const ForwardOptions& o = {}) {
  std::vector<float> out(x.size() / static_cast<std::size_t>(layer.config().in_features) *
                         static_cast<std::size_t>(layer.config().out_features));
  layer.forward(x, out, o);
  return out;
}

void give_seeds_weight(SeedLayer& layer, std::uint32_t seed) {
  layer.write(Tensor::SeedB, random_vector(tensor_size(layer.config(), Tensor::SeedB), seed, 0.5f));
}

TEST(SeedLayerForward, MatchesTheNaiveModelInEveryStateForBothBlueprints) {
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto c = small_config(blueprint);
    c.chunks = static_cast<int>(kAllStates.size());
    c.out_features = 27;
    auto layer = cpu_layer(c);
    give_seeds_weight(*layer, 3);
    std::vector<float> alphas(kAllStates.size(), 0.6f);
    layer->set_seeds(kAllStates, alphas);
    for (int batch : {1, 5, 13}) {
      const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 11u + static_cast<unsigned>(batch));
      const auto out = forward(*layer, x);
      EXPECT_LE(normwise_error(out, testing::to_float(naive_forward(*layer, x).o)), 1e-6) << "batch " << batch;
    }
  }
}

TEST(SeedLayerForward, GerminatedSeedChangesNothingEvenWhenBlendedFully) {
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto layer = cpu_layer(small_config(blueprint));
    const auto x = random_vector(6 * 9, 1);
    const auto base = forward(*layer, x);
    for (auto s : {SeedState::GERMINATED, SeedState::TRAINING, SeedState::FINE_TUNING, SeedState::FOSSILIZED}) {
      for (int c = 0; c < 4; ++c) layer->set_seed(c, s, 1.0f);
      EXPECT_EQ(forward(*layer, x), base) << "state " << static_cast<int>(s) << ": B = 0 must contribute exactly 0";
    }
  }
}

TEST(SeedLayerForward, TrainingSeedLeavesOutputBitIdenticalWhileItLearns) {
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto layer = cpu_layer(small_config(blueprint));
    give_seeds_weight(*layer, 5);
    const auto x = random_vector(8 * 9, 2);
    const auto target = random_vector(8 * 14, 3);
    const auto base = forward(*layer, x);
    for (int c = 0; c < 4; ++c) layer->set_seed(c, SeedState::TRAINING, 0.9f);
    const auto a_before = read(*layer, Tensor::SeedA), b_before = read(*layer, Tensor::SeedB);
    const auto w_before = read(*layer, Tensor::BaseWeight);
    for (int it = 0; it < 3; ++it) {
      const auto out = forward(*layer, x, {.target = target});
      ASSERT_EQ(std::memcmp(out.data(), base.data(), base.size() * sizeof(float)), 0) << "iteration " << it;
      const auto tel = layer->telemetry();
      for (const auto& t : tel) {
        EXPECT_EQ(t.loss, t.loss_without_seed);
        EXPECT_NE(t.shadow_loss, t.loss) << "the shadow blend is tracked";
      }
      std::vector<float> g(out.size());
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = out[i] - target[i];
      std::vector<float> gx(x.size());
      layer->backward(g, gx);
      layer->step();
    }
    EXPECT_NE(read(*layer, Tensor::SeedA), a_before);
    EXPECT_NE(read(*layer, Tensor::SeedB), b_before);
    EXPECT_EQ(read(*layer, Tensor::BaseWeight), w_before) << "the base is frozen";
  }
}

TEST(SeedLayerForward, AlphaInEffectFollowsTheStateRule) {
  auto layer = cpu_layer(small_config(Blueprint::BottleneckMlp));
  give_seeds_weight(*layer, 9);
  const auto x = random_vector(4 * 9, 4);
  const auto base = naive_forward(*layer, x);  // all DORMANT: o = y
  for (auto s : kAllStates) {
    layer->set_seed(1, s, 0.25f);
    const auto out = forward(*layer, x);
    const auto model = naive_forward(*layer, x);
    const double alpha = effective_alpha(s, 0.25f);
    for (int row = 0; row < 4; ++row) {
      for (int j = layer->partition().begin(1); j < layer->partition().end(1); ++j) {
        const auto at = static_cast<std::size_t>(row * 14 + j);
        const double expected = base.y[at] + alpha * (seed_evaluated(s) ? model.f[at] : 0.0);
        EXPECT_NEAR(out[at], expected, 1e-5) << "state " << static_cast<int>(s);
      }
    }
  }
}

TEST(SeedLayerTelemetry, EqualsANaiveComputationOverTheOutput) {
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto c = small_config(blueprint);
    c.out_features = 37;
    c.chunks = 5;
    c.dead_threshold = 0.0f;
    auto layer = cpu_layer(c);
    give_seeds_weight(*layer, 21);
    auto bias = read(*layer, Tensor::BaseBias);
    bias[3] = -100.0f;  // features 3, 4 and 30 are dead for any input in [-1, 1]
    bias[4] = -100.0f;
    bias[30] = -100.0f;
    layer->write(Tensor::BaseBias, bias);
    const std::vector<SeedState> states = {SeedState::TRAINING, SeedState::GRAFTING, SeedState::DORMANT,
                                           SeedState::EVALUATING, SeedState::FOSSILIZED};
    layer->set_seeds(states, std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, 0.5f});
    const int batch = 16;
    const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 8);
    const auto target = random_vector(static_cast<std::size_t>(batch * c.out_features), 9);
    const auto out = forward(*layer, x, {.target = target});
    const auto model = naive_forward(*layer, x);
    const auto tel = layer->telemetry();
    ASSERT_EQ(tel.size(), 5u);
    const double n_total = static_cast<double>(batch) * c.out_features;
    for (int chunk = 0; chunk < 5; ++chunk) {
      SCOPED_TRACE(chunk);
      double sum = 0, sq = 0, loss = 0, loss_base = 0, loss_shadow = 0;
      int dead = 0;
      for (int j = layer->partition().begin(chunk); j < layer->partition().end(chunk); ++j) {
        bool alive = false;
        for (int row = 0; row < batch; ++row) {
          const auto at = static_cast<std::size_t>(row * c.out_features + j);
          const double o = out[at], t = target[at];
          sum += o;
          sq += o * o;
          alive |= o > 0.0;
          loss += (o - t) * (o - t);
          loss_base += (model.y[at] - t) * (model.y[at] - t);
          loss_shadow += (model.y[at] + model.f[at] - t) * (model.y[at] + model.f[at] - t);
        }
        dead += alive ? 0 : 1;
      }
      const auto& t = tel[static_cast<std::size_t>(chunk)];
      EXPECT_EQ(t.elements, static_cast<std::int64_t>(batch) * layer->partition().size(chunk));
      EXPECT_EQ(t.dead_units, dead);
      EXPECT_NEAR(t.sum, sum, 1e-9 * std::max(1.0, std::abs(sum)));
      EXPECT_NEAR(t.sum_squares, sq, 1e-9 * sq);
      EXPECT_TRUE(t.has_loss);
      EXPECT_NEAR(t.loss, loss / n_total, 1e-9 * loss / n_total);
      EXPECT_NEAR(t.loss_without_seed, loss_base / n_total, 1e-5 * loss_base / n_total);
      EXPECT_NEAR(t.shadow_loss, loss_shadow / n_total, 1e-5 * loss_shadow / n_total);
      EXPECT_NEAR(t.mean(), sum / static_cast<double>(t.elements), 1e-9);
    }
    EXPECT_EQ(tel[0].dead_units, 2) << "features 3 and 4 sit in chunk 0";
    EXPECT_EQ(tel[4].dead_units, 1) << "feature 30 sits in chunk 4";
    EXPECT_NEAR(tel[3].performance_delta(), tel[3].loss_without_seed - tel[3].loss, 1e-12)
        << "EVALUATING blends at α = 1, so its loss is the loss with the seed";
    EXPECT_EQ(tel[2].shadow_loss, tel[2].loss_without_seed) << "a DORMANT seed is not evaluated";

    const auto without = forward(*layer, x, {.target = target, .telemetry = false});
    EXPECT_EQ(std::memcmp(without.data(), out.data(), out.size() * sizeof(float)), 0)
        << "telemetry does not change the output";
    EXPECT_EQ(layer->telemetry()[0].dead_units, 2) << "a forward without telemetry keeps the last telemetry";
  }
}

TEST(SeedLayerOptimizer, SgdStepIsExactlyParameterMinusLearningRateTimesGradient) {
  auto c = small_config(Blueprint::LowRank, /*train_base=*/true);
  c.optimizer = {.kind = OptimizerKind::Sgd, .learning_rate = 0.05f};
  auto layer = cpu_layer(c);
  give_seeds_weight(*layer, 2);
  layer->set_seeds(std::vector<SeedState>{SeedState::FINE_TUNING, SeedState::DORMANT, SeedState::GRAFTING,
                                          SeedState::FOSSILIZED},
                   std::vector<float>{0, 0, 0.4f, 0});
  const auto x = random_vector(5 * 9, 3);
  const auto out = forward(*layer, x);
  layer->backward(random_vector(out.size(), 4), {});
  const Tensor tensors[] = {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias};
  std::vector<std::vector<float>> expected;
  for (auto t : tensors) {
    const auto before = read(*layer, t);
    const auto grad = read_gradient(*layer, t);
    auto& e = expected.emplace_back(before.size());
    for (std::size_t i = 0; i < before.size(); ++i) e[i] = before[i] - 0.05f * grad[i];
  }
  layer->step();
  for (std::size_t ti = 0; ti < 4; ++ti) EXPECT_EQ(read(*layer, tensors[ti]), expected[ti]) << "tensor " << ti;
}

TEST(SeedLayerOptimizer, AdamFirstStepsMatchAHandComputation) {
  auto c = small_config(Blueprint::BottleneckMlp, /*train_base=*/true);
  c.optimizer = {.kind = OptimizerKind::Adam, .learning_rate = 0.01f, .beta1 = 0.8f, .beta2 = 0.95f, .epsilon = 1e-6f};
  auto layer = cpu_layer(c);
  give_seeds_weight(*layer, 12);
  layer->set_seeds(std::vector<SeedState>(4, SeedState::FINE_TUNING), std::vector<float>(4, 0.0f));
  const auto x = random_vector(6 * 9, 13);
  std::vector<float> out(6 * 14);
  const Tensor tensors[] = {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias};
  std::vector<std::vector<double>> p, m, v;
  for (auto t : tensors) {
    const auto values = read(*layer, t);
    p.emplace_back(values.begin(), values.end());
    m.emplace_back(values.size(), 0.0);
    v.emplace_back(values.size(), 0.0);
  }
  for (int step = 1; step <= 3; ++step) {
    layer->forward(x, out);
    layer->backward(random_vector(out.size(), 100u + static_cast<unsigned>(step)), {});
    for (std::size_t ti = 0; ti < 4; ++ti) {
      const auto g = read_gradient(*layer, tensors[ti]);
      for (std::size_t i = 0; i < g.size(); ++i) {
        m[ti][i] = 0.8 * m[ti][i] + 0.2 * g[i];
        v[ti][i] = 0.95 * v[ti][i] + 0.05 * static_cast<double>(g[i]) * g[i];
        const double m_hat = m[ti][i] / (1 - std::pow(0.8, step)), v_hat = v[ti][i] / (1 - std::pow(0.95, step));
        p[ti][i] -= 0.01 * m_hat / (std::sqrt(v_hat) + 1e-6);
      }
    }
    layer->step();
    for (std::size_t ti = 0; ti < 4; ++ti) {
      EXPECT_LE(normwise_error(read(*layer, tensors[ti]), testing::to_float(p[ti])), 2e-6)
          << "step " << step << " tensor " << ti;
    }
  }
}

TEST(SeedLayerOptimizer, EachSeedCountsItsOwnAdamStepsAndFrozenSeedsDoNotMove) {
  auto c = small_config(Blueprint::LowRank);
  c.optimizer.learning_rate = 0.01f;
  auto layer = cpu_layer(c);
  give_seeds_weight(*layer, 14);
  const auto x = random_vector(4 * 9, 15);
  std::vector<float> out(4 * 14);
  layer->set_seed(0, SeedState::TRAINING);
  for (int i = 0; i < 5; ++i) {  // seed 0 trains for 5 steps before seed 1 starts
    layer->forward(x, out);
    layer->backward(random_vector(out.size(), 16), {});
    layer->step();
  }
  layer->set_seed(1, SeedState::TRAINING);
  layer->set_seed(2, SeedState::STABILIZATION);
  const auto before = read(*layer, Tensor::SeedB);
  layer->forward(x, out);
  layer->backward(random_vector(out.size(), 17), {});
  layer->step();
  const auto after = read(*layer, Tensor::SeedB);
  const auto grad = read_gradient(*layer, Tensor::SeedB);
  for (int j = layer->partition().begin(1) * 3; j < layer->partition().end(1) * 3; ++j) {
    const auto i = static_cast<std::size_t>(j);
    // First Adam step of seed 1: the bias-corrected update is lr·g/(|g| + eps) ≈ lr·sign(g).
    EXPECT_NEAR(before[i] - after[i], 0.01 * (grad[i] > 0 ? 1 : -1), 1e-4);
  }
  for (int j = layer->partition().begin(2) * 3; j < layer->partition().end(2) * 3; ++j) {
    EXPECT_EQ(after[static_cast<std::size_t>(j)], before[static_cast<std::size_t>(j)]) << "STABILIZATION is frozen";
    EXPECT_EQ(grad[static_cast<std::size_t>(j)], 0.0f);
  }
  const auto digest = layer->digest();
  layer->step();
  EXPECT_EQ(layer->digest(), digest) << "a step consumes its gradients";
}

TEST(SeedLayerDigest, EqualForEqualLayersAndChangesWithEveryStateAlphaAndParameter) {
  const auto c = small_config(Blueprint::LowRank, true);
  auto one = cpu_layer(c), two = cpu_layer(c);
  EXPECT_EQ(one->digest(), two->digest());
  auto other_seed = c;
  other_seed.init_seed = 8;
  EXPECT_NE(cpu_layer(other_seed)->digest(), one->digest());

  std::set<std::uint64_t> seen = {one->digest()};
  auto expect_new = [&](const char* what) {
    EXPECT_TRUE(seen.insert(one->digest()).second) << what << " did not change the digest";
  };
  one->set_seed(2, SeedState::TRAINING);
  expect_new("a state");
  one->set_seed(2, SeedState::TRAINING, 0.5f);
  expect_new("an alpha (even one not in effect)");
  for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) {
    auto values = read(*one, t);
    values.back() = std::nextafter(values.back(), 10.0f);
    one->write(t, values);
    expect_new("a parameter's last bit");
  }
  std::vector<float> out(3 * 14);
  const auto x = random_vector(3 * 9, 1);  // backward reads x: it must outlive the forward
  one->forward(x, out);
  one->backward(random_vector(out.size(), 2), {});
  one->step();
  expect_new("an optimizer step");
  one->reset_seed(2);
  expect_new("a reset");

  two->set_seed(2, SeedState::TRAINING, 0.5f);
  for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) two->write(t, read(*one, t));
  EXPECT_NE(two->digest(), one->digest()) << "optimizer moments and step counts are part of the digest";
}

TEST(SeedLayerReset, DrawsAFreshSeedThatChangesNothingAndIsReproducible) {
  const auto c = small_config(Blueprint::BottleneckMlp);
  auto one = cpu_layer(c), two = cpu_layer(c);
  give_seeds_weight(*one, 30);
  give_seeds_weight(*two, 30);
  const auto a_before = read(*one, Tensor::SeedA);
  one->reset_seed(1);
  two->reset_seed(1);
  EXPECT_EQ(one->digest(), two->digest());
  const auto a_after = read(*one, Tensor::SeedA), b_after = read(*one, Tensor::SeedB);
  const std::size_t block = 3 * 9;
  for (std::size_t i = 0; i < a_after.size(); ++i) {
    if (i / block == 1) EXPECT_NE(a_after[i], a_before[i]);
    else EXPECT_EQ(a_after[i], a_before[i]);
  }
  for (int j = one->partition().begin(1) * 3; j < one->partition().end(1) * 3; ++j) EXPECT_EQ(b_after[static_cast<std::size_t>(j)], 0.0f);
}

TEST(SeedLayerErrors, MisuseIsAFaultWithContext) {
  auto layer = cpu_layer(small_config(Blueprint::LowRank));
  EXPECT_THROW(layer->set_seed(0, SeedState::GRAFTING, 1.5f), Error);
  EXPECT_THROW(layer->set_seed(4, SeedState::GRAFTING, 0.5f), Error);
  std::vector<float> x(9 * 2), out(14 * 3);
  EXPECT_THROW(layer->forward(x, out), Error);
  EXPECT_THROW(layer->backward(out, {}), Error);
  try {
    layer->set_seed(0, SeedState::GRAFTING, -1.0f);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alpha"), std::string::npos);
  }
}

}  // namespace
}  // namespace esper::kernels
