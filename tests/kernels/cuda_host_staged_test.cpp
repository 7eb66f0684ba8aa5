// The host-staged CUDA layer (Memory::Host) against the CPU reference, fed the same host buffers:
// outputs, dL/dx, telemetry, gradients and parameters after optimizer steps to the tolerance of
// cuda_seed_layer_test.cpp (normwise 1e-5), digests and states exactly; its gradient_buffer() is
// device memory holding what read_gradient() reports. Skips where no CUDA device is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_seed_layer.hpp"
#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using namespace testing;  // the shared helpers of test_support.hpp

constexpr double kTolerance = 1e-5;

SeedLayerConfig staged_config(Blueprint blueprint, bool train_base, OptimizerKind optimizer) {
  return cuda_compare_config({.in_features = 48, .out_features = 70, .chunks = 9, .rank = 3}, 99, blueprint, train_base,
                             optimizer);
}

// Both layers with the same nonzero B and every state represented (set through the staged layer's
// own set_seed, one chunk at a time, the way a caller that does not batch them would).
LayerPair staged_pair(const SeedLayerConfig& c) { return cuda_pair(c, Memory::Host, 5, 0.4f, SetSeeds::OneAtATime); }

TEST(CudaHostStagedLayer, IsACudaLayerWithTheCpuDigestAndStates) {
  REQUIRE_CUDA_DEVICE();
  auto p = staged_pair(staged_config(Blueprint::BottleneckMlp, true, OptimizerKind::Adam));
  EXPECT_EQ(p.gpu->backend(), Backend::Cuda);
  EXPECT_EQ(p.gpu->states(), p.cpu->states());
  EXPECT_EQ(p.gpu->alphas(), p.cpu->alphas());
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest());
  p.cpu->reset_seed(2);
  p.gpu->reset_seed(2);
  EXPECT_EQ(p.gpu->digest(), p.cpu->digest());
}

TEST(CudaHostStagedLayer, ForwardAndTelemetryFromHostBuffersMatchTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
    const auto c = staged_config(blueprint, false, OptimizerKind::Adam);
    auto p = staged_pair(c);
    // Growing and shrinking batches: the staging buffers are reused and regrown.
    for (int batch : {8, 300, 1, 64}) {
      SCOPED_TRACE(batch);
      const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 40u + static_cast<unsigned>(batch));
      const auto target = random_vector(static_cast<std::size_t>(batch * c.out_features), 41);
      std::vector<float> out_cpu(target.size()), out_gpu(target.size());
      p.cpu->forward(x, out_cpu, {.target = target});
      p.gpu->forward(x, out_gpu, {.target = target});
      EXPECT_LE(normwise_error(out_gpu, out_cpu), kTolerance);
      expect_telemetry_near(p.gpu->telemetry(), p.cpu->telemetry(), kTolerance);
      p.cpu->forward(x, out_cpu, {.telemetry = false});
      p.gpu->forward(x, out_gpu, {.telemetry = false});
      EXPECT_LE(normwise_error(out_gpu, out_cpu), kTolerance) << "without target or telemetry";
    }
  }
}

TEST(CudaHostStagedLayer, GradientsAndOptimizerStepsMatchTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for_each_training_case(staged_config, [](const SeedLayerConfig& c) {
    auto p = staged_pair(c);
    const int batch = 200;
    std::vector<float> out_cpu(static_cast<std::size_t>(batch * c.out_features)), out_gpu(out_cpu.size());
    std::vector<float> gx_cpu(static_cast<std::size_t>(batch * c.in_features)), gx_gpu(gx_cpu.size());
    for (int step = 0; step < 4; ++step) {
      // A fresh x each step, overwritten in place: the staged layer must differentiate its copy.
      auto x = random_vector(gx_cpu.size(), 50u + static_cast<unsigned>(step));
      const auto g = random_vector(out_cpu.size(), 60u + static_cast<unsigned>(step));
      p.cpu->forward(x, out_cpu);
      p.gpu->forward(x, out_gpu);
      EXPECT_LE(normwise_error(out_gpu, out_cpu), kTolerance) << "step " << step;
      const bool with_dx = step % 2 == 0;  // backward with and without dL/dx
      p.cpu->backward(g, with_dx ? std::span<float>(gx_cpu) : std::span<float>{});
      std::fill(x.begin(), x.end(), 0.0f);
      p.gpu->backward(g, with_dx ? std::span<float>(gx_gpu) : std::span<float>{});
      if (with_dx) {
        EXPECT_LE(normwise_error(gx_gpu, gx_cpu), kTolerance) << "dx, step " << step;
      }
      expect_gradients_and_step_near(p, kTolerance, step);
    }
    EXPECT_EQ(p.gpu->states(), p.cpu->states());
  });
}

