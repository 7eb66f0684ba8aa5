// A driver asked for the CUDA backend where it cannot run refuses at construction, saying why,
// rather than training on the CPU behind the caller's back. Skips where a CUDA device is usable
// (morphogenesis_cuda_test covers that side).
#include <gtest/gtest.h>

#include <string>

#include "morphogenesis/morphogenesis.hpp"

namespace esper::morphogenesis {
namespace {

TEST(MorphogenesisBackend, CudaWithoutADeviceIsRefusedSayingWhy) {
  if (kernels::cuda_available()) GTEST_SKIP() << "a CUDA device is usable here: " << kernels::cuda_status().reason;
  Config config;
  config.backend = kernels::Backend::Cuda;
  try {
    Driver driver(config);
    ADD_FAILURE() << "a CUDA driver was built without a usable device";
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("CUDA backend unavailable: " + kernels::cuda_status().reason), std::string::npos) << text;
  }
}

TEST(MorphogenesisBackend, CpuIsTheDefault) { EXPECT_EQ(Config{}.backend, kernels::Backend::Cpu); }

}  // namespace
}  // namespace esper::morphogenesis
