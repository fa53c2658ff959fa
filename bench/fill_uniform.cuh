// Deterministic bf16 values in [-1, 1) for the C++ benchmark tools (decode_phases, read_floor): a
// hash of the element index and a seed, so that every run times the same data.
#pragma once

#include <cuda_bf16.h>

#include <cstddef>

__global__ void fill_uniform(__nv_bfloat16* data, std::size_t n, unsigned seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    data[i] = __float2bfloat16(static_cast<float>(h & 0xFFFF) / 32768.0f - 1.0f);
  }
}
