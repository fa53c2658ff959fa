// Host reference of hylra's decode attention, accumulated in double: the executable spec the GPU
// kernels are tested against. Layouts (DESIGN.md section 4): q and out [batch, num_qo_heads,
// head_dim], lse [batch, num_qo_heads] in natural log; query head hq reads KV head
// hq / (num_qo_heads / num_kv_heads). Like the kernels, these clamp seq_lens to
// [0, kv.max_seq_len()] and skip tokens whose page lies outside the pool, so a bad block table
// gives the same answer on both sides. A row with no token attended gets out = 0, lse = -inf.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "hylra/attention/scores.hpp"
#include "hylra/core/dtype.hpp"
#include "hylra/core/status.hpp"
#include "hylra/layout/index_list.hpp"
#include "hylra/layout/kv_cache.hpp"

HYLRA_NAMESPACE_BEGIN
namespace reference {

namespace detail {

template <typename T>
Status check_decode_args(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, const void* out) {
  if (q == nullptr) return {StatusCode::kNullPointer, "q"};
  if (out == nullptr) return {StatusCode::kNullPointer, "out"};
  HYLRA_RETURN_IF_ERROR(validate(kv));
  if (num_qo_heads <= 0 || num_qo_heads % kv.num_kv_heads != 0)
    return {StatusCode::kInvalidShape, "num_qo_heads must be a positive multiple of num_kv_heads"};
  return Status::success();
}

template <typename T>
int clamped_seq_len(const PagedKvCache<const T>& kv, int batch) {
  const int len = kv.seq_lens[batch];
  return len < 0 ? 0 : (len > kv.max_seq_len() ? kv.max_seq_len() : len);
}

template <typename T>
double dot(const T* a, const T* b, int n) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(to_float(a[i])) * static_cast<double>(to_float(b[i]));
  return sum;
}

// softmax(sm_scale * q . K[positions]) . V[positions] for one query head, each listed position
// counted once per occurrence; positions must be valid (below the length, page inside the pool).
template <typename T>
void attend(const T* q, const PagedKvCache<const T>& kv, int batch, int kv_head, const std::vector<int>& positions,
            float sm_scale, float* out, float* lse) {
  const int d = kv.head_dim;
  if (positions.empty()) {
    for (int i = 0; i < d; ++i) out[i] = 0.0f;
    if (lse) *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  std::vector<double> logits(positions.size());
  double max_logit = -std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < positions.size(); ++j) {
    const T* k = kv.k_data + kv.token_offset(batch, positions[j], kv_head);
    logits[j] = static_cast<double>(sm_scale) * dot(q, k, d);
    max_logit = std::fmax(max_logit, logits[j]);
  }
  std::vector<double> acc(d, 0.0);
  double denom = 0.0;
  for (std::size_t j = 0; j < positions.size(); ++j) {
    const double p = std::exp(logits[j] - max_logit);
    denom += p;
    const T* v = kv.v_data + kv.token_offset(batch, positions[j], kv_head);
    for (int i = 0; i < d; ++i) acc[i] += p * static_cast<double>(to_float(v[i]));
  }
  for (int i = 0; i < d; ++i) out[i] = static_cast<float>(acc[i] / denom);
  if (lse) *lse = static_cast<float>(max_logit + std::log(denom));
}

template <typename T>
bool token_in_pool(const PagedKvCache<const T>& kv, int batch, int pos) {
  return kv.token_offset(batch, pos, 0) >= 0;
}

}  // namespace detail

// Dense decode: every query head attends to tokens [0, seq_lens[b]) of its KV head. lse may be null.
// O(batch * num_qo_heads * seq_len * head_dim).
template <typename T>
Status dense_decode(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, float sm_scale, float* out,
                    float* lse) {
  HYLRA_RETURN_IF_ERROR(detail::check_decode_args(q, num_qo_heads, kv, out));
  const int group = num_qo_heads / kv.num_kv_heads, d = kv.head_dim;
  for (int b = 0; b < kv.batch_size; ++b) {
    std::vector<int> positions;
    for (int t = 0; t < detail::clamped_seq_len(kv, b); ++t)
      if (detail::token_in_pool(kv, b, t)) positions.push_back(t);
    for (int hq = 0; hq < num_qo_heads; ++hq) {
      const std::int64_t row = static_cast<std::int64_t>(b) * num_qo_heads + hq;
      detail::attend(q + row * d, kv, b, hq / group, positions, sm_scale, out + row * d, lse ? lse + row : nullptr);
    }
  }
  return Status::success();
}

