// RadixKey<T>: the order-preserving map from a score to unsigned bits that every top-k kernel
// selects on. Larger key = selected first; key 0 means "never selected" (NaN, padding); the
// all-ones key is reserved for positions the caller forces into the selection.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

// Bit layout of each score type: the unsigned type of the same width and |+inf|'s bits (any
// magnitude above them is NaN).
template <typename T>
struct RadixKeyLayout;

template <>
struct RadixKeyLayout<float> {
  using Bits = std::uint32_t;
  static constexpr Bits kInfBits = 0x7F800000u;
  HYLRA_DEVICE static Bits bits(float x) { return __float_as_uint(x); }
};

template <>
struct RadixKeyLayout<half> {
  using Bits = std::uint16_t;
  static constexpr Bits kInfBits = 0x7C00u;
  HYLRA_DEVICE static Bits bits(half x) { return __half_as_ushort(x); }
};

template <>
struct RadixKeyLayout<__nv_bfloat16> {
  using Bits = std::uint16_t;
  static constexpr Bits kInfBits = 0x7F80u;
  HYLRA_DEVICE static Bits bits(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
};

template <typename T>
struct RadixKey {
  using Layout = RadixKeyLayout<T>;
  using Bits = typename Layout::Bits;
  static constexpr int kBits = 8 * static_cast<int>(sizeof(Bits));
  static constexpr Bits kSignBit = static_cast<Bits>(Bits(1) << (kBits - 1));
  static constexpr Bits kInvalid = 0;
  static constexpr Bits kForced = static_cast<Bits>(~Bits(0));

  // Key for "largest first": monotone in the score, -0 and +0 equal, NaN -> kInvalid. Valid keys
  // lie strictly between kInvalid and kForced.
  HYLRA_DEVICE static Bits largest(T x) {
    Bits b = Layout::bits(x);
    const Bits magnitude = static_cast<Bits>(b & ~kSignBit);
    if (magnitude > Layout::kInfBits) return kInvalid;
    if (magnitude == 0) b = 0;
    return static_cast<Bits>(b ^ ((b & kSignBit) ? static_cast<Bits>(~Bits(0)) : kSignBit));
  }

  // Key for "smallest first": the complement of largest() on valid scores, NaN still kInvalid.
  HYLRA_DEVICE static Bits smallest(T x) {
    const Bits key = largest(x);
    return key == kInvalid ? kInvalid : static_cast<Bits>(~key);
  }

  HYLRA_DEVICE static Bits make(T x, bool select_largest) { return select_largest ? largest(x) : smallest(x); }
};

HYLRA_NAMESPACE_END
