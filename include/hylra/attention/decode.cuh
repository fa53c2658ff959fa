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
  // token's rows of adjacent heads adjacent (NHD pages or a contiguous cache), no score export,
  // num_kv_heads divisible by it, group * it <= 16, and 4 only at head dims up to 128.
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
    const int heads = args.kv_heads_per_cta;
    if (heads != 0 && heads != 1 && heads != 2 && heads != 4)
      return {StatusCode::kInvalidValue, "kv_heads_per_cta must be 0 (chosen by plan), 1, 2 or 4"};
    if (heads > 1 && !can_pack(args, heads))
      return {StatusCode::kNotSupported,
              "kv_heads_per_cta > 1 needs NHD-adjacent heads, no score export, num_kv_heads divisible by it, "
              "group * it <= 16, and 4 only at head dims up to 128"};
    return Status::success();
  }

  // How run() splits the rows into chunks and merges them, after can_implement (host values only;
  // for tests and tuning). workspace_size(args, &bytes) and run(args, workspace, bytes, stream)
  // come from detail::SplitKvDecode.
  static Status plan(const Arguments& args, detail::SplitPlan* plan) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    if constexpr (Policy::kMaxPackedHeads >= 4)
      if (args.kv_heads_per_cta == 4) return plan_with<detail::PackedDenseSlots<4>>(args, plan);
    if (args.kv_heads_per_cta == 2) return plan_with<detail::PackedDenseSlots<2>>(args, plan);
    HYLRA_RETURN_IF_ERROR(plan_with<detail::DenseSlots>(args, plan));
    if (args.kv_heads_per_cta == 1) return Status::success();
    bool packed = false;
    if constexpr (Policy::kMaxPackedHeads >= 4) HYLRA_RETURN_IF_ERROR(pack_heads<4>(args, plan, &packed));
    if (!packed) HYLRA_RETURN_IF_ERROR(pack_heads<2>(args, plan, &packed));
    return Status::success();
  }

 private:
  using Policy = detail::DecodePolicy<kHeadDim, false>;
  friend class detail::SplitKvDecode<DenseDecode, Arguments, T, kHeadDim, detail::DenseSlots>;

  // A packed plan is taken where the merge it adds stays small next to the chunks' work: packing
  // kHeads KV heads per CTA multiplies the chunks per row by about kHeads. Measured on the H200
  // (bench/RESULTS.md): 1.3-4 % faster at batch 4-32 with chunks of >= 4096 tokens and at most 8
  // per row; slower at batch 1 (64 chunks per row, 3.5 % at 32K) and at 8 x 8K (1024-token
  // chunks, 1.7 %); one chunk per row (no merge at all) is kept one.
  static constexpr int kMaxPackedSplits = 8;
  static constexpr int kMinPackedChunk = 4096;

  // Replaces *plan (the unpacked one) by the plan with kHeads KV heads per CTA (PackedDenseSlots)
  // where that applies (can_pack) and pays (a merge as above).
  template <int kHeads>
  static Status pack_heads(const Arguments& args, detail::SplitPlan* plan, bool* packed) {
    if (!can_pack(args, kHeads)) return Status::success();
    detail::SplitPlan candidate;
    HYLRA_RETURN_IF_ERROR(plan_with<detail::PackedDenseSlots<kHeads>>(args, &candidate));
    const bool small_merge = plan->num_splits > 1 && candidate.num_splits <= kMaxPackedSplits &&
                             candidate.chunk_slots >= kMinPackedChunk;
    if (candidate.num_splits == 1 || small_merge) {
      *plan = candidate;
      *packed = true;
    }
    return Status::success();
  }

  // A token's rows of the heads adjacent in memory, no export, the heads' query rows in the MMA's 16.
  static bool can_pack(const Arguments& args, int heads) {
    const int group = args.num_qo_heads / args.kv.num_kv_heads;
    return heads <= Policy::kMaxPackedHeads && args.scores.scores == nullptr && args.kv.stride_head == kHeadDim &&
           args.kv.num_kv_heads % heads == 0 && group * heads <= Policy::kMaxGroup;
  }

  template <typename Slots>
  static Status plan_with(const Arguments& args, detail::SplitPlan* plan) {
    return detail::plan_splits<T, kHeadDim, Slots>(args.kv.batch_size, args.kv.num_kv_heads, args.num_qo_heads,
                                                   args.kv.max_seq_len(), Policy::kDenseChunkAlign,
                                                   Policy::kDenseMinChunk, plan);
  }

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
