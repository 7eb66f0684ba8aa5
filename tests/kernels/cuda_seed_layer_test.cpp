// The CUDA backend against the CPU reference on the same layer: outputs and gradients to a normwise
// fp32 error of 1e-5 (max |cuda − cpu| / max(max |cpu|, 1)), telemetry counts and states exactly,
// the digest bit for bit where the content is equal. Skips where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cuda/cuda_seed_layer.hpp"
#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using cuda::DeviceFloats;
using testing::normwise_error;
using testing::random_vector;
using testing::read;
using testing::read_gradient;

constexpr double kTolerance = 1e-5;

#define REQUIRE_CUDA_DEVICE() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: " << cuda_status().reason

SeedLayerConfig gpu_config(Blueprint blueprint, bool train_base, OptimizerKind optimizer = OptimizerKind::Adam) {
  SeedLayerConfig c;
  c.in_features = 96;
  c.out_features = 200;
  c.chunks = 13;
  c.rank = 4;
  c.blueprint = blueprint;
  c.train_base = train_base;
  c.optimizer.kind = optimizer;
  c.optimizer.learning_rate = 1e-2f;
  c.optimizer.epsilon = 1e-3f;  // keeps Adam's first step lr·g/(|g|+eps) from amplifying rounding of tiny g
  c.init_seed = 4242;
  return c;
}

struct Pair {
  std::unique_ptr<SeedLayer> cpu, gpu;
};

Pair make_pair(const SeedLayerConfig& c) {
  auto cpu = make_seed_layer(Backend::Cpu, c);
  auto gpu = make_seed_layer(Backend::Cuda, c);
  EXPECT_TRUE(gpu) << (gpu ? "" : gpu.error().message());
  Pair p{std::move(cpu).value(), std::move(gpu).value()};
  const auto b = random_vector(tensor_size(c, Tensor::SeedB), 3, 0.5f);
  p.cpu->write(Tensor::SeedB, b);
  p.gpu->write(Tensor::SeedB, b);
  std::vector<SeedState> states;
  std::vector<float> alphas;
  for (int i = 0; i < c.chunks; ++i) {
    states.push_back(static_cast<SeedState>(i % kSeedStateCount));
    alphas.push_back(0.3f);
  }
  p.cpu->set_seeds(states, alphas);
  p.gpu->set_seeds(states, alphas);
  return p;
}

void expect_telemetry_equal(const std::vector<ChunkTelemetry>& gpu, const std::vector<ChunkTelemetry>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (std::size_t c = 0; c < cpu.size(); ++c) {
    SCOPED_TRACE(c);
    EXPECT_EQ(gpu[c].elements, cpu[c].elements);
    EXPECT_EQ(gpu[c].dead_units, cpu[c].dead_units);
    EXPECT_EQ(gpu[c].has_loss, cpu[c].has_loss);
    auto near = [](double a, double b, double scale) { EXPECT_LE(std::abs(a - b), kTolerance * std::max(scale, 1.0)); };
    near(gpu[c].sum, cpu[c].sum, std::sqrt(cpu[c].sum_squares));
    near(gpu[c].sum_squares, cpu[c].sum_squares, cpu[c].sum_squares);
    near(gpu[c].loss, cpu[c].loss, cpu[c].loss);
    near(gpu[c].loss_without_seed, cpu[c].loss_without_seed, cpu[c].loss_without_seed);
    near(gpu[c].shadow_loss, cpu[c].shadow_loss, cpu[c].shadow_loss);
  }
}

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
      expect_telemetry_equal(p.gpu->telemetry(), p.cpu->telemetry());
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

TEST(CudaSeedLayer, GradientsAndOptimizerStepsMatchTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  for (auto optimizer : {OptimizerKind::Sgd, OptimizerKind::Adam}) {
    for (auto blueprint : {Blueprint::LowRank, Blueprint::BottleneckMlp}) {
      for (bool train_base : {false, true}) {
        SCOPED_TRACE(std::string(blueprint == Blueprint::LowRank ? "LowRank" : "Mlp") +
                     (optimizer == OptimizerKind::Adam ? " Adam" : " SGD") + (train_base ? " base trained" : ""));
        const auto c = gpu_config(blueprint, train_base, optimizer);
        auto p = make_pair(c);
        const int batch = 300;
        const auto x = random_vector(static_cast<std::size_t>(batch * c.in_features), 20);
        DeviceFloats dx(x), dout(static_cast<std::size_t>(batch * c.out_features)), dgx(x.size());
        std::vector<float> out(dout.size()), gx(x.size());
        for (int step = 0; step < 3; ++step) {
          const auto g = random_vector(out.size(), 30u + static_cast<unsigned>(step));
          DeviceFloats dg(g);
          p.cpu->forward(x, out);
          p.gpu->forward(dx.span(), dout.span());
          EXPECT_LE(normwise_error(dout.download(), out), kTolerance) << "step " << step;
          p.cpu->backward(g, gx);
          p.gpu->backward(dg.span(), dgx.span());
          EXPECT_LE(normwise_error(dgx.download(), gx), kTolerance) << "dx, step " << step;
          for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) {
            EXPECT_LE(normwise_error(read_gradient(*p.gpu, t), read_gradient(*p.cpu, t)), kTolerance)
                << "gradient of tensor " << static_cast<int>(t) << ", step " << step;
          }
          p.cpu->step();
          p.gpu->step();
          for (auto t : {Tensor::SeedA, Tensor::SeedB, Tensor::BaseWeight, Tensor::BaseBias}) {
            EXPECT_LE(normwise_error(read(*p.gpu, t), read(*p.cpu, t)), kTolerance)
                << "tensor " << static_cast<int>(t) << " after step " << step;
          }
        }
        EXPECT_EQ(p.gpu->states(), p.cpu->states());
      }
    }
  }
}

TEST(CudaSeedLayer, CheckedCallsThrowWithContext) {
  REQUIRE_CUDA_DEVICE();
  auto gpu = std::move(make_seed_layer(Backend::Cuda, gpu_config(Blueprint::LowRank, false))).value();
  std::vector<float> wrong(3);
  EXPECT_THROW(gpu->write(Tensor::BaseBias, wrong), Error);
}

}  // namespace
}  // namespace esper::kernels
