// DenseScores: the scoring pass of a Select layer. Writes, per (sequence, KV head), exactly the
// scores DenseDecode exports (scores.hpp: the max over the GQA group of the logits, per token or
// max-pooled per block, in fp32, bf16 or fp16) but reads only K: no V, no softmax, no output.
// BatchedTopK then picks the layer's indices and GatherDecode attends to them, so a Select layer
// reads K once plus the selected V, where a DenseSelect layer reads K and V.
//
// Layouts, types, GQA rules and length handling are DenseDecode's (decode.cuh). No workspace.
// Reference: reference::dense_scores. Reads O(batch * num_kv_heads * seq_len * head_dim) bytes of K.
//
//   DenseScores<bf16, 128>::Arguments args{q, kv, num_qo_heads, sm_scale, export_to};
//   HYLRA_RETURN_IF_ERROR(DenseScores<bf16, 128>::run(args, stream));
#pragma once

#include <cuda_runtime_api.h>

#include "hylra/attention/scores.hpp"
#include "hylra/attention/split_kv.cuh"
#include "hylra/core/dispatch.hpp"

HYLRA_NAMESPACE_BEGIN

// Arguments do not depend on the head dim, so one struct serves every instantiation.
template <typename T>
struct DenseScoresArguments {
  const T* q = nullptr;  // [batch, num_qo_heads, head_dim]
  PagedKvCache<const T> kv;
  int num_qo_heads = 0;
  float sm_scale = 0.0f;
  ScoreExport scores;  // required
  int kv_heads_per_cta = 0;  // as DenseDecodeArguments::kv_heads_per_cta
};

template <typename T, int kHeadDim>
class DenseScores {
 public:
  using Arguments = DenseScoresArguments<T>;

  static Status can_implement(const Arguments& args) {
    HYLRA_RETURN_IF_ERROR((detail::check_query_and_cache<T, kHeadDim>(args.q, args.num_qo_heads, args.kv, args.sm_scale)));
    HYLRA_RETURN_IF_ERROR(detail::check_score_export(args.scores, args.kv.max_seq_len()));
    return detail::check_kv_heads_per_cta<kHeadDim>(args.kv_heads_per_cta, args.kv, args.num_qo_heads, args.scores);
  }

  // How run() splits the rows into chunks (host values only; for tests and tuning).
  static Status plan(const Arguments& args, detail::SplitPlan* plan) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    return detail::plan_dense<T, kHeadDim, detail::ScoredSlots>(args.kv_heads_per_cta, args.kv, args.num_qo_heads,
                                                                args.scores, plan);
  }

  // Graph-capturable: one launch sized from host values, no allocation, no host synchronization.
  static Status run(const Arguments& args, cudaStream_t stream) {
    detail::SplitPlan split_plan;
    HYLRA_RETURN_IF_ERROR(plan(args, &split_plan));
    const auto params = detail::with_score_export<kHeadDim>(
        detail::make_decode_params<T>(args.q, args.num_qo_heads, args.kv, args.sm_scale, nullptr, nullptr),
        args.scores);
    return detail::launch_decode<T, kHeadDim, detail::ScoredSlots>(params, split_plan, nullptr, 0, stream);
  }
};

// Runtime head-dim dispatch over {64, 128, 256}.
template <typename T>
Status dense_scores(const DenseScoresArguments<T>& args, cudaStream_t stream) {
  return dispatch_head_dim(args.kv.head_dim, [&](auto head_dim) {
    return DenseScores<T, decltype(head_dim)::value>::run(args, stream);
  });
}

HYLRA_NAMESPACE_END
