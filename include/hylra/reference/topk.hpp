// Host reference of top-k selection and block pooling: the executable spec the GPU kernels are
// tested against. Plain C++, O(N log N) per row, double precision throughout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "hylra/core/dtype.hpp"
#include "hylra/topk/pooling_op.hpp"

HYLRA_NAMESPACE_BEGIN
namespace reference {

// The score as a double, exactly (every half, bf16 and float is a double).
template <typename T>
double score_value(T x) {
  return static_cast<double>(DTypeTraits<T>::to_float(x));
}

// The k largest (or smallest) scores of scores[0, length), as k positions: the selection ordered
// best first (ties by ascending index, NaN last), then -1 padding. Rules: ties at the k-th score
// go to the lower index; NaN is never selected unless forced; -0 equals +0. Positions below
// forced_first or at/after length - forced_last are always taken first (lowest index first when
// there are more of them than k) and count inside k.
template <typename T>
std::vector<std::int32_t> topk_row(const T* scores, int length, int k, bool largest = true, int forced_first = 0,
                                   int forced_last = 0) {
  const auto value = [&](int i) { return score_value(scores[i]); };
  const auto better = [&](int a, int b) {  // strict order: best score first, NaN last, then index
    const double va = value(a), vb = value(b);
    if (std::isnan(va) != std::isnan(vb)) return std::isnan(vb);
    if (!std::isnan(va) && va != vb) return largest ? va > vb : va < vb;
    return a < b;
  };
  std::vector<int> forced, free;
  for (int i = 0; i < length; ++i) {
    if (i < forced_first || i >= length - forced_last) forced.push_back(i);
    else if (!std::isnan(value(i))) free.push_back(i);
  }
  std::sort(free.begin(), free.end(), better);
  std::vector<int> chosen(forced.begin(), forced.begin() + std::min<std::size_t>(forced.size(), std::max(k, 0)));
  for (std::size_t i = 0; i < free.size() && static_cast<int>(chosen.size()) < k; ++i) chosen.push_back(free[i]);
  std::sort(chosen.begin(), chosen.end(), better);
  std::vector<std::int32_t> out(std::max(k, 0), -1);
  std::copy(chosen.begin(), chosen.end(), out.begin());
  return out;
}

// Block scores of scores[0, length) for blocks of block_size tokens (the last block may be
// partial): max or sum of the block's non-NaN tokens, NaN for a block with none.
template <typename T>
std::vector<double> pool_blocks(const T* scores, int length, int block_size, PoolOp op) {
  const int blocks = (length + block_size - 1) / block_size;
  std::vector<double> pooled(blocks);
  for (int b = 0; b < blocks; ++b) {
    double acc = 0.0;
    bool any = false;
    for (int i = b * block_size; i < std::min(length, (b + 1) * block_size); ++i) {
      const double v = score_value(scores[i]);
      if (std::isnan(v)) continue;
      acc = !any ? v : (op == PoolOp::kMax ? std::max(acc, v) : acc + v);  // +inf + -inf is NaN
      any = true;
    }
    pooled[b] = any ? acc : NAN;
  }
  return pooled;
}

}  // namespace reference
HYLRA_NAMESPACE_END
