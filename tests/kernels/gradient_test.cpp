// Backward of the CPU reference against central finite differences, for every state that trains,
// both blueprints, the base trainable and frozen, parameter and input gradients.
// The layer is piecewise linear in each parameter and in x (linear for LowRank; ReLU kinks for the
// MLP, kept at a distance larger than the step), so central differences with a large step are exact
// up to fp32 rounding of the few outputs a step changes; the loss Σ g·o is summed in double.
#include <gtest/gtest.h>

#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using testing::random_vector;
using testing::read;
using testing::read_gradient;

struct GradientCase {
  Blueprint blueprint;
  SeedState state;  // of chunk 0; chunk 1 is STABILIZATION (frozen, α = 1), chunk 2 DORMANT
  float alpha;
  bool train_base;
};

std::string case_name(const ::testing::TestParamInfo<GradientCase>& info) {
  const auto& c = info.param;
  std::string s = c.blueprint == Blueprint::LowRank ? "LowRank" : "Mlp";
  s += c.state == SeedState::TRAINING ? "Training" : c.state == SeedState::GRAFTING ? "Grafting" : "FineTuning";
  return s + (c.train_base ? "BaseTrained" : "BaseFrozen");
}

class SeedLayerGradient : public ::testing::TestWithParam<GradientCase> {
 protected:
  static constexpr int kIn = 5, kOut = 7, kChunks = 3, kRank = 2, kBatch = 3;
  static constexpr float kStep = 1e-2f;

  void SetUp() override {
    const auto& p = GetParam();
    SeedLayerConfig c;
    c.in_features = kIn;
    c.out_features = kOut;
    c.chunks = kChunks;
    c.rank = kRank;
    c.blueprint = p.blueprint;
    c.train_base = p.train_base;
    c.init_seed = 99;
    layer_ = testing::cpu_layer(c);
    layer_->write(Tensor::SeedB, random_vector(tensor_size(c, Tensor::SeedB), 5, 0.8f));
    states_ = {p.state, SeedState::STABILIZATION, SeedState::DORMANT};
    alphas_ = {p.alpha, 0.0f, 0.0f};
    layer_->set_seeds(states_, alphas_);
    // Inputs whose hidden pre-activations keep clear of the ReLU kink.
    for (std::uint32_t seed = 1;; ++seed) {
      x_ = random_vector(kBatch * kIn, seed);
      const auto model = testing::naive_forward(*layer_, x_);
      double margin = 1e9;
      for (double z : model.z) margin = std::min(margin, std::abs(z));
      if (margin > 0.05) break;
      ASSERT_LT(seed, 10000u);
    }
    g_ = random_vector(kBatch * kOut, 77);
  }

  double loss(const std::vector<SeedState>& states, const std::vector<float>& x) {
    layer_->set_seeds(states, alphas_);
    std::vector<float> out(kBatch * kOut);
    layer_->forward(x, out, {.telemetry = false});
    double s = 0;
    for (std::size_t i = 0; i < out.size(); ++i) s += static_cast<double>(g_[i]) * out[i];
    return s;
  }

  // The blend a training seed's parameters learn for: TRAINING trains as if at α = 1.
  std::vector<SeedState> shadow_states() const {
    auto s = states_;
    if (s[0] == SeedState::TRAINING) s[0] = SeedState::FINE_TUNING;
    return s;
  }

  std::vector<double> numeric_gradient(Tensor t, const std::vector<SeedState>& states) {
    auto values = read(*layer_, t);
    std::vector<double> grad(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float original = values[i];
      values[i] = original + kStep;
      const float up = values[i];
      layer_->write(t, values);
      const double l_up = loss(states, x_);
      values[i] = original - kStep;
      const float down = values[i];
      layer_->write(t, values);
      const double l_down = loss(states, x_);
      values[i] = original;
      layer_->write(t, values);
      grad[i] = (l_up - l_down) / (static_cast<double>(up) - down);
    }
    return grad;
  }

  void analytic(std::vector<float>* grad_x) {
    layer_->set_seeds(states_, alphas_);
    std::vector<float> out(kBatch * kOut);
    layer_->forward(x_, out);
    grad_x->assign(x_.size(), 0.0f);
    layer_->backward(g_, *grad_x);
  }

