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

// Call right after a <<<...>>> launch: reports a bad configuration, or an error still pending from
// earlier asynchronous work on the device (CUDA reports errors where it finds them).
inline Status check_launch() { return cuda_status(cudaGetLastError()); }

// Lets `kernel` launch with `bytes` of dynamic shared memory. A block may use more than 48 KB of
// shared memory in all (static + dynamic) only after its dynamic limit is raised explicitly.
template <typename Kernel>
Status set_dynamic_smem(Kernel kernel, int bytes) {
  cudaFuncAttributes attributes;
  HYLRA_RETURN_IF_ERROR(cuda_status(cudaFuncGetAttributes(&attributes, kernel)));
  if (attributes.sharedSizeBytes + bytes <= 48 * 1024) return Status::success();
  return cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

HYLRA_NAMESPACE_END
