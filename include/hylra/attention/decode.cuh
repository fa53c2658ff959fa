// DenseDecode: one query token per sequence attends to every cached token of its KV head
// (DESIGN.md section 4 layouts), optionally exporting the scores top-k selects from (scores.hpp).
//
// q, out: [batch, num_qo_heads, kHeadDim] of T (half or bfloat16, as the cache); lse: [batch,
// num_qo_heads] natural-log LSE; query head hq reads KV head hq / group, group = num_qo_heads /
// num_kv_heads in 1..16. Lengths are clamped to kv.max_seq_len(); tokens whose page lies outside
// the pool are skipped; an empty sequence gives out = 0, lse = -inf. fp32 accumulation; the
// probabilities enter the P V product rounded to T. Reference: reference::dense_decode and
// reference::dense_scores. Reads K and V once: O(batch * num_kv_heads * seq_len * head_dim) bytes.
//
//   DenseDecode<bf16, 128>::Arguments args{q, kv, num_qo_heads, sm_scale, out, lse};
//   HYLRA_RETURN_IF_ERROR(DenseDecode<bf16, 128>::can_implement(args));
//   size_t bytes;  HYLRA_RETURN_IF_ERROR(DenseDecode<bf16, 128>::workspace_size(args, &bytes));
//   ... DenseDecode<bf16, 128>::run(args, workspace, bytes, stream);
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "hylra/attention/scores.hpp"
#include "hylra/attention/split_kv.cuh"
#include "hylra/core/dispatch.hpp"

HYLRA_NAMESPACE_BEGIN

// Arguments do not depend on the head dim, so one struct serves every instantiation.
template <typename T>
struct DenseDecodeArguments {
  const T* q = nullptr;
  PagedKvCache<const T> kv;
  int num_qo_heads = 0;
  float sm_scale = 0.0f;
  T* out = nullptr;
  float* lse = nullptr;  // optional
  ScoreExport scores;    // scores.scores == null: no export
  // KV heads per CTA: 0 lets plan() choose; 1, 2 or 4 forces it (for tuning). Above 1 needs a
  // token's rows of adjacent heads adjacent (NHD pages or a contiguous cache), token scores or
  // none, num_kv_heads divisible by it, group * it <= 16, and 4 only at head dims up to 128.
  int kv_heads_per_cta = 0;
};

template <typename T, int kHeadDim>
class DenseDecode
    : public detail::SplitKvDecode<DenseDecode<T, kHeadDim>, DenseDecodeArguments<T>, T, kHeadDim, detail::DenseSlots> {
 public:
  using Arguments = DenseDecodeArguments<T>;

  static Status can_implement(const Arguments& args) {
    HYLRA_RETURN_IF_ERROR((detail::check_decode_args<T, kHeadDim>(args.q, args.num_qo_heads, args.kv, args.out, args.sm_scale)));
    if (args.scores.scores != nullptr) HYLRA_RETURN_IF_ERROR(detail::check_score_export(args.scores, args.kv.max_seq_len()));
    return detail::check_kv_heads_per_cta<kHeadDim>(args.kv_heads_per_cta, args.kv, args.num_qo_heads, args.scores);
  }

  // How run() splits the rows into chunks and merges them, after can_implement (host values only;
  // for tests and tuning). workspace_size(args, &bytes) and run(args, workspace, bytes, stream)
  // come from detail::SplitKvDecode.
  static Status plan(const Arguments& args, detail::SplitPlan* plan) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    return detail::plan_dense<T, kHeadDim, detail::DenseSlots>(args.kv_heads_per_cta, args.kv, args.num_qo_heads,
                                                               args.scores, plan);
  }

 private:
  friend class detail::SplitKvDecode<DenseDecode, Arguments, T, kHeadDim, detail::DenseSlots>;

  static detail::DecodeParams<T> params(const Arguments& args) {
    return detail::with_score_export<kHeadDim>(
        detail::make_decode_params(args.q, args.num_qo_heads, args.kv, args.sm_scale, args.out, args.lse), args.scores);
  }
};

// Runtime head-dim dispatch over {64, 128, 256}: the entry an engine uses when the head dim is
// not known at compile time.
template <typename T>
Status dense_decode_workspace_size(const DenseDecodeArguments<T>& args, std::size_t* bytes) {
  return detail::decode_workspace_size<DenseDecode, T>(args, bytes);
}

template <typename T>
Status dense_decode(const DenseDecodeArguments<T>& args, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
  return detail::run_decode<DenseDecode, T>(args, workspace, workspace_bytes, stream);
}

HYLRA_NAMESPACE_END