TEST(CudaHostStagedLayer, SeedSettingsMaskAndDigestLikeTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  auto p = staged_pair(staged_config(Blueprint::BottleneckMlp, false, OptimizerKind::Adam));
  expect_settings_like_cpu(p);
}

// Settings train like the CPU reference's; what a collective leaves in the gradients' tails (here
// written into the device gradient buffer) is not applied by step.
TEST(CudaHostStagedLayer, SeedSettingsTrainLikeTheCpuReferenceAndStepIgnoresGradientTails) {
  REQUIRE_CUDA_DEVICE();
  for_each_training_case(staged_config, [](const SeedLayerConfig& c) {
    auto p = staged_pair(c);
    set_mixed_settings(p);
    const int batch = 90;
    std::vector<float> out_cpu(static_cast<std::size_t>(batch * c.out_features)), out_gpu(out_cpu.size());
    for (int step = 0; step < 4; ++step) {
      const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 80u + static_cast<unsigned>(step));
      const auto g = random_vector(out_cpu.size(), 90u + static_cast<unsigned>(step));
      p.cpu->forward(x, out_cpu);
      p.gpu->forward(x, out_gpu);
      EXPECT_LE(normwise_error(out_gpu, out_cpu), kTolerance) << "step " << step;
      p.cpu->backward(g, {});
      p.gpu->backward(g, {});
      expect_tails_zero(*p.gpu, "step " + std::to_string(step));
      expect_gradients_and_step_near(p, kTolerance, step);
    }
    const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 99);
    p.gpu->forward(x, out_gpu);
    p.gpu->backward(random_vector(out_gpu.size(), 98), {});
    for (auto t : {Tensor::SeedA, Tensor::SeedB}) {
      const auto buffer = p.gpu->gradient_buffer(t);
      const std::vector<float> junk(buffer.size(), 1.0f);
      ASSERT_EQ(cudaMemcpy(buffer.data(), junk.data(), buffer.size_bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    }
    p.gpu->step();
    for (auto t : {Tensor::SeedA, Tensor::SeedB}) expect_tail_zero(*p.gpu, t, read(*p.gpu, t), true, "after junk");
  });
}

TEST(CudaHostStagedLayer, GradientBufferIsDeviceMemoryHoldingTheGradient) {
  REQUIRE_CUDA_DEVICE();
  const auto c = staged_config(Blueprint::LowRank, false, OptimizerKind::Adam);
  auto p = staged_pair(c);
  const auto x = random_vector(static_cast<std::size_t>(16 * c.in_features), 70);
  std::vector<float> out(static_cast<std::size_t>(16 * c.out_features));
  p.gpu->forward(x, out);
  p.gpu->backward(random_vector(out.size(), 71), {});
  for (auto t : {Tensor::SeedA, Tensor::SeedB}) {
    const auto buffer = p.gpu->gradient_buffer(t);
    cudaPointerAttributes attributes{};
    ASSERT_EQ(cudaPointerGetAttributes(&attributes, buffer.data()), cudaSuccess);
    EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);
    std::vector<float> copied(buffer.size());
    ASSERT_EQ(cudaMemcpy(copied.data(), buffer.data(), buffer.size_bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(copied, read_gradient(*p.gpu, t));
  }
}

TEST(CudaHostStagedLayer, MisuseThrowsLikeTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  const auto c = staged_config(Blueprint::LowRank, false, OptimizerKind::Adam);
  auto gpu = std::move(make_seed_layer(Backend::Cuda, c, Memory::Host)).value();
  std::vector<float> grad(static_cast<std::size_t>(c.out_features));
  EXPECT_THROW(gpu->backward(grad, {}), Error) << "backward before any forward";
  std::vector<float> x(static_cast<std::size_t>(c.in_features)), wrong(3);
  EXPECT_THROW(gpu->forward(x, wrong), Error);
  std::vector<float> out(static_cast<std::size_t>(c.out_features));
  EXPECT_THROW(gpu->forward(x, out, {.target = wrong}), Error);
  gpu->forward(x, out);
  EXPECT_THROW(gpu->backward(wrong, {}), Error);
}

}  // namespace
}  // namespace esper::kernels
