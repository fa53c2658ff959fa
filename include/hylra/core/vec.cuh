// 16-byte vector accesses: the unit of every bandwidth-bound load and store in hylra.
#pragma once

#include "hylra/core/dtype.hpp"

HYLRA_NAMESPACE_BEGIN

// N elements of T moved as one access of sizeof(T) * N bytes (16 by default). The pointer must be
// aligned to that size; views validate it on the host.
template <typename T, int N = kVecElems<T>>
struct alignas(sizeof(T) * N) Vec {
  T data[N];

  HYLRA_DEVICE static Vec load(const T* ptr) { return *reinterpret_cast<const Vec*>(ptr); }
  HYLRA_DEVICE void store(T* ptr) const { *reinterpret_cast<Vec*>(ptr) = *this; }

  HYLRA_DEVICE float to_float(int i) const { return DTypeTraits<T>::to_float(data[i]); }
};

HYLRA_NAMESPACE_END
