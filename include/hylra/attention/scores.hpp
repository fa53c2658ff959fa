// ScoreExport: where dense decode writes the per-(sequence, KV head) scores that top-k selects from.
//
// Score of token t for KV head h = max over the group's query heads q of sm_scale * (q . k_t), the
// raw logit in natural units. The max of logits is exported (not a sum of probabilities) because it
// is final inside one split-KV chunk: a probability needs each head's final LSE, i.e. every head's
// logit kept until after the merge, group-size times the writes. With block_size B > 1 the score
// of block j is the max over its tokens t in [j*B, (j+1)*B) below the sequence length (max pooling).
// Every entry of a row is written: positions at or past the sequence length get -inf.
#pragma once

#include <cstdint>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

struct ScoreExport {
  float* scores = nullptr;     // [batch, num_kv_heads, row_stride]; null = no export
  int block_size = 1;          // 1 (tokens) or 16, 32, 64, 128 tokens per pooled score
  std::int64_t row_stride = 0; // floats between rows, >= row_length(max_seq_len)

  // Entries of one row for a cache holding up to max_seq_len tokens per sequence.
  HYLRA_HOST_DEVICE int row_length(int max_seq_len) const { return (max_seq_len + block_size - 1) / block_size; }
};

HYLRA_NAMESPACE_END
