// IndexList: the contract between the layers that select tokens and the layers that attend to them.
//
// int32 *logical* ids of shape [batch_size, num_heads, k_max] (row stride k_max), where num_heads
// is the number of KV heads (one list per head) or 1 (one list shared by all heads). An id names a
// token position when block_size == 1, or the block of tokens [id * block_size, (id + 1) * block_size)
// otherwise. Entry j of a row is used when j < lengths[row] (if lengths is given) and the id is
// >= 0; writers pad the tail with -1. Order within a row carries no meaning. Ids at or past the
// sequence end are skipped by every consumer and reported by validate_contents().
#pragma once

#include <cstdint>

#include "hylra/core/dispatch.hpp"
#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN

template <typename IndexT>
struct BasicIndexList {
  IndexT* indices = nullptr;                // [batch_size, num_heads, k_max]
  const std::int32_t* lengths = nullptr;    // [batch_size, num_heads] or null (use the whole row)
  int batch_size = 0;
  int num_heads = 0;   // num_kv_heads, or 1 when one list serves every head
  int k_max = 0;
  int block_size = 1;  // tokens per id

  HYLRA_HOST_DEVICE bool shared_across_heads() const { return num_heads == 1; }
  HYLRA_HOST_DEVICE int row_index(int batch, int kv_head) const {
    return batch * num_heads + (num_heads == 1 ? 0 : kv_head);
  }
  HYLRA_HOST_DEVICE IndexT* row(int batch, int kv_head) const {
    return indices + static_cast<std::int64_t>(row_index(batch, kv_head)) * k_max;
  }
  // Entries of the row to consider; lengths above k_max are clamped, negative ones read as 0.
  HYLRA_HOST_DEVICE int row_length(int batch, int kv_head) const {
    if (lengths == nullptr) return k_max;
    const int len = lengths[row_index(batch, kv_head)];
    return len < 0 ? 0 : (len > k_max ? k_max : len);
  }
};

using IndexList = BasicIndexList<const std::int32_t>;  // what attention kernels read
using MutableIndexList = BasicIndexList<std::int32_t>;  // what top-k writes

// Shape checks the host can make without reading device memory. `num_kv_heads` is the KV cache's.
template <typename IndexT>
Status validate(const BasicIndexList<IndexT>& list, int num_kv_heads) {
  if (list.indices == nullptr) return {StatusCode::kNullPointer, "indices"};
  if (list.batch_size <= 0) return {StatusCode::kInvalidShape, "indices.batch_size must be positive"};
  if (list.k_max <= 0) return {StatusCode::kInvalidValue, "indices.k_max must be positive"};
  if (list.num_heads != 1 && list.num_heads != num_kv_heads)
    return {StatusCode::kInvalidShape, "indices.num_heads must be 1 or num_kv_heads"};
  if (!SupportedPageSizes::contains(list.block_size))
    return {StatusCode::kNotSupported, "indices.block_size (supported: 1, 16, 32, 64, 128)"};
  return Status::success();
}

// Checks host-readable contents: lengths in [0, k_max], ids >= -1 and below the number of tokens
// (or blocks) of their sequence given host `seq_lens`.
template <typename IndexT>
Status validate_contents(const BasicIndexList<IndexT>& list, const std::int32_t* seq_lens) {
  for (int b = 0; b < list.batch_size; ++b) {
    const int limit = (seq_lens[b] + list.block_size - 1) / list.block_size;
    for (int h = 0; h < list.num_heads; ++h) {
      const int r = list.row_index(b, h);
      if (list.lengths && (list.lengths[r] < 0 || list.lengths[r] > list.k_max))
        return {StatusCode::kInvalidValue, "indices.lengths out of [0, k_max]"};
      const int len = list.row_length(b, h);
      const IndexT* ids = list.indices + static_cast<std::int64_t>(r) * list.k_max;
      for (int j = 0; j < len; ++j) {
        if (ids[j] < -1) return {StatusCode::kInvalidValue, "indices entry below -1"};
        if (ids[j] >= limit) return {StatusCode::kInvalidValue, "indices entry at or past the sequence end"};
      }
    }
  }
  return Status::success();
}

HYLRA_NAMESPACE_END
