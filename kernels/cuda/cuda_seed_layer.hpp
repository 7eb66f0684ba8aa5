// The CUDA backend of the seed layer (kernels/seed_layer.hpp), plus what tests and benchmarks need
// to drive it: device arrays and the timing of the fused forward epilogue. This header needs no CUDA
// headers; make_seed_layer(Backend::Cuda, ...) is the usual way in.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "kernels/seed_layer.hpp"

namespace esper::kernels::cuda {

CudaStatus probe_device();  // uncached: use kernels::cuda_status()
// Precondition: valid config, device present. Memory::Host stages forward's and backward's spans.
std::unique_ptr<SeedLayer> make_cuda_seed_layer(const SeedLayerConfig& config, Memory memory = Memory::Native);
// cudaSetDevice(device) after checking its compute capability; precondition: 0 <= device < count.
Expected<std::string, LayerError> select_device(int device);

// A float array in device memory (RAII, move-only).
class DeviceFloats {
 public:
  DeviceFloats() = default;
  explicit DeviceFloats(std::size_t count);
  explicit DeviceFloats(std::span<const float> host) : DeviceFloats(host.size()) { upload(host); }
  DeviceFloats(DeviceFloats&& other) noexcept;
  DeviceFloats& operator=(DeviceFloats&& other) noexcept;
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  ~DeviceFloats();

  void upload(std::span<const float> host);
  std::vector<float> download() const;
  std::span<float> span() { return {data_, size_}; }
  std::span<const float> span() const { return {data_, size_}; }
  std::size_t size() const { return size_; }

 private:
  float* data_ = nullptr;
  std::size_t size_ = 0;
};

// Re-runs only the blend + telemetry epilogue of `layer`'s last forward (the products stay in place,
// so this is idempotent) and reports milliseconds per run (CUDA events) and the bytes it must move:
// y and o, plus z when a seed is evaluated and the target when there was one.
struct EpilogueTiming {
  double milliseconds = 0;
  double bytes = 0;
};
EpilogueTiming time_forward_epilogue(SeedLayer& layer, int iterations);
// Device-to-device copy bandwidth in bytes/s (read + write bytes per second) for a buffer of `bytes`.
double copy_bandwidth(std::size_t bytes, int iterations);
void synchronize();

}  // namespace esper::kernels::cuda
