// Asking for the CUDA backend where it cannot run (a build without CUDA, or no usable device) is an
// error value that says so, for layers in either memory mode and for device selection; Memory::Host
// on the CPU backend is the CPU layer itself. Runs everywhere; the no-device cases skip on a machine
// with a usable device (kernels_cuda_test covers that side).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/kernels/test_support.hpp"

namespace esper::kernels {
namespace {

using testing::random_vector;
using testing::small_config;

#define REQUIRE_NO_CUDA_DEVICE() \
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is usable here: " << cuda_status().reason

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

TEST(BackendSelection, CudaLayerWithoutADeviceFailsSayingWhy) {
  REQUIRE_NO_CUDA_DEVICE();
  EXPECT_FALSE(cuda_status().reason.empty());
  for (auto memory : {Memory::Native, Memory::Host}) {
    const auto made = make_seed_layer(Backend::Cuda, small_config(Blueprint::LowRank), memory);
    ASSERT_FALSE(made.has_value());
    const std::string text = made.error().message();
    EXPECT_TRUE(starts_with(text, "CUDA backend unavailable: ")) << text;
    EXPECT_NE(text.find(cuda_status().reason), std::string::npos) << text;
  }
}

TEST(BackendSelection, SelectingADeviceWithoutOneFailsSayingWhy) {
  REQUIRE_NO_CUDA_DEVICE();
  for (int local_rank : {0, 3}) {
    const auto device = select_device(local_rank);
    ASSERT_FALSE(device.has_value());
    EXPECT_TRUE(starts_with(device.error().message(), "CUDA backend unavailable: ")) << device.error().message();
  }
}

TEST(BackendSelection, AnInvalidConfigIsReportedBeforeTheMissingDevice) {
  auto config = small_config(Blueprint::LowRank);
  config.rank = 0;
  const auto made = make_seed_layer(Backend::Cuda, config, Memory::Host);
  ASSERT_FALSE(made.has_value());
  EXPECT_TRUE(starts_with(made.error().message(), "invalid seed layer config: ")) << made.error().message();
}

TEST(BackendSelection, HostMemoryOnTheCpuBackendIsTheCpuLayer) {
  const auto config = small_config(Blueprint::BottleneckMlp, true);
  auto native = std::move(make_seed_layer(Backend::Cpu, config, Memory::Native)).value();
  auto host = std::move(make_seed_layer(Backend::Cpu, config, Memory::Host)).value();
  EXPECT_EQ(host->backend(), Backend::Cpu);
  const auto b = random_vector(tensor_size(config, Tensor::SeedB), 1, 0.5f);
  native->write(Tensor::SeedB, b);
  host->write(Tensor::SeedB, b);
  native->set_seed(1, SeedState::GRAFTING, 0.5f);
  host->set_seed(1, SeedState::GRAFTING, 0.5f);
  const auto x = random_vector(static_cast<std::size_t>(5 * config.in_features), 2);
  std::vector<float> a(static_cast<std::size_t>(5 * config.out_features)), c(a.size());
  native->forward(x, a);
  host->forward(x, c);
  EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)), 0);
  EXPECT_EQ(native->digest(), host->digest());
}

}  // namespace
}  // namespace esper::kernels
