// ScoreExport: where dense decode writes the per-(sequence, KV head) scores that top-k selects from.
//
// Score of token t for KV head h = max over the group's query heads q of sm_scale * (q . k_t), the
// raw logit in natural units. The max of logits is exported (not a sum of probabilities) because it
// is final inside one split-KV chunk: a probability needs each head's final LSE, i.e. every head's
// logit kept until after the merge, group-size times the writes. With block_size B > 1 the score
// of block j is the max over its tokens t in [j*B, (j+1)*B) below the sequence length (max pooling).
// Every entry of a row is written: positions at or past the sequence length get -inf.
//
// Scores are computed in fp32 and stored as `dtype`: fp32 by default, or rounded to nearest bf16 or
// fp16, which halves the export's writes (they, not the arithmetic, are what export costs at large
// batch: bench/RESULTS.md). BatchedTopK reads all three. Rounding merges logits closer than the
// type's precision into ties, which top-k then breaks toward the lower position; fp16 overflows to
// inf beyond 65504.
#pragma once

#include <cstdint>

#include "hylra/core/config.hpp"
#include "hylra/core/dtype.hpp"

HYLRA_NAMESPACE_BEGIN

struct ScoreExport {
  void* scores = nullptr;          // [batch, num_kv_heads, row_stride] elements of dtype; null = no export
  int block_size = 1;              // 1 (tokens) or 16, 32, 64, 128 tokens per pooled score
  std::int64_t row_stride = 0;     // elements between rows, >= row_length(max_seq_len)
  DType dtype = DType::kFloat32;   // kFloat32, kBFloat16 or kFloat16

  // Entries of one row for a cache holding up to max_seq_len tokens per sequence.
  HYLRA_HOST_DEVICE int row_length(int max_seq_len) const { return (max_seq_len + block_size - 1) / block_size; }
};

// Stores `value` as element `i` of scores held as `dtype`, rounded to nearest: the one rule the
// kernels and reference::dense_scores share.
HYLRA_HOST_DEVICE void store_score(void* scores, std::int64_t i, DType dtype, float value) {
  switch (dtype) {
    case DType::kFloat32: static_cast<float*>(scores)[i] = value; break;
    case DType::kBFloat16: static_cast<__nv_bfloat16*>(scores)[i] = from_float<__nv_bfloat16>(value); break;
    case DType::kFloat16: static_cast<half*>(scores)[i] = from_float<half>(value); break;
  }
}

HYLRA_NAMESPACE_END
