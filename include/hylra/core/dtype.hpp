// Element types hylra computes on: half, __nv_bfloat16 (storage) and float (storage and math).
// DTypeTraits<T> gives the runtime tag, the name, float conversions usable on host and device,
// and how many elements fill one 16-byte vector access.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

enum class DType : int { kFloat16, kBFloat16, kFloat32 };

constexpr const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
    case DType::kFloat32: return "fp32";
  }
  return "unknown dtype";
}

constexpr bool is_valid(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kBFloat16 || dtype == DType::kFloat32;
}

HYLRA_HOST_DEVICE constexpr std::size_t size_of(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

template <typename T>
struct DTypeTraits;

template <>
struct DTypeTraits<half> {
  static constexpr DType kDType = DType::kFloat16;
  HYLRA_HOST_DEVICE static float to_float(half x) { return __half2float(x); }
  HYLRA_HOST_DEVICE static half from_float(float x) { return __float2half_rn(x); }
};

template <>
struct DTypeTraits<__nv_bfloat16> {
  static constexpr DType kDType = DType::kBFloat16;
  HYLRA_HOST_DEVICE static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  HYLRA_HOST_DEVICE static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};

template <>
struct DTypeTraits<float> {
  static constexpr DType kDType = DType::kFloat32;
  HYLRA_HOST_DEVICE static float to_float(float x) { return x; }
  HYLRA_HOST_DEVICE static float from_float(float x) { return x; }
};

// Elements of T in one 16-byte access (the widest single load a thread issues).
template <typename T>
constexpr int kVecElems = static_cast<int>(16 / sizeof(T));

template <typename T>
HYLRA_HOST_DEVICE float to_float(T x) {
  return DTypeTraits<T>::to_float(x);
}

template <typename T>
HYLRA_HOST_DEVICE T from_float(float x) {
  return DTypeTraits<T>::from_float(x);
}

HYLRA_NAMESPACE_END
