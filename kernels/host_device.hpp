// ESPER_HOST_DEVICE marks the few functions that the CPU reference and the CUDA kernels share.
#pragma once

#if defined(__CUDACC__)
#define ESPER_HOST_DEVICE __host__ __device__
#else
#define ESPER_HOST_DEVICE
#endif
