// Checked CUDA and cuBLAS calls, and move-only RAII owners of device memory and cuBLAS handles.
// A failed call throws esper::Error naming the call, the error and host:file:line of the caller.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "core/error.hpp"

#define ESPER_CUDA_CHECK(call)                                                                              \
  do {                                                                                                      \
    const cudaError_t esper_cuda_status_ = (call);                                                          \
    if (esper_cuda_status_ != cudaSuccess) {                                                                \
      throw ::esper::Error(std::string(#call) + " failed: " + cudaGetErrorName(esper_cuda_status_) + ": " + \
                           cudaGetErrorString(esper_cuda_status_));                                         \
    }                                                                                                       \
  } while (false)

#define ESPER_CUBLAS_CHECK(call)                                                                    \
  do {                                                                                              \
    const cublasStatus_t esper_cublas_status_ = (call);                                             \
    if (esper_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                            \
      throw ::esper::Error(std::string(#call) + " failed: " + cublasGetStatusString(esper_cublas_status_)); \
    }                                                                                               \
  } while (false)

namespace esper::kernels::cuda {

template <class T>
class DeviceBuffer {
 public:
  using value_type = T;
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count > 0) {
      void* p = nullptr;
      ESPER_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
      data_ = static_cast<T*>(p);
    }
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  bool empty() const { return count_ == 0; }
  // Grows (never shrinks) to at least `count`; the contents are not kept.
  void reserve(std::size_t count) {
    if (count > count_) *this = DeviceBuffer(count);
  }
  void zero() const {
    if (count_ > 0) ESPER_CUDA_CHECK(cudaMemset(data_, 0, bytes()));
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) cudaFree(data_);  // a destructor does not throw; a failure here is not actionable
    data_ = nullptr;
    count_ = 0;
  }
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

class CublasHandle {
 public:
  CublasHandle() { ESPER_CUBLAS_CHECK(cublasCreate(&handle_)); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  ~CublasHandle() {
    if (handle_ != nullptr) cublasDestroy(handle_);
  }
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace esper::kernels::cuda
