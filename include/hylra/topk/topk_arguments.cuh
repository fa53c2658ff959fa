// BatchedTopKArguments: what a BatchedTopK call selects from and writes to, and the per-position
// rules every selection kernel shares (row length, forced positions, block-table translation,
// output and padding writes), so that each method applies them identically.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "hylra/core/config.hpp"
#include "hylra/core/dtype.hpp"
#include "hylra/topk/radix_key.cuh"

HYLRA_NAMESPACE_BEGIN

// The selection method of a BatchedTopK call (batched_topk.cuh describes both).
enum class TopKMethod {
  // One thread-block cluster per row. Any scores; no workspace.
  kCluster,
  // A threshold per row from a sample, one compare pass, an exact select among the candidates.
  // Faster for launches of many long rows whose scores have no structure along the row (taken
  // only where the policy's shape rule says it pays, else kCluster); needs a workspace. Rows
  // whose scores are correlated over tens of positions or more may mislead the sample; they are
  // then selected again by the cluster method, and a launch with such rows takes up to ~1.5x
  // kCluster's time (bench/RESULTS.md). Attention scores may well be such rows: measure before
  // choosing it.
  kSampled,
};

template <typename ScoreT>
struct BatchedTopKArguments {
  const ScoreT* scores = nullptr;          // [num_rows, row_stride]
  std::int64_t row_stride = 0;             // elements between consecutive rows, >= num_cols
  int num_rows = 0;                        // R
  int num_cols = 0;                        // N, the longest row
  const std::int32_t* lengths = nullptr;   // [num_rows] scores per row, clamped to [0, N]; null = N
  int k = 0;                               // >= 1; k >= a row's length selects the whole row
  std::int32_t* indices = nullptr;         // [num_rows, k] out: positions, -1 tail padding
  ScoreT* values = nullptr;                // [num_rows, k] out, optional: their scores, NaN padding
  std::int32_t* counts = nullptr;          // [num_rows] out, optional: positions selected per row
  bool largest = true;                     // false selects the k smallest
  bool sorted = false;                     // best first (ties by position); k <= kMaxSortedK
  int sink_tokens = 0;                     // first positions always selected (attention sinks)
  int recent_tokens = 0;                   // last positions always selected (recent window)
  // Optional translation of each position p of row r to a physical one:
  // block_table[(r / rows_per_sequence) * block_table_stride + p / page_size] * page_size
  // + p % page_size, or -1 when the page index reaches max_pages or the entry is negative.
  // At block granularity (ids of blocks equal to pages) use page_size = 1.
  const std::int32_t* block_table = nullptr;
  std::int64_t block_table_stride = 0;
  int max_pages = 0;
  int page_size = 1;
  int rows_per_sequence = 1;  // e.g. num_kv_heads when rows are (sequence, head) pairs
  TopKMethod method = TopKMethod::kCluster;
};

namespace detail {

// Whether every row may be read with 16-byte loads: an aligned base and a stride of whole vectors.
template <typename ScoreT>
inline bool rows_vectorized(const BatchedTopKArguments<ScoreT>& args) {
  return reinterpret_cast<std::uintptr_t>(args.scores) % 16 == 0 && args.row_stride % kVecElems<ScoreT> == 0;
}

// The row's length clamped to [0, num_cols].
template <typename ScoreT>
HYLRA_DEVICE int row_length(const BatchedTopKArguments<ScoreT>& args, int row) {
  const int length = args.lengths ? args.lengths[row] : args.num_cols;
  return length < 0 ? 0 : (length > args.num_cols ? args.num_cols : length);
}

// The RadixKey of position `pos` (inside the row) of a row whose recent window starts at
// `recent_begin`: kForced for sink and recent positions, else the score's key.
template <typename ScoreT>
HYLRA_DEVICE typename RadixKey<ScoreT>::Bits position_key(const BatchedTopKArguments<ScoreT>& args, int pos,
                                                          int recent_begin, ScoreT score) {
  using Key = RadixKey<ScoreT>;
  return pos < args.sink_tokens || pos >= recent_begin ? Key::kForced : Key::make(score, args.largest);
}

template <typename ScoreT>
HYLRA_DEVICE std::int32_t translate_position(const BatchedTopKArguments<ScoreT>& args, int row, int pos) {
  if (args.block_table == nullptr) return pos;
  const int page = pos / args.page_size;
  if (page >= args.max_pages) return -1;
  const std::int32_t physical =
      args.block_table[static_cast<std::int64_t>(row / args.rows_per_sequence) * args.block_table_stride + page];
  return physical < 0 ? -1 : physical * args.page_size + pos % args.page_size;
}

template <typename ScoreT>
HYLRA_DEVICE ScoreT nan_score() {
  return from_float<ScoreT>(__int_as_float(0x7FC00000));
}

// The output row `row`: slot j receives a selected position (translated) and its score, or
// padding (-1, NaN). In sorted mode only untranslated positions are written; sort_rows_kernel
// translates them and writes the values afterwards.
template <typename ScoreT>
class RowOutput {
 public:
  HYLRA_DEVICE RowOutput(const BatchedTopKArguments<ScoreT>& args, int row)
      : args_(args),
        row_(row),
        indices_(args.indices + static_cast<std::int64_t>(row) * args.k),
        values_(args.sorted || args.values == nullptr ? nullptr : args.values + static_cast<std::int64_t>(row) * args.k),
        scores_(args.scores + static_cast<std::int64_t>(row) * args.row_stride) {}

  HYLRA_DEVICE void select(int slot, int pos) const {
    indices_[slot] = args_.sorted ? pos : translate_position(args_, row_, pos);
    if (values_) values_[slot] = scores_[pos];
  }
  HYLRA_DEVICE void pad(int slot) const {
    indices_[slot] = -1;
    if (values_) values_[slot] = nan_score<ScoreT>();
  }

 private:
  const BatchedTopKArguments<ScoreT>& args_;
  int row_;
  std::int32_t* indices_;
  ScoreT* values_;
  const ScoreT* scores_;
};

}  // namespace detail

HYLRA_NAMESPACE_END
