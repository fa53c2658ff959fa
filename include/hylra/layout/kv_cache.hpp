// PagedKvCache: a view of an engine's K and V pools, addressed through a block table.
//
// Physical layout is described by element strides, so engines pass their own memory without
// copies: NHD pages [num_pages, page_size, num_kv_heads, head_dim], HND pages
// [num_pages, num_kv_heads, page_size, head_dim], or any other non-overlapping arrangement whose
// last dimension is contiguous. K and V share one set of strides (two pools, or one interleaved
// pool with v_data = k_data + offset). Token `pos` of sequence `b` lives in physical page
// block_table[b * max_pages_per_seq + pos / page_size], slot pos % page_size. A contiguous cache is
// the same view with block_table = nullptr, meaning page = b * max_pages_per_seq + logical page.
#pragma once

#include <cstdint>

#include "hylra/core/dispatch.hpp"
#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN

enum class KvLayout : int { kNHD, kHND };

template <typename T>
struct PagedKvCache {
  T* k_data = nullptr;
  T* v_data = nullptr;
  int num_pages = 0;
  int page_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  std::int64_t stride_page = 0;   // elements between consecutive pages
  std::int64_t stride_token = 0;  // elements between consecutive slots of a page
  std::int64_t stride_head = 0;   // elements between consecutive KV heads
  const std::int32_t* block_table = nullptr;  // [batch_size, max_pages_per_seq]; null = identity
  int max_pages_per_seq = 0;
  const std::int32_t* seq_lens = nullptr;  // [batch_size]
  int batch_size = 0;

  // Tokens a sequence can hold; kernels clamp seq_lens to this so a bad length cannot read past
  // its block-table row.
  HYLRA_HOST_DEVICE int max_seq_len() const { return max_pages_per_seq * page_size; }

  HYLRA_HOST_DEVICE int physical_page(int batch, int logical_page) const {
    const std::int64_t entry = static_cast<std::int64_t>(batch) * max_pages_per_seq + logical_page;
    return block_table ? block_table[entry] : static_cast<int>(entry);
  }

  // Element offset of (page, slot, head, 0) from k_data (and from v_data).
  HYLRA_HOST_DEVICE std::int64_t offset(int page, int slot, int head) const {
    return page * stride_page + slot * stride_token + head * stride_head;
  }

  // Offset of token `pos` of sequence `batch` and KV head `head`; -1 if the block table points
  // outside the pool (such tokens are skipped by kernels and reported by validate_contents).
  HYLRA_HOST_DEVICE std::int64_t token_offset(int batch, int pos, int head) const {
    const int page = physical_page(batch, pos / page_size);
    if (page < 0 || page >= num_pages) return -1;
    return offset(page, pos % page_size, head);
  }
};

// Views over an NHD or HND page pool with densely packed pages.
template <typename T>
PagedKvCache<T> make_paged_kv_cache(KvLayout layout, T* k_data, T* v_data, int num_pages, int page_size,
                                    int num_kv_heads, int head_dim, const std::int32_t* block_table,
                                    int max_pages_per_seq, const std::int32_t* seq_lens, int batch_size) {
  PagedKvCache<T> kv;
  kv.k_data = k_data;
  kv.v_data = v_data;
  kv.num_pages = num_pages;
  kv.page_size = page_size;
  kv.num_kv_heads = num_kv_heads;
  kv.head_dim = head_dim;
  kv.stride_page = static_cast<std::int64_t>(page_size) * num_kv_heads * head_dim;
  kv.stride_token = layout == KvLayout::kNHD ? static_cast<std::int64_t>(num_kv_heads) * head_dim : head_dim;
  kv.stride_head = layout == KvLayout::kNHD ? head_dim : static_cast<std::int64_t>(page_size) * head_dim;
  kv.block_table = block_table;
  kv.max_pages_per_seq = max_pages_per_seq;
  kv.seq_lens = seq_lens;
  kv.batch_size = batch_size;
  return kv;
}

// A view over a contiguous cache [batch_size, max_seq_len, num_kv_heads, head_dim]: identity block
// table, pages as large as the supported page size that divides max_seq_len (1 if none does).
template <typename T>
PagedKvCache<T> make_contiguous_kv_cache(T* k_data, T* v_data, int batch_size, int max_seq_len,
                                         int num_kv_heads, int head_dim, const std::int32_t* seq_lens) {
  int page_size = 1;
  for (int candidate : {128, 64, 32, 16}) {
    if (max_seq_len > 0 && max_seq_len % candidate == 0) {
      page_size = candidate;
      break;
    }
  }
  const int pages_per_seq = max_seq_len > 0 ? max_seq_len / page_size : 0;
  return make_paged_kv_cache(KvLayout::kNHD, k_data, v_data, batch_size * pages_per_seq, page_size,
                             num_kv_heads, head_dim, nullptr, pages_per_seq, seq_lens, batch_size);
}

