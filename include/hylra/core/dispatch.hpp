// Runtime -> compile-time dispatch over the closed set of configurations hylra instantiates.
// Each helper calls `f` with a std::integral_constant (or TypeTag) for the matching value and
// returns what `f` returns (a Status); a value outside the set gives kNotSupported naming it.
// Engines that know their model skip this and instantiate one configuration directly.
#pragma once

#include <type_traits>

#include "hylra/core/dtype.hpp"
#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN

template <int... Values>
struct IntSet {
  static constexpr bool contains(int value) { return ((value == Values) || ...); }
};

using SupportedHeadDims = IntSet<64, 128, 256>;
// Page sizes of a paged KV cache, and block sizes of block-granular index lists (1 = tokens).
using SupportedPageSizes = IntSet<1, 16, 32, 64, 128>;

template <typename T>
struct TypeTag {
  using type = T;
};

template <int... Values, typename F>
Status dispatch_int(IntSet<Values...>, int value, const char* what, F&& f) {
  Status status(StatusCode::kNotSupported, what);
  (void)((value == Values ? (status = f(std::integral_constant<int, Values>{}), true) : false) || ...);
  return status;
}

template <typename F>
Status dispatch_head_dim(int head_dim, F&& f) {
  return dispatch_int(SupportedHeadDims{}, head_dim, "head_dim (supported: 64, 128, 256)", f);
}

template <typename F>
Status dispatch_page_size(int page_size, F&& f) {
  return dispatch_int(SupportedPageSizes{}, page_size, "page_size (supported: 1, 16, 32, 64, 128)", f);
}

// Storage types of Q, K, V and O in the attention kernels.
template <typename F>
Status dispatch_half_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat16: return f(TypeTag<half>{});
    case DType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
    default: return Status(StatusCode::kNotSupported, "dtype (supported: fp16, bf16)");
  }
}

// Score types of top-k.
template <typename F>
Status dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat16: return f(TypeTag<half>{});
    case DType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
    case DType::kFloat32: return f(TypeTag<float>{});
  }
  return Status(StatusCode::kNotSupported, "dtype");
}

HYLRA_NAMESPACE_END
