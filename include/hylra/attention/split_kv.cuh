// Host side of split-KV decode, shared by DenseDecode, GatherDecode and DenseScores: how many chunks each
// (sequence, KV head) is split into, the workspace that holds the partial states, and the launch
// of decode_kernel followed by MergeStates. Everything is sized from host values (batch, heads,
// slot capacity, the device's SM count and occupancy), never from device data.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "hylra/attention/decode_kernel.cuh"
#include "hylra/attention/merge.cuh"
#include "hylra/core/dispatch.hpp"
#include "hylra/core/launch.hpp"

HYLRA_NAMESPACE_BEGIN
namespace detail {

struct SplitPlan {
  int num_splits = 1;
  int chunk_slots = 0;
  int heads_per_cta = 1;  // KV heads per CTA (PackedHeads when above 1)
  std::size_t workspace_bytes = 0;  // partial O then partial LSE, fp32; 0 for one chunk or scores only
};

// SM count of the current device and resident decode CTAs per SM, queried once per device (and
// the kernel's shared-memory limit raised then), so run() adds only a cudaGetDevice per call.
template <typename T, int kHeadDim, typename Slots>
Status decode_occupancy(int* num_sms, int* per_sm) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices];  // (num_sms << 8 | per_sm) + 1; 0 = not queried
  int device = 0;
  HYLRA_RETURN_IF_ERROR(cuda_status(cudaGetDevice(&device)));
  int packed = device < kMaxDevices ? known[device].load(std::memory_order_relaxed) : 0;
  if (packed == 0) {
    constexpr int kSmemBytes = static_cast<int>(DecodeSmemOf<T, kHeadDim, Slots>::kBytes);
    auto kernel = decode_kernel<T, kHeadDim, Slots>;
    int sms = 0, ctas = 0;
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)));
    HYLRA_RETURN_IF_ERROR(set_dynamic_smem(kernel, kSmemBytes));
    HYLRA_RETURN_IF_ERROR(cuda_status(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, DecodePolicy<kHeadDim, Slots::kGather>::kThreads, kSmemBytes)));
    if (ctas <= 0 || ctas > 255) return {StatusCode::kNotSupported, "decode kernel does not fit on this device"};
    packed = (sms << 8 | ctas) + 1;
    if (device < kMaxDevices) known[device].store(packed, std::memory_order_relaxed);
  }
  *num_sms = (packed - 1) >> 8;
  *per_sm = (packed - 1) & 255;
  return Status::success();
}

// A wave of CTAs counts as full enough at this fraction of the device's resident CTA slots.
constexpr double kSplitWaveEfficiency = 0.95;

// Fewest chunks (multiples of `align`, at least `min_chunk` slots unless one chunk covers all)
// that fill the device's CTA slots to kSplitWaveEfficiency; the best filling when none does.
template <typename T, int kHeadDim, typename Slots>
Status plan_splits(int batch, int num_kv_heads, int num_qo_heads, int slot_capacity, int align, int min_chunk,
                   SplitPlan* plan) {
  int num_sms = 0, per_sm = 0;
  HYLRA_RETURN_IF_ERROR((decode_occupancy<T, kHeadDim, Slots>(&num_sms, &per_sm)));
  const std::int64_t slots = static_cast<std::int64_t>(num_sms) * per_sm;
  const std::int64_t pairs = static_cast<std::int64_t>(batch) * (num_kv_heads / Slots::kHeadsPerTile);
  const int capacity = slot_capacity > 0 ? slot_capacity : 1;
  const int max_splits = capacity > min_chunk ? (capacity + min_chunk - 1) / min_chunk : 1;
  double best_efficiency = -1.0;
  for (int want = 1; want <= max_splits; ++want) {
    const int chunk = ((capacity + want - 1) / want + align - 1) / align * align;
    const int splits = (capacity + chunk - 1) / chunk;
    const std::int64_t ctas = pairs * splits;
    const double efficiency = static_cast<double>(ctas) / (static_cast<double>((ctas + slots - 1) / slots) * slots);
    if (efficiency > best_efficiency) {
      best_efficiency = efficiency;
      plan->num_splits = splits;
      plan->chunk_slots = chunk;
    }
    if (efficiency >= kSplitWaveEfficiency) break;
  }
  plan->heads_per_cta = Slots::kHeadsPerTile;
  const std::size_t states = static_cast<std::size_t>(batch) * num_qo_heads * plan->num_splits;
  plan->workspace_bytes = plan->num_splits == 1 || !Slots::kAttend ? 0 : states * (kHeadDim + 1) * sizeof(float);
  return Status::success();
}

