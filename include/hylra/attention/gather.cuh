// GatherDecode: one query token per sequence attends only to the tokens an IndexList selects
// (layout/index_list.hpp): per (sequence, KV head) rows or one row shared by all heads, token ids
// or block ids of indices.block_size tokens. Entries past lengths, -1 padding, ids past the
// sequence and tokens of a block past the sequence end are skipped; a duplicated id contributes
// once per occurrence (top-k never writes duplicates; order does not matter). Logical ids go
// through the block table. The selection is split over CTAs and merged by LSE like dense decode;
// an empty selection gives out = 0, lse = -inf. Layouts, types and GQA rules are DenseDecode's.
// Reference: reference::gather_decode. Reads O(batch * num_kv_heads * k_max * block_size *
// head_dim) bytes of K and V.
#pragma once

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>

#include "hylra/attention/split_kv.cuh"
#include "hylra/layout/index_list.hpp"

HYLRA_NAMESPACE_BEGIN

// Arguments do not depend on the head dim, so one struct serves every instantiation.
template <typename T>
struct GatherDecodeArguments {
  const T* q = nullptr;
  PagedKvCache<const T> kv;
  IndexList indices;
  int num_qo_heads = 0;
  float sm_scale = 0.0f;
  T* out = nullptr;
  float* lse = nullptr;  // optional
};

template <typename T, int kHeadDim>
class GatherDecode : public detail::SplitKvDecode<GatherDecode<T, kHeadDim>, GatherDecodeArguments<T>, T, kHeadDim,
                                                  detail::GatheredSlots> {
 public:
  using Arguments = GatherDecodeArguments<T>;

  static Status can_implement(const Arguments& args) {
    HYLRA_RETURN_IF_ERROR((detail::check_decode_args<T, kHeadDim>(args.q, args.num_qo_heads, args.kv, args.out, args.sm_scale)));
    HYLRA_RETURN_IF_ERROR(validate(args.indices, args.kv.num_kv_heads));
    if (args.indices.batch_size != args.kv.batch_size)
      return {StatusCode::kInvalidShape, "indices.batch_size differs from kv.batch_size"};
    if (static_cast<long long>(args.indices.k_max) * args.indices.block_size > INT_MAX / 2)
      return {StatusCode::kNotSupported, "indices.k_max * block_size must stay below 2^30"};
    return Status::success();
  }

  // How run() splits the rows into chunks and merges them, after can_implement (host values only;
  // for tests and tuning). workspace_size(args, &bytes) and run(args, workspace, bytes, stream)
  // come from detail::SplitKvDecode.
  static Status plan(const Arguments& args, detail::SplitPlan* plan) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    return detail::plan_splits<T, kHeadDim, detail::GatheredSlots>(
        args.kv.batch_size, args.kv.num_kv_heads, args.num_qo_heads, args.indices.k_max * args.indices.block_size,
        Policy::kGatherChunkAlign, Policy::kGatherMinChunk, plan);
  }

 private:
  using Policy = detail::DecodePolicy<kHeadDim, true>;
  friend class detail::SplitKvDecode<GatherDecode, Arguments, T, kHeadDim, detail::GatheredSlots>;

  static detail::DecodeParams<T> params(const Arguments& args) {
    auto params = detail::make_decode_params(args.q, args.num_qo_heads, args.kv, args.sm_scale, args.out, args.lse);
    params.indices = args.indices;
    params.block_shift = __builtin_ctz(static_cast<unsigned>(args.indices.block_size));
    return params;
  }
};

// Runtime head-dim dispatch over {64, 128, 256}.
template <typename T>
Status gather_decode_workspace_size(const GatherDecodeArguments<T>& args, std::size_t* bytes) {
  return detail::decode_workspace_size<GatherDecode, T>(args, bytes);
}

template <typename T>
Status gather_decode(const GatherDecodeArguments<T>& args, void* workspace, std::size_t workspace_bytes,
                     cudaStream_t stream) {
  return detail::run_decode<GatherDecode, T>(args, workspace, workspace_bytes, stream);
}

HYLRA_NAMESPACE_END