// Gather decode: query head hq of sequence b attends to the tokens its KV head's index row lists
// (the shared row when indices.num_heads == 1): entries j < row_length, ids >= 0; an id names token
// id, or tokens [id * B, (id + 1) * B) when indices.block_size = B > 1. Tokens at or past the
// sequence length are skipped. A duplicated id contributes once per occurrence. An empty selection
// gives out = 0 and lse = -inf. O(batch * num_qo_heads * k_max * block_size * head_dim).
template <typename T>
Status gather_decode(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, const IndexList& indices,
                     float sm_scale, float* out, float* lse) {
  HYLRA_RETURN_IF_ERROR(detail::check_decode_args(q, num_qo_heads, kv, out));
  HYLRA_RETURN_IF_ERROR(validate(indices, kv.num_kv_heads));
  if (indices.batch_size != kv.batch_size) return {StatusCode::kInvalidShape, "indices.batch_size != kv.batch_size"};
  const int group = num_qo_heads / kv.num_kv_heads, d = kv.head_dim, bs = indices.block_size;
  for (int b = 0; b < kv.batch_size; ++b) {
    const int len = detail::clamped_seq_len(kv, b);
    for (int h = 0; h < kv.num_kv_heads; ++h) {
      std::vector<int> positions;
      const std::int32_t* ids = indices.row(b, h);
      for (int j = 0; j < indices.row_length(b, h); ++j) {
        if (ids[j] < 0) continue;
        for (std::int64_t t = static_cast<std::int64_t>(ids[j]) * bs; t < (static_cast<std::int64_t>(ids[j]) + 1) * bs; ++t)
          if (t < len && detail::token_in_pool(kv, b, static_cast<int>(t))) positions.push_back(static_cast<int>(t));
      }
      for (int g = 0; g < group; ++g) {
        const std::int64_t row = static_cast<std::int64_t>(b) * num_qo_heads + h * group + g;
        detail::attend(q + row * d, kv, b, h, positions, sm_scale, out + row * d, lse ? lse + row : nullptr);
      }
    }
  }
  return Status::success();
}

// The scores dense decode exports (attention/scores.hpp): per (sequence, KV head), the max over
// the group's query heads of sm_scale * q . k_t, max-pooled over blocks of export.block_size
// tokens; -inf where no token of the entry is attended. Writes row_length(max_seq_len) entries,
// each the fp32 score rounded to nearest export_to.dtype.
template <typename T>
Status dense_scores(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, float sm_scale,
                    const ScoreExport& export_to) {
  if (export_to.scores == nullptr) return {StatusCode::kNullPointer, "scores"};
  HYLRA_RETURN_IF_ERROR(detail::check_decode_args(q, num_qo_heads, kv, export_to.scores));
  if (!is_valid(export_to.dtype))
    return {StatusCode::kInvalidValue, "score dtype"};
  if (export_to.block_size <= 0) return {StatusCode::kInvalidValue, "score block_size must be positive"};
  const int row_length = export_to.row_length(kv.max_seq_len());
  if (export_to.row_stride < row_length) return {StatusCode::kInvalidStride, "score row_stride below row length"};
  const int group = num_qo_heads / kv.num_kv_heads, d = kv.head_dim;
  for (int b = 0; b < kv.batch_size; ++b) {
    const int len = detail::clamped_seq_len(kv, b);
    for (int h = 0; h < kv.num_kv_heads; ++h) {
      std::vector<float> row(static_cast<std::size_t>(row_length), -std::numeric_limits<float>::infinity());
      for (int t = 0; t < len; ++t) {
        if (!detail::token_in_pool(kv, b, t)) continue;
        const T* k = kv.k_data + kv.token_offset(b, t, h);
        for (int g = 0; g < group; ++g) {
          const T* qh = q + (static_cast<std::int64_t>(b) * num_qo_heads + h * group + g) * d;
          const float logit = static_cast<float>(static_cast<double>(sm_scale) * detail::dot(qh, k, d));
          float& entry = row[t / export_to.block_size];
          entry = std::fmax(entry, logit);
        }
      }
      const std::int64_t first = (static_cast<std::int64_t>(b) * kv.num_kv_heads + h) * export_to.row_stride;
      for (int j = 0; j < row_length; ++j) store_score(export_to.scores, first + j, export_to.dtype, row[j]);
    }
  }
  return Status::success();
}

// Merge of partial attention states: state s of row r is (o[(r * num_states + s) * head_dim ...],
// lse[r * num_states + s]), each normalized over its own tokens. out_r = sum_s w_s o_s with
// w_s = exp(lse_s - lse_r), lse_r = log sum_s exp(lse_s); a row whose states are all -inf gets
// out = 0, lse = -inf. lse_out may be null. O(num_rows * num_states * head_dim).
template <typename TIn>
Status merge_states(const TIn* o, const float* lse, int num_rows, int num_states, int head_dim, float* out,
                    float* lse_out) {
  if (o == nullptr || lse == nullptr || out == nullptr) return {StatusCode::kNullPointer, "o, lse or out"};
  if (num_rows <= 0 || num_states <= 0 || head_dim <= 0) return {StatusCode::kInvalidShape, "merge sizes"};
  for (int r = 0; r < num_rows; ++r) {
    const float* row_lse = lse + static_cast<std::int64_t>(r) * num_states;
    double max_lse = -std::numeric_limits<double>::infinity();
    for (int s = 0; s < num_states; ++s) max_lse = std::fmax(max_lse, static_cast<double>(row_lse[s]));
    std::vector<double> acc(head_dim, 0.0);
    double denom = 0.0;
    if (max_lse != -std::numeric_limits<double>::infinity()) {
      for (int s = 0; s < num_states; ++s) {
        const double w = std::exp(static_cast<double>(row_lse[s]) - max_lse);
        denom += w;
        const TIn* state = o + (static_cast<std::int64_t>(r) * num_states + s) * head_dim;
        if (w > 0.0)
          for (int i = 0; i < head_dim; ++i) acc[i] += w * static_cast<double>(to_float(state[i]));
      }
    }
    for (int i = 0; i < head_dim; ++i)
      out[static_cast<std::int64_t>(r) * head_dim + i] = denom > 0.0 ? static_cast<float>(acc[i] / denom) : 0.0f;
    if (lse_out) lse_out[r] = denom > 0.0 ? static_cast<float>(max_lse + std::log(denom)) : -std::numeric_limits<float>::infinity();
  }
  return Status::success();
}

}  // namespace reference
HYLRA_NAMESPACE_END