// Whether `heads` adjacent KV heads can share a dense decode CTA (PackedHeads): a token's rows of
// them adjacent in memory (NHD pages, contiguous caches), token scores or none, the heads divide
// num_kv_heads and their query rows fit the MMA's 16.
template <int kHeadDim, typename T>
bool can_pack_heads(const PagedKvCache<const T>& kv, int num_qo_heads, const ScoreExport& scores, int heads) {
  using Policy = DecodePolicy<kHeadDim, false>;
  return heads >= 1 && heads <= Policy::kMaxPackedHeads && (heads & (heads - 1)) == 0 &&
         (heads == 1 || (kv.stride_head == kHeadDim && (scores.scores == nullptr || scores.block_size == 1) &&
                         kv.num_kv_heads % heads == 0 && num_qo_heads / kv.num_kv_heads * heads <= Policy::kMaxGroup));
}

// The check of a caller's kv_heads_per_cta (0: chosen by plan()).
template <int kHeadDim, typename T>
Status check_kv_heads_per_cta(int heads, const PagedKvCache<const T>& kv, int num_qo_heads, const ScoreExport& scores) {
  if (heads != 0 && heads != 1 && heads != 2 && heads != 4)
    return {StatusCode::kInvalidValue, "kv_heads_per_cta must be 0 (chosen by plan), 1, 2 or 4"};
  if (heads > 1 && !can_pack_heads<kHeadDim>(kv, num_qo_heads, scores, heads))
    return {StatusCode::kNotSupported,
            "kv_heads_per_cta > 1 needs adjacent heads (NHD), token scores or none, num_kv_heads divisible by it, "
            "group * it <= 16, and 4 only at head dims up to 128"};
  return Status::success();
}

// Packed chunks shorter than this many tokens measured slower on the H200 (DenseDecode 8 x 8K at
// 1024: 1.7 %; DenseScores 1 x 128K at 1024: 0.7 %).
constexpr int kMinPackedChunk = 4096;
// Packing multiplies the chunks per row by about the heads packed, and their merge grows with
// them: DenseDecode paid 1.3-4 % at batch 4-32 with at most this many per row and lost 3.5 % at
// batch 1 x 32K with 64 (bench/RESULTS.md, session 9).
constexpr int kMaxPackedSplits = 8;
// Where a head's row of a token is at most kShortRowBytes (d = 64 in 16 bits), packing pays even
// when it adds a merge the unpacked split did not have, with chunks of at least kMinNewMergeChunk
// tokens: d = 64 at 32 x 32K and 32 x 128K read 3-4 % faster, 32 x 8K (chunks of 4096) no faster;
// d = 128 gained nothing (bench/RESULTS.md, session 10).
constexpr int kShortRowBytes = 128;
constexpr int kMinNewMergeChunk = 8192;

// Whether a packed split of dense decode (Base: DenseSlots or ScoredSlots) is taken over the
// unpacked one, for a head's token rows of `row_bytes`: it keeps one chunk per row, or its chunks
// keep kMinPackedChunk tokens and, where chunks are merged (Base::kAttend), the packed split
// merges at most kMaxPackedSplits and the unpacked one merged already (or rows are short and
// chunks long).
template <typename Base>
bool packing_pays(const SplitPlan& unpacked, const SplitPlan& packed, int row_bytes) {
  if (packed.num_splits == 1) return true;
  if (packed.chunk_slots < kMinPackedChunk) return false;
  if (!Base::kAttend) return true;
  if (packed.num_splits > kMaxPackedSplits) return false;
  return unpacked.num_splits > 1 || (row_bytes <= kShortRowBytes && packed.chunk_slots >= kMinNewMergeChunk);
}

// The split of dense decode (Base: DenseSlots or ScoredSlots) with `heads` KV heads per CTA.
template <typename T, int kHeadDim, typename Base>
Status plan_dense_with(int heads, const PagedKvCache<const T>& kv, int num_qo_heads, SplitPlan* plan) {
  using Policy = DecodePolicy<kHeadDim, false>;
  const auto split = [&](auto slots) {
    return plan_splits<T, kHeadDim, decltype(slots)>(kv.batch_size, kv.num_kv_heads, num_qo_heads, kv.max_seq_len(),
                                                     Policy::kDenseChunkAlign, Policy::kDenseMinChunk, plan);
  };
  if constexpr (Policy::kMaxPackedHeads >= 4)
    if (heads == 4) return split(PackedHeads<Base, 4>{});
  if (heads == 2) return split(PackedHeads<Base, 2>{});
  return split(Base{});
}

