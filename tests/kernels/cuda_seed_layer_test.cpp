// The CUDA backend against the CPU reference on the same layer: outputs and gradients to a normwise
// fp32 error of 1e-5 (max |cuda − cpu| / max(max |cpu|, 1)), telemetry counts and states exactly,
// the digest bit for bit where the content is equal. Skips where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "kernels/cuda/cuda_seed_layer.hpp"
#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using cuda::DeviceFloats;
using namespace testing;  // the shared helpers of test_support.hpp

constexpr double kTolerance = 1e-5;

SeedLayerConfig gpu_config(Blueprint blueprint, bool train_base, OptimizerKind optimizer = OptimizerKind::Adam) {
  return cuda_compare_config({.in_features = 96, .out_features = 200, .chunks = 13, .rank = 4}, 4242, blueprint,
                             train_base, optimizer);
}

// Both layers with the same nonzero B and every state represented, set in one set_seeds call.
LayerPair make_pair(const SeedLayerConfig& c) { return cuda_pair(c, Memory::Native, 3, 0.3f, SetSeeds::Together); }

TEST(CudaSeedLayer, FreshLayerHasTheCpuDigest) {
  REQUIRE_CUDA_DEVICE();
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto p = make_pair(gpu_config(blueprint, true));
    EXPECT_EQ(p.gpu->digest(), p.cpu->digest());
    p.cpu->reset_seed(5);
    p.gpu->reset_seed(5);
    EXPECT_EQ(p.gpu->digest(), p.cpu->digest());
    EXPECT_EQ(read(*p.gpu, Tensor::SeedA), read(*p.cpu, Tensor::SeedA));
  }
}

TEST(CudaSeedLayer, ForwardAndTelemetryMatchTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    for (int batch : {1, 64, 300}) {
      SCOPED_TRACE(batch);
      const auto c = gpu_config(blueprint, false);
      auto p = make_pair(c);
      const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 10);
      const auto target = random_vector(static_cast<std::size_t>(batch * c.out_features), 11);
      std::vector<float> out_cpu(target.size());
      p.cpu->forward(x, out_cpu, {.target = target});
      DeviceFloats dx(x), dtarget(target), dout(target.size());
      p.gpu->forward(dx.span(), dout.span(), {.target = dtarget.span()});
      EXPECT_LE(normwise_error(dout.download(), out_cpu), kTolerance);
      expect_telemetry_near(p.gpu->telemetry(), p.cpu->telemetry(), kTolerance);
    }
  }
}

TEST(CudaSeedLayer, TrainingSeedLeavesOutputBitIdentical) {
  REQUIRE_CUDA_DEVICE();
  const auto c = gpu_config(Blueprint::BottleneckMlp, false);
  auto gpu = std::move(make_seed_layer(Backend::Cuda, c)).value();
  gpu->write(Tensor::SeedB, random_vector(tensor_size(c, Tensor::SeedB), 3, 0.5f));
  const auto x = random_vector(static_cast<std::size_t>(32 * c.in_features), 12);
  DeviceFloats dx(x), base(32 * 200), trained(32 * 200), grad(random_vector(32 * 200, 13));
  gpu->forward(dx.span(), base.span());
  gpu->set_seeds(std::vector<SeedState>(13, SeedState::TRAINING), std::vector<float>(13, 0.7f));
  const auto b_before = read(*gpu, Tensor::SeedB);
  gpu->forward(dx.span(), trained.span());
  gpu->backward(grad.span(), {});
  gpu->step();
  EXPECT_NE(read(*gpu, Tensor::SeedB), b_before);
  gpu->forward(dx.span(), trained.span());
  const auto a = base.download(), b = trained.download();
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// `steps` steps of forward and backward on both layers (batch `batch`, input from seed `x_seed`,
// upstream gradients from `g_seed` + step): outputs and input gradients within kTolerance of the
// CPU reference; `each_step(step)` checks the rest after the backward.
template <class Pair, class F>
void train_like_cpu(Pair& p, const SeedLayerConfig& c, int batch, unsigned x_seed, unsigned g_seed, int steps,
                    F&& each_step) {
  const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), x_seed);
  DeviceFloats dx(x), dout(static_cast<std::size_t>(batch * c.out_features)), dgx(x.size());
  std::vector<float> out(dout.size()), gx(x.size());
  for (int step = 0; step < steps; ++step) {
    const auto g = random_vector(out.size(), g_seed + static_cast<unsigned>(step));
    DeviceFloats dg(g);
    p.cpu->forward(x, out);
    p.gpu->forward(dx.span(), dout.span());
    EXPECT_LE(normwise_error(dout.download(), out), kTolerance) << "step " << step;
    p.cpu->backward(g, gx);
    p.gpu->backward(dg.span(), dgx.span());
    EXPECT_LE(normwise_error(dgx.download(), gx), kTolerance) << "dx, step " << step;
    each_step(step);
  }
}

TEST(CudaSeedLayer, GradientsAndOptimizerStepsMatchTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for_each_training_case(gpu_config, [](const SeedLayerConfig& c) {
    auto p = make_pair(c);
    train_like_cpu(p, c, 300, 20, 30, 3, [&](int step) { expect_gradients_and_step_near(p, kTolerance, step); });
    EXPECT_EQ(p.gpu->states(), p.cpu->states());
  });
}

TEST(CudaSeedLayer, SeedSettingsMaskAndDigestLikeTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    auto p = make_pair(gpu_config(blueprint, true));
    expect_settings_like_cpu(p);
  }
}

// Seeds of every rank and three learning rates train like the CPU reference's; their tails stay 0.
TEST(CudaSeedLayer, SeedSettingsTrainLikeTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for_each_training_case(gpu_config, [](const SeedLayerConfig& c) {
    auto p = make_pair(c);
    set_mixed_settings(p);
    train_like_cpu(p, c, 130, 21, 40, 4, [&](int step) {
      expect_tails_zero(*p.gpu, "step " + std::to_string(step));
      expect_gradients_and_step_near(p, kTolerance, step);
      expect_tails_zero(*p.gpu, "after step " + std::to_string(step));
    });
    p.cpu->reset_seed(2);
    p.gpu->reset_seed(2);
    EXPECT_EQ(p.gpu->seed_settings(2), p.gpu->default_seed_settings());
  });
}

TEST(CudaSeedLayer, CheckedCallsThrowWithContext) {
  REQUIRE_CUDA_DEVICE();
  auto gpu = std::move(make_seed_layer(Backend::Cuda, gpu_config(Blueprint::LowRank, false))).value();
  std::vector<float> wrong(3);
  EXPECT_THROW(gpu->write(Tensor::BaseBias, wrong), Error);
  EXPECT_THROW(gpu->set_seed_settings(0, {5, 1e-3f}), Error);
  EXPECT_THROW(gpu->set_seed_settings(0, {2, -1e-3f}), Error);
  EXPECT_EQ(gpu->seed_settings(0), gpu->default_seed_settings());
}

}  // namespace
}  // namespace esper::kernels