// Checks what the host can check without reading device memory: pointers, shapes, the supported
// page sizes, non-overlapping strides and 16-byte alignment. Does not check head_dim against the
// compiled set (dispatch does) so that the host reference accepts any head dimension.
template <typename T>
Status validate(const PagedKvCache<T>& kv) {
  if (kv.k_data == nullptr) return {StatusCode::kNullPointer, "kv.k_data"};
  if (kv.v_data == nullptr) return {StatusCode::kNullPointer, "kv.v_data"};
  if (kv.seq_lens == nullptr) return {StatusCode::kNullPointer, "kv.seq_lens"};
  if (kv.batch_size <= 0) return {StatusCode::kInvalidShape, "kv.batch_size must be positive"};
  if (kv.num_pages <= 0) return {StatusCode::kInvalidShape, "kv.num_pages must be positive"};
  if (kv.num_kv_heads <= 0) return {StatusCode::kInvalidShape, "kv.num_kv_heads must be positive"};
  if (kv.head_dim <= 0) return {StatusCode::kInvalidShape, "kv.head_dim must be positive"};
  if (kv.max_pages_per_seq <= 0) return {StatusCode::kInvalidShape, "kv.max_pages_per_seq must be positive"};
  if (!SupportedPageSizes::contains(kv.page_size))
    return {StatusCode::kNotSupported, "kv.page_size (supported: 1, 16, 32, 64, 128)"};
  if (kv.block_table == nullptr &&
      static_cast<std::int64_t>(kv.batch_size) * kv.max_pages_per_seq > kv.num_pages)
    return {StatusCode::kInvalidShape, "kv.num_pages is smaller than an identity block table needs"};

  // Non-overlap: ordered by stride, each dimension must step over the whole extent of the one below.
  struct Dim {
    std::int64_t stride, extent;
    const char* name;
  };
  Dim dims[3] = {{kv.stride_token, kv.page_size, "kv.stride_token overlaps another dimension"},
                 {kv.stride_head, kv.num_kv_heads, "kv.stride_head overlaps another dimension"},
                 {kv.stride_page, kv.num_pages, "kv.stride_page overlaps another dimension"}};
  for (int i = 1; i < 3; ++i)  // insertion sort by stride
    for (int j = i; j > 0 && dims[j].stride < dims[j - 1].stride; --j) {
      const Dim t = dims[j];
      dims[j] = dims[j - 1];
      dims[j - 1] = t;
    }
  std::int64_t footprint = kv.head_dim;  // elements one step of the next dimension must clear
  for (const Dim& dim : dims) {
    if (dim.extent == 1) continue;
    if (dim.stride < footprint) return {StatusCode::kInvalidStride, dim.name};
    footprint = dim.stride * dim.extent;
  }

  constexpr std::int64_t kAlign = kVecElems<T>;
  if (reinterpret_cast<std::uintptr_t>(kv.k_data) % 16 != 0) return {StatusCode::kMisaligned, "kv.k_data"};
  if (reinterpret_cast<std::uintptr_t>(kv.v_data) % 16 != 0) return {StatusCode::kMisaligned, "kv.v_data"};
  if (kv.head_dim % kAlign != 0 || kv.stride_page % kAlign != 0 || kv.stride_token % kAlign != 0 ||
      kv.stride_head % kAlign != 0)
    return {StatusCode::kMisaligned, "kv.head_dim and strides must be multiples of 16 bytes"};
  return Status::success();
}

// Checks the contents of a view whose block table and seq_lens are host-readable: every length in
// [0, max_seq_len] and every page a sequence uses inside the pool. Kernels cannot return this
// (it would need a host sync); they clamp lengths and skip bad pages instead.
template <typename T>
Status validate_contents(const PagedKvCache<T>& kv) {
  for (int b = 0; b < kv.batch_size; ++b) {
    const int len = kv.seq_lens[b];
    if (len < 0 || len > kv.max_seq_len()) return {StatusCode::kInvalidValue, "kv.seq_lens out of [0, max_seq_len]"};
    for (int p = 0; p * kv.page_size < len; ++p) {
      const int page = kv.physical_page(b, p);
      if (page < 0 || page >= kv.num_pages) return {StatusCode::kInvalidValue, "kv.block_table entry outside the pool"};
    }
  }
  return Status::success();
}

HYLRA_NAMESPACE_END