// The split of dense decode: `forced` KV heads per CTA (kv_heads_per_cta), or with 0 the most
// heads that can_pack_heads allows and packing_pays, else one.
template <typename T, int kHeadDim, typename Base>
Status plan_dense(int forced, const PagedKvCache<const T>& kv, int num_qo_heads, const ScoreExport& scores,
                  SplitPlan* plan) {
  if (forced > 0) return plan_dense_with<T, kHeadDim, Base>(forced, kv, num_qo_heads, plan);
  HYLRA_RETURN_IF_ERROR((plan_dense_with<T, kHeadDim, Base>(1, kv, num_qo_heads, plan)));
  for (int heads = DecodePolicy<kHeadDim, false>::kMaxPackedHeads; heads > 1; heads /= 2) {
    if (!can_pack_heads<kHeadDim>(kv, num_qo_heads, scores, heads)) continue;
    SplitPlan packed;
    HYLRA_RETURN_IF_ERROR((plan_dense_with<T, kHeadDim, Base>(heads, kv, num_qo_heads, &packed)));
    if (packing_pays<Base>(*plan, packed, kHeadDim * static_cast<int>(sizeof(T)))) {
      *plan = packed;
      break;
    }
  }
  return Status::success();
}

// Launches the chunks and, when there are several outputs to combine, their merge into
// params.out / params.lse.
// Called after plan_splits, whose occupancy query raised the kernel's shared-memory limit.
template <typename T, int kHeadDim, typename Slots>
Status launch_decode(DecodeParams<T> params, const SplitPlan& plan, void* workspace, std::size_t workspace_bytes,
                     cudaStream_t stream) {
  if constexpr (!Slots::kGather && Slots::kHeadsPerTile == 1) {  // the plan may pack heads (plan_dense)
    if (plan.heads_per_cta == 2)
      return launch_decode<T, kHeadDim, PackedHeads<Slots, 2>>(params, plan, workspace, workspace_bytes, stream);
    if constexpr (DecodePolicy<kHeadDim, false>::kMaxPackedHeads >= 4)
      if (plan.heads_per_cta == 4)
        return launch_decode<T, kHeadDim, PackedHeads<Slots, 4>>(params, plan, workspace, workspace_bytes, stream);
  }
  if (plan.heads_per_cta != Slots::kHeadsPerTile) return {StatusCode::kInvalidValue, "split plan of another kernel"};
  if (workspace_bytes < plan.workspace_bytes) return {StatusCode::kWorkspaceTooSmall, "decode workspace"};
  if (plan.workspace_bytes > 0 && (workspace == nullptr || reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0))
    return {StatusCode::kMisaligned, "decode workspace must be 16-byte aligned"};
  const std::size_t states = static_cast<std::size_t>(params.kv.batch_size) * params.num_qo_heads * plan.num_splits;
  params.num_splits = plan.num_splits;
  params.chunk_slots = plan.chunk_slots;
  params.partial_o = plan.num_splits > 1 ? static_cast<float*>(workspace) : nullptr;
  params.partial_lse = plan.num_splits > 1 ? params.partial_o + states * kHeadDim : nullptr;

  constexpr int kSmemBytes = static_cast<int>(DecodeSmemOf<T, kHeadDim, Slots>::kBytes);
  const dim3 grid(plan.num_splits, params.kv.num_kv_heads / Slots::kHeadsPerTile, params.kv.batch_size);
  decode_kernel<T, kHeadDim, Slots><<<grid, DecodePolicy<kHeadDim, Slots::kGather>::kThreads, kSmemBytes, stream>>>(params);
  HYLRA_RETURN_IF_ERROR(check_launch());
  if (plan.num_splits == 1 || !Slots::kAttend) return Status::success();

  const PackedStates<float> partials{params.partial_o, params.partial_lse, plan.num_splits, kHeadDim};
  return launch_merge_states(partials, params.kv.batch_size * params.num_qo_heads, params.out, params.lse, true, stream);
}

// The host half of DenseDecode and GatherDecode, in the shape of CUTLASS's device adapters:
// Operation provides can_implement, plan (its split, after can_implement) and params (the kernel
// parameters, to a friend); workspace_size and run follow from them.
template <typename Operation, typename Arguments, typename T, int kHeadDim, typename Slots>
class SplitKvDecode {
 public:
  // Bytes of workspace run() needs (0 when each row fits one chunk). Allocates nothing.
  static Status workspace_size(const Arguments& args, std::size_t* bytes) {
    SplitPlan split_plan;
    HYLRA_RETURN_IF_ERROR(Operation::plan(args, &split_plan));
    *bytes = split_plan.workspace_bytes;
    return Status::success();
  }

  // Graph-capturable: no allocation, no host synchronization, grid sized from host values.
  static Status run(const Arguments& args, void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
    SplitPlan split_plan;
    HYLRA_RETURN_IF_ERROR(Operation::plan(args, &split_plan));
    return launch_decode<T, kHeadDim, Slots>(Operation::params(args), split_plan, workspace, workspace_bytes, stream);
  }
};