  static void expect_close(double analytic, double numeric, const std::string& what) {
    EXPECT_NEAR(analytic, numeric, 5e-4 * std::max(1.0, std::abs(numeric))) << what;
  }

  std::unique_ptr<SeedLayer> layer_;
  std::vector<SeedState> states_;
  std::vector<float> alphas_;
  std::vector<float> x_, g_;
};

TEST_P(SeedLayerGradient, SeedParameterGradientsMatchFiniteDifferences) {
  std::vector<float> gx;
  analytic(&gx);
  const auto da = read_gradient(*layer_, Tensor::SeedA), db = read_gradient(*layer_, Tensor::SeedB);
  const auto num_a = numeric_gradient(Tensor::SeedA, shadow_states());
  const auto num_b = numeric_gradient(Tensor::SeedB, shadow_states());
  const auto& part = layer_->partition();
  double largest = 0;
  for (std::size_t i = 0; i < da.size(); ++i) {
    if (i < static_cast<std::size_t>(kRank * kIn)) {
      expect_close(da[i], num_a[i], "dA[" + std::to_string(i) + "]");
      largest = std::max(largest, std::abs(num_a[i]));
    } else {
      EXPECT_EQ(da[i], 0.0f) << "frozen or dormant seeds get no gradient: dA[" << i << "]";
    }
  }
  for (std::size_t i = 0; i < db.size(); ++i) {
    if (i < static_cast<std::size_t>(part.end(0) * kRank)) {
      expect_close(db[i], num_b[i], "dB[" + std::to_string(i) + "]");
    } else {
      EXPECT_EQ(db[i], 0.0f) << "dB[" << i << "]";
    }
  }
  EXPECT_GT(largest, 1e-3) << "the check must not pass on zeros";
}

TEST_P(SeedLayerGradient, InputGradientMatchesFiniteDifferences) {
  std::vector<float> gx;
  analytic(&gx);
  for (std::size_t i = 0; i < x_.size(); ++i) {
    auto x = x_;
    x[i] = x_[i] + kStep;
    const float up = x[i];
    const double l_up = loss(states_, x);
    x[i] = x_[i] - kStep;
    const float down = x[i];
    const double l_down = loss(states_, x);
    expect_close(gx[i], (l_up - l_down) / (static_cast<double>(up) - down), "dx[" + std::to_string(i) + "]");
  }
}

TEST_P(SeedLayerGradient, BaseGradientsMatchFiniteDifferencesOrStayZeroWhenFrozen) {
  std::vector<float> gx;
  const auto w_before = read(*layer_, Tensor::BaseWeight);
  analytic(&gx);
  const auto dw = read_gradient(*layer_, Tensor::BaseWeight), dbias = read_gradient(*layer_, Tensor::BaseBias);
  if (!GetParam().train_base) {
    for (float v : dw) EXPECT_EQ(v, 0.0f);
    for (float v : dbias) EXPECT_EQ(v, 0.0f);
    layer_->step();
    EXPECT_EQ(read(*layer_, Tensor::BaseWeight), w_before);
    return;
  }
  const auto num_w = numeric_gradient(Tensor::BaseWeight, states_);
  const auto num_bias = numeric_gradient(Tensor::BaseBias, states_);
  for (std::size_t i = 0; i < dw.size(); ++i) expect_close(dw[i], num_w[i], "dW[" + std::to_string(i) + "]");
  for (std::size_t i = 0; i < dbias.size(); ++i) expect_close(dbias[i], num_bias[i], "db[" + std::to_string(i) + "]");
}

std::vector<GradientCase> all_cases() {
  std::vector<GradientCase> cases;
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    for (auto [state, alpha] : {std::pair{SeedState::TRAINING, 0.0f}, std::pair{SeedState::GRAFTING, 0.6f},
                                std::pair{SeedState::FINE_TUNING, 0.0f}}) {
      for (bool train_base : {false, true}) cases.push_back({blueprint, state, alpha, train_base});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EveryTrainingState, SeedLayerGradient, ::testing::ValuesIn(all_cases()), case_name);

}  // namespace
}  // namespace esper::kernels
