// Turning CUDA runtime results into hylra::Status. Never prints, never exits.
#pragma once

#include <cuda_runtime_api.h>

#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN

// Success for cudaSuccess; otherwise kCudaError naming the error (e.g. "cudaErrorInvalidValue").
inline Status cuda_status(cudaError_t error) {
  return error == cudaSuccess ? Status::success()
                              : Status(StatusCode::kCudaError, cudaGetErrorName(error));
}

// Call right after a <<<...>>> launch: reports a bad configuration or a pending error.
inline Status check_launch() { return cuda_status(cudaGetLastError()); }

// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KB this must be raised explicitly).
template <typename Kernel>
Status set_dynamic_smem(Kernel kernel, int bytes) {
  if (bytes <= 48 * 1024) return Status::success();
  return cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

HYLRA_NAMESPACE_END