// Runtime head-dim dispatch of a decode operation (DenseDecode or GatherDecode) over {64, 128, 256}.
template <template <typename, int> class Operation, typename T, typename Arguments>
Status decode_workspace_size(const Arguments& args, std::size_t* bytes) {
  return dispatch_head_dim(args.kv.head_dim, [&](auto head_dim) {
    return Operation<T, decltype(head_dim)::value>::workspace_size(args, bytes);
  });
}

template <template <typename, int> class Operation, typename T, typename Arguments>
Status run_decode(const Arguments& args, void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
  return dispatch_head_dim(args.kv.head_dim, [&](auto head_dim) {
    return Operation<T, decltype(head_dim)::value>::run(args, workspace, workspace_bytes, stream);
  });
}

// Checks of the query and the cache shared by every decode operation; kv.head_dim must equal kHeadDim.
template <typename T, int kHeadDim>
Status check_query_and_cache(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, float sm_scale) {
  if (q == nullptr) return {StatusCode::kNullPointer, "q"};
  if (reinterpret_cast<std::uintptr_t>(q) % 16 != 0) return {StatusCode::kMisaligned, "q must be 16-byte aligned"};
  HYLRA_RETURN_IF_ERROR(validate(kv));
  if (kv.head_dim != kHeadDim) return {StatusCode::kInvalidShape, "kv.head_dim differs from the instantiated head dim"};
  if (kv.num_kv_heads > 65535 || kv.batch_size > 65535)
    return {StatusCode::kNotSupported, "num_kv_heads and batch_size must be at most 65535"};
  if (num_qo_heads <= 0 || num_qo_heads % kv.num_kv_heads != 0)
    return {StatusCode::kInvalidShape, "num_qo_heads must be a positive multiple of kv.num_kv_heads"};
  if (num_qo_heads / kv.num_kv_heads > DecodePolicy<kHeadDim, false>::kMaxGroup)
    return {StatusCode::kNotSupported, "GQA group (num_qo_heads / num_kv_heads) must be at most 16"};
  if (!(sm_scale == sm_scale) || sm_scale == INFINITY || sm_scale == -INFINITY)
    return {StatusCode::kInvalidValue, "sm_scale must be finite"};
  return Status::success();
}

// The same, plus the output of the operations that attend.
template <typename T, int kHeadDim>
Status check_decode_args(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, const T* out, float sm_scale) {
  HYLRA_RETURN_IF_ERROR((check_query_and_cache<T, kHeadDim>(q, num_qo_heads, kv, sm_scale)));
  if (out == nullptr) return {StatusCode::kNullPointer, "out"};
  if (reinterpret_cast<std::uintptr_t>(out) % 16 != 0) return {StatusCode::kMisaligned, "out must be 16-byte aligned"};
  return Status::success();
}

// Checks of a score export (scores.hpp) for a cache of up to max_seq_len tokens per sequence.
inline Status check_score_export(const ScoreExport& scores, int max_seq_len) {
  if (scores.scores == nullptr) return {StatusCode::kNullPointer, "scores.scores"};
  if (scores.block_size != 1 && !(scores.block_size >= 16 && SupportedPageSizes::contains(scores.block_size)))
    return {StatusCode::kNotSupported, "scores.block_size (supported: 1, 16, 32, 64, 128)"};
  if (!is_valid(scores.dtype))
    return {StatusCode::kInvalidValue, "scores.dtype must be kFloat32, kBFloat16 or kFloat16"};
  if (scores.row_stride < scores.row_length(max_seq_len))
    return {StatusCode::kInvalidStride, "scores.row_stride is below the row length"};
  return Status::success();
}

// Parameters common to both decode operations.
template <typename T>
DecodeParams<T> make_decode_params(const T* q, int num_qo_heads, const PagedKvCache<const T>& kv, float sm_scale,
                                   T* out, float* lse) {
  DecodeParams<T> params{};
  params.q = q;
  params.kv = kv;
  params.num_qo_heads = num_qo_heads;
  params.group = num_qo_heads / kv.num_kv_heads;
  params.page_shift = __builtin_ctz(static_cast<unsigned>(kv.page_size));  // supported sizes are powers of 2
  params.scale_log2 = sm_scale * 1.4426950408889634f;
  params.out = out;
  params.lse = lse;
  return params;
}

// `params` exporting to `scores` (or not, when scores.scores is null).
template <int kHeadDim, typename T>
DecodeParams<T> with_score_export(DecodeParams<T> params, const ScoreExport& scores) {
  constexpr int kTileSlots = DecodePolicy<kHeadDim, false>::kTileSlots;
  params.scores = scores;
  // Block scores need whole blocks inside one warp: runs of block_size / kTileSlots tiles.
  params.run_shift = scores.scores != nullptr && scores.block_size > kTileSlots
                         ? __builtin_ctz(static_cast<unsigned>(scores.block_size / kTileSlots))
                         : 0;
  return params;
}

}  // namespace detail
HYLRA_NAMESPACE_END
