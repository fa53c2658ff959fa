// Shared by the top-k GPU tests: device buffers, score patterns (random and adversarial) and
// fresh random seeds.
#pragma once

#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "hylra/core/dtype.hpp"

namespace topk_test {

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit DeviceBuffer(std::size_t n) : count(n) { REQUIRE(cudaMalloc(&ptr, sizeof(T) * (n ? n : 1)) == cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    REQUIRE(cudaMemcpy(ptr, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(count);
    REQUIRE(cudaMemcpy(host.data(), ptr, sizeof(T) * count, cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }
  void poison() { REQUIRE(cudaMemset(ptr, 0x7F, sizeof(T) * (count ? count : 1)) == cudaSuccess); }
};

inline std::uint64_t fresh_seed() { return (static_cast<std::uint64_t>(std::random_device{}()) << 32) | std::random_device{}(); }

enum class Pattern {
  kNormal,        // random normal
  kAllEqual,      // one value everywhere
  kFewValues,     // 3 distinct values: many ties at the k-th score
  kSpecials,      // +-inf, NaN, +-0 mixed into random values
  kAscending,     // sorted
  kDescending,    // reverse-sorted
  kLastBit,       // values a few units in the last place apart
};
constexpr Pattern kAllPatterns[] = {Pattern::kNormal,    Pattern::kAllEqual,   Pattern::kFewValues, Pattern::kSpecials,
                                    Pattern::kAscending, Pattern::kDescending, Pattern::kLastBit};

inline const char* name(Pattern p) {
  const char* names[] = {"normal", "all-equal", "few-values", "specials", "ascending", "descending", "last-bit"};
  return names[static_cast<int>(p)];
}

// n scores of type T following `pattern`.
template <typename T>
std::vector<T> make_scores(std::size_t n, Pattern pattern, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<T> out(n);
  const T one = hylra::from_float<T>(1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    float x = normal(rng);
    switch (pattern) {
      case Pattern::kNormal: break;
      case Pattern::kAllEqual: x = 0.5f; break;
      case Pattern::kFewValues: x = static_cast<float>(rng() % 3); break;
      case Pattern::kSpecials: {
        const float specials[] = {inf, -inf, nan, 0.0f, -0.0f};
        if (rng() % 4 == 0) x = specials[rng() % 5];
        break;
      }
      case Pattern::kAscending: x = static_cast<float>(i) / static_cast<float>(n); break;
      case Pattern::kDescending: x = -static_cast<float>(i) / static_cast<float>(n); break;
      case Pattern::kLastBit: break;
    }
    out[i] = hylra::from_float<T>(x);
    if (pattern == Pattern::kLastBit) {  // 1.0 plus 0..7 units in the last place of T
      std::uint32_t bits = 0;
      static_assert(sizeof(T) <= sizeof(bits), "");
      std::memcpy(&bits, &one, sizeof(T));
      bits += static_cast<std::uint32_t>(rng() % 8);
      std::memcpy(static_cast<void*>(&out[i]), &bits, sizeof(T));
    }
  }
  return out;
}

}  // namespace topk_test
