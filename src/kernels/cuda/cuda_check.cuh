// Error checking for CUDA runtime calls and launches inside the .cu files.
#pragma once

#include <cuda_runtime.h>

#include "base/error.h"

#define M2_CUDA(call)                                                                           \
  do {                                                                                          \
    const cudaError_t m2_err_ = (call);                                                         \
    if (m2_err_ != cudaSuccess)                                                                 \
      ::m2fp4::fail("CUDA error in ", #call, ": ", cudaGetErrorString(m2_err_), " (", __FILE__, \
                    ":", __LINE__, ")");                                                        \
  } while (0)

// After a <<<...>>> launch: configuration errors surface here, not at the next sync.
#define M2_CUDA_LAUNCHED(what) M2_CUDA(cudaGetLastError())

namespace m2fp4::cuda {
inline cudaStream_t to_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}
inline dim3 grid3(int64_t x, int64_t y, int64_t z) {
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
}
}  // namespace m2fp4::cuda
