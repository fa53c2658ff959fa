// Helpers shared by the C++ benchmark tools (topk_phases, decode_phases, read_floor): stop on a
// CUDA error (tools, not library code, so they may exit), percentiles of timings, and device
// copies of host vectors.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK_CUDA(call)                                                                         \
  do {                                                                                           \
    const cudaError_t error = (call);                                                            \
    if (error != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(error));        \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

// The p-quantile (0 <= p <= 1) of `values`; 0 when there are none.
inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<std::size_t>(p * static_cast<double>(values.size())))];
}

// A device copy of `host` (cudaMalloc'd; tools free it, or leave it to process exit).
template <typename U>
U* device_copy(const std::vector<U>& host) {
  U* device = nullptr;
  CHECK_CUDA(cudaMalloc(&device, host.size() * sizeof(U)));
  CHECK_CUDA(cudaMemcpy(device, host.data(), host.size() * sizeof(U), cudaMemcpyHostToDevice));
  return device;
}
