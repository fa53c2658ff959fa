// Host metrics that profiling and tests share.
#pragma once

#include <cstdint>
#include <limits>
#include <unordered_set>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN
namespace reference {

// |A ∩ B| / k for two top-k index lists of length k; -1 entries are padding and never match,
// duplicates within a list count once. The inter-layer similarity of HyLRA (overlap ratio).
inline double topk_overlap(const std::int32_t* a, const std::int32_t* b, int k) {
  if (k <= 0) return 0.0;
  std::unordered_set<std::int32_t> in_a;
  for (int i = 0; i < k; ++i)
    if (a[i] >= 0) in_a.insert(a[i]);
  std::unordered_set<std::int32_t> common;
  for (int i = 0; i < k; ++i)
    if (b[i] >= 0 && in_a.count(b[i])) common.insert(b[i]);
  return static_cast<double>(common.size()) / k;
}

// Relative output error RNMSE = ||a - b||^2 / ||b||^2 over n elements, b the reference. Gives 0
// when both are zero and +inf when only b is; NaN in either propagates (a NaN never passes).
template <typename A, typename B>
double rnmse(const A* a, const B* b, std::int64_t n) {
  double err = 0.0, ref = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    err += d * d;
    ref += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  if (ref == 0.0) return err == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return err / ref;
}

}  // namespace reference
HYLRA_NAMESPACE_END
