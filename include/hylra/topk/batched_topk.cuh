// BatchedTopK<ScoreT>: the k best scores of each of R rows, as int32 positions (and optionally
// their scores), in one launch. Exact, with the rules of reference::topk_row: ties at the k-th
// score go to the lower position, NaN is never selected, -0 equals +0, a row with fewer than k
// selectable scores returns them all then -1. Rows may have different lengths; the first
// `sink_tokens` and last `recent_tokens` positions of a row are always selected and count inside k.
// Output order is unspecified but deterministic (the same inputs give bitwise the same output)
// unless `sorted` is set; positions can be translated through a block table on the way out.
//
// Two methods (Arguments::method):
// * cluster selection (cluster_select.cuh), the default: one thread-block cluster per row, radix
//   histograms exchanged through distributed shared memory; no workspace.
// * sampled-threshold selection (sampled_select.cuh), on request and only where the shape rule
//   (kSampledMin*, host values only) says it pays: a threshold per row from a sample, one
//   streaming compare pass that keeps the ~1.5 k keys above it, then an exact select among
//   those; needs workspace_size(args) bytes. For launches of many long rows of scores without
//   structure along the row, where the cluster method needs several waves of clusters: 1.2-1.6x
//   faster there on H200. Rows the sample misjudges (scores correlated along the row, sorted
//   runs, many ties) are then selected again by the cluster method: the launch costs both.
// Both select the same set, each in its own deterministic order.
#pragma once

#include <cub/block/block_radix_sort.cuh>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "hylra/core/dtype.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"
#include "hylra/topk/cluster_select.cuh"
#include "hylra/topk/radix_key.cuh"
#include "hylra/topk/sampled_select.cuh"
#include "hylra/topk/topk_arguments.cuh"

HYLRA_NAMESPACE_BEGIN

// Tuning knobs of BatchedTopK (Hopper defaults). Another policy is a struct with the same members,
// passed as BatchedTopK's second template argument.
struct BatchedTopKPolicy {
  static constexpr int kThreads = 512;
  // Segments of at most kSmallSegmentKeys keys run in CTAs of kSmallSegmentThreads instead:
  // measured on H200 (bench/RESULTS.md), 256 threads beat 512 on 1K- and 4K-key segments
  // (8x8K fp32 11.2 vs 12.7 us, 64x32K as 8 x 4K 33.2 vs 36.2) and lose on 8K-key ones (64x32K
  // as 4 x 8K 26.9 vs 24.3) and 16K-key ones (64x128K 55.1 vs 48.3).
  static constexpr int kSmallSegmentKeys = 4096;
  static constexpr int kSmallSegmentThreads = 256;
  // Bits of the first radix digit, counted while the row is loaded (capped at the key width).
  // Wide, so that the k-th score's bucket is narrow: 11 bits of an fp32 or bf16 key are a
  // quarter of an octave, about 2 % of a normal row around its top 2 %. 12 bits halve the
  // candidates but measured 4-14 % slower on every benchmark shape (bench/RESULTS.md): twice the
  // bins to clear, push across the cluster and scan.
  static constexpr int kFirstDigitBits = 11;
  // The k-th score's first-digit bucket is refined in one CTA when it holds at most this many
  // keys (kCandidateCapacity / kThreads per thread); otherwise by further cluster-wide passes.
  // A normal row's bucket holds ~2,200 keys at k = 2048 of 128K. 5 slots per thread instead of 8
  // measured 5-9 % faster wherever the refine runs (H200, bench/RESULTS.md, session 11: 1 x 128K
  // fp32 16.2 -> 14.8 us, 256 x 128K 135.3 -> 125.3); 2048 slots overflow and fall back.
  static constexpr int kCandidateCapacity = 2560;
  // Segments of fewer keys skip that refine and use the cluster-wide passes: re-scanning a few
  // thousand keys in shared memory is cheaper than the refine's barriers and block-wide passes.
  // So do launches that fit one wave, where the passes are short (topk_launch_shape).
  // Measured on H200 (bench/RESULTS.md, session 11): 8 x 32K (4K-key segments) 16.7 -> 13.5 us
  // fp32, 128 x 6000 16.0 -> 14.8, 256 x 8K 21.4 -> 20.3; 16K-key segments keep the refine
  // (64 x 128K fp32 44.7 against 51.0 without it).
  static constexpr int kMinRefineSegmentKeys = 16384;
  // Digits of those further passes: 8 bits (measured 3-8 % faster than 11 for the all-pass
  // method, bench/RESULTS.md): 256 bins are cheap to push across the cluster and scan.
  static constexpr int kDigitBits = 8;
  static constexpr int kMaxClusterSize = 8;  // the portable cluster size; 16 is allowed on Hopper
  // A row is split further while its segments exceed this many bytes of keys, so that several
  // CTAs fit on one SM and one loads while another computes.
  static constexpr int kPreferredSegmentBytes = 64 * 1024;
  // ... or while splitting once more keeps the grid within one wave and segments of at least
  // kMinSegmentKeys keys. Never past one wave: 64 x 32K in 4 CTAs of 8K keys per row took 24.2 us
  // where 8 CTAs of 4K (two waves) took 34.6 (bench/RESULTS.md). The kernel's registers are
  // capped so that kCtasPerSm CTAs fit on one SM.
  static constexpr int kCtasPerSm = 2;
  static constexpr int kMinSegmentKeys = 1024;
  // A cluster's CTAs share one GPC, so fewer than kCtasPerSm x SMs CTAs run at once: on the H200,
  // 240 of 264 in clusters of 8 and 248 in clusters of 4 (CTA start times, bench/RESULTS.md).
  // One wave is planned as this share of kCtasPerSm x SMs.
  static constexpr int kWavePercent = 90;
  // Segments larger than this are not cached in shared memory; later passes re-read the scores.
  // With the ~33 KB of histograms and the static shared memory this stays under the 227 KB a
  // CTA may have.
  static constexpr int kMaxSegmentBytes = 176 * 1024;
  static constexpr int kLoadUnroll = 4;  // 16-byte loads in flight per thread
  // Sorted output: one CTA sorts a row's selection in registers.
  static constexpr int kSortThreads = 512;
  static constexpr int kSortItemsPerThread = 8;
  static constexpr int kMaxSortedK = kSortThreads * kSortItemsPerThread;
  // Sampled-threshold method (Arguments::method = kSampled): taken for launches of at least
  // kSampledMinRows rows of at least kSampledMinCols scores and kSampledMinKeys scores in all (and
  // a candidate bound within kSampledCapacity). Measured on H200 (bench/RESULTS.md): it wins where
  // the cluster method needs more than one wave of CTAs (64 x 128K: 8 M scores) and loses where
  // one wave holds every row (64 x 32K, 8 x 128K), its three dependent kernels then costing more.
  static constexpr int kSampledMinRows = 16;
  static constexpr int kSampledMinCols = 32768;
  static constexpr std::int64_t kSampledMinKeys = std::int64_t{1} << 22;
  static constexpr int kSampleThreads = 512;
  static constexpr int kSampleKeys = 8192;  // sampled per row, in 128-byte runs
  static constexpr int kSampleDigitBits = 11;
  static constexpr int kSampleCtasPerSm = 2;
  // Margin of the sampled threshold in standard deviations: a row gets fewer than k candidates
  // (and falls back) with probability ~3e-6 for scores in random order.
  static constexpr float kSampleSigmas = 4.5f;
  // Filter CTAs: kFilterThreads threads compare kFilterKeysPerThread keys each, of a tile that one
  // bulk copy brings into shared memory (8K keys: 32 KB of fp32). Measured on H200 (bench/RESULTS.md):
  // six such CTAs per SM beat three of 16K keys, 16K-key tiles loaded into registers, and
  // persistent CTAs streaming tiles through two or more buffers.
  static constexpr int kFilterThreads = 256;
  static constexpr int kFilterKeysPerThread = 32;
  static constexpr int kFilterCtasPerSm = 6;
  static constexpr int kSampledCapacity = 4096;  // candidates per row; a multiple of kThreads
  static constexpr int kSelectDigitBits = 11;
  static constexpr int kMaxSampledTiles = 1024;  // tiles per row: rows up to 16M fp32 scores
};

namespace detail {

// Orders each row's selection best first (ties by position, NaN scores last, -1 padding at the
// end), then translates positions and writes values. One CTA per row; k <= kMaxSortedK.
template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kSortThreads)
    sort_rows_kernel(const BatchedTopKArguments<ScoreT> args) {
  constexpr int kThreads = Policy::kSortThreads;
  constexpr int kItems = Policy::kSortItemsPerThread;
  using Key = RadixKey<ScoreT>;
  // (score key, complemented position): descending order is best score first, then lowest
  // position; padding is 0 and sorts last; a NaN score (forced position) sorts just above it.
  using BlockSort = cub::BlockRadixSort<unsigned long long, kThreads, kItems>;
  __shared__ typename BlockSort::TempStorage sort_storage;

  const int row = blockIdx.x;
  const std::int64_t out_row = static_cast<std::int64_t>(row) * args.k;
  const ScoreT* const row_scores = args.scores + static_cast<std::int64_t>(row) * args.row_stride;
  unsigned long long keys[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int j = threadIdx.x * kItems + i;
    const int pos = j < args.k ? args.indices[out_row + j] : -1;
    keys[i] = pos < 0 ? 0ull
                      : (static_cast<unsigned long long>(Key::make(row_scores[pos], args.largest)) << 32) |
                            (0xFFFFFFFFu - static_cast<unsigned>(pos));
  }
  BlockSort(sort_storage).SortDescendingBlockedToStriped(keys);
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int j = i * kThreads + threadIdx.x;
    if (j >= args.k) continue;
    const int pos = keys[i] == 0 ? -1 : static_cast<int>(0xFFFFFFFFu - static_cast<unsigned>(keys[i]));
    args.indices[out_row + j] = pos < 0 ? -1 : translate_position(args, row, pos);
    if (args.values) args.values[out_row + j] = pos < 0 ? nan_score<ScoreT>() : row_scores[pos];
  }
}


}  // namespace detail

template <typename ScoreT, typename PolicyT = BatchedTopKPolicy>
class BatchedTopK {
 public:
  using Arguments = BatchedTopKArguments<ScoreT>;
  using Policy = PolicyT;

  // Checks everything the host can see; device contents (lengths, block table) are clamped or
  // turned into -1 by the kernel, never read out of bounds.
  static Status can_implement(const Arguments& args) {
    if (args.scores == nullptr) return {StatusCode::kNullPointer, "scores"};
    if (args.indices == nullptr) return {StatusCode::kNullPointer, "indices"};
    if (args.num_rows <= 0) return {StatusCode::kInvalidShape, "num_rows must be positive"};
    if (args.num_cols <= 0) return {StatusCode::kInvalidShape, "num_cols must be positive"};
    if (args.row_stride < args.num_cols) return {StatusCode::kInvalidStride, "row_stride must be >= num_cols"};
    if (args.k <= 0) return {StatusCode::kInvalidValue, "k must be positive"};
    if (args.method != TopKMethod::kCluster && args.method != TopKMethod::kSampled)
      return {StatusCode::kInvalidValue, "method must be kCluster or kSampled"};
    if (args.sorted && args.k > Policy::kMaxSortedK)
      return {StatusCode::kNotSupported, "sorted output needs k <= 4096"};
    if (args.sink_tokens < 0 || args.recent_tokens < 0)
      return {StatusCode::kInvalidValue, "sink_tokens and recent_tokens must be >= 0"};
    if (static_cast<std::int64_t>(args.num_rows) * Policy::kMaxClusterSize > 0x7FFFFFFF)
      return {StatusCode::kInvalidShape, "num_rows too large for one launch"};
    if (args.block_table != nullptr) {
      if (args.page_size <= 0) return {StatusCode::kInvalidValue, "page_size must be positive"};
      if (args.max_pages <= 0) return {StatusCode::kInvalidShape, "max_pages must be positive"};
      if (args.block_table_stride < args.max_pages)
        return {StatusCode::kInvalidStride, "block_table_stride must be >= max_pages"};
      if (args.rows_per_sequence <= 0) return {StatusCode::kInvalidValue, "rows_per_sequence must be positive"};
    }
    return Status::success();
  }

  // Bytes of workspace run() needs for `args`: zero unless it takes the sampled method.
  static std::size_t workspace_size(const Arguments& args) {
    const detail::SampledPlan<ScoreT, Policy> plan(args);
    return can_implement(args).ok() && plan.applies(args) ? plan.workspace_bytes(args) : 0;
  }

  // `workspace`: at least workspace_size(args) bytes, 16-byte aligned, any contents; not used
  // when workspace_size(args) is zero.
  static Status run(const Arguments& args, void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    const detail::SampledPlan<ScoreT, Policy> plan(args);
    if (plan.applies(args)) {
      if (workspace_bytes < plan.workspace_bytes(args) || workspace == nullptr)
        return {StatusCode::kWorkspaceTooSmall, "workspace: BatchedTopK::workspace_size(args) bytes"};
      if (reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0)
        return {StatusCode::kMisaligned, "workspace must be 16-byte aligned"};
      HYLRA_RETURN_IF_ERROR(launch_sampled(args, plan, workspace, stream));
    } else {
      HYLRA_RETURN_IF_ERROR(launch_cluster(args, stream));
    }
    if (args.sorted) {
      detail::sort_rows_kernel<ScoreT, Policy><<<args.num_rows, Policy::kSortThreads, 0, stream>>>(args);
      HYLRA_RETURN_IF_ERROR(check_launch());
    }
    return Status::success();
  }

 private:
  static Status launch_sampled(const Arguments& args, const detail::SampledPlan<ScoreT, Policy>& plan, void* workspace,
                               cudaStream_t stream) {
    const auto w = detail::SampledWorkspace<ScoreT>::in(workspace, args.num_rows, plan.tiles_per_row,
                                                            Policy::kSampledCapacity);
    detail::sample_threshold_kernel<ScoreT, Policy><<<args.num_rows, Policy::kSampleThreads, 0, stream>>>(args, w);
    HYLRA_RETURN_IF_ERROR(check_launch());

    // A programmatic dependent of the sample kernel: its CTAs load their tiles while it runs.
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    constexpr int tile_bytes = detail::FilterTile<ScoreT, Policy>::kBytes;
    const auto filter = detail::filter_candidates_kernel<ScoreT, Policy>;
    HYLRA_RETURN_IF_ERROR(set_dynamic_smem(filter, tile_bytes));
    config.gridDim = dim3(static_cast<unsigned>(args.num_rows * plan.tiles_per_row));
    config.blockDim = dim3(Policy::kFilterThreads);
    config.dynamicSmemBytes = static_cast<std::size_t>(tile_bytes);
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaLaunchKernelEx(&config, filter, args, w, plan.tiles_per_row)));

    // A programmatic dependent of the filter kernel: launched while its last wave runs.
    constexpr int smem_bytes = detail::SampledPlan<ScoreT, Policy>::select_smem_bytes();
    const auto select = detail::select_candidates_kernel<ScoreT, Policy>;
    HYLRA_RETURN_IF_ERROR(set_dynamic_smem(select, smem_bytes));
    config.gridDim = dim3(static_cast<unsigned>(args.num_rows));
    config.blockDim = dim3(Policy::kThreads);
    config.dynamicSmemBytes = static_cast<std::size_t>(smem_bytes);
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaLaunchKernelEx(&config, select, args, w, plan.tiles_per_row)));

    // The rows whose sample misled, by the cluster method: a programmatic dependent of the select kernel.
    return launch_cluster(args, stream, &w);
  }

  // The cluster method over every row; or, given the sampled method's workspace, over the rows its
  // sample misled, as a programmatic dependent of its select kernel.
  static Status launch_cluster(const Arguments& args, cudaStream_t stream,
                               const detail::SampledWorkspace<ScoreT>* misled = nullptr) {
    int device = 0, num_sms = 0;
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaGetDevice(&device)));
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device)));
    const detail::TopKLaunchShape shape = detail::topk_launch_shape<ScoreT, Policy>(args.num_rows, args.num_cols, num_sms);
    const bool vectorized = detail::rows_vectorized(args);
    using detail::BucketFinish;
    // Small segments have at most 16 keys per thread: never the refine, never sparse passes.
    static_assert(Policy::kSmallSegmentKeys < Policy::kMinRefineSegmentKeys, "the small-segment kernel never refines");
    static_assert(Policy::kSmallSegmentKeys / Policy::kSmallSegmentThreads < detail::kChunkKeys,
                  "the small-segment kernel never holds a whole chunk of keys per thread");
    if (shape.segment <= Policy::kSmallSegmentKeys)
      return launch_cluster_kernel<detail::SmallSegmentPolicy<Policy>, BucketFinish::kPasses>(args, shape, vectorized,
                                                                                            misled, stream);
    return shape.refine
               ? launch_cluster_kernel<Policy, BucketFinish::kRefine>(args, shape, vectorized, misled, stream)
               : launch_cluster_kernel<Policy, BucketFinish::kSparsePasses>(args, shape, vectorized, misled, stream);
  }

  template <typename KernelPolicy, detail::BucketFinish kFinish>
  static Status launch_cluster_kernel(const Arguments& args, const detail::TopKLaunchShape& shape, bool vectorized,
                                      const detail::SampledWorkspace<ScoreT>* misled, cudaStream_t stream) {
    const int smem_bytes =
        static_cast<int>(sizeof(detail::TopKExchange<ScoreT, KernelPolicy>)) +
        (shape.cached ? shape.segment * static_cast<int>(sizeof(typename RadixKey<ScoreT>::Bits)) : 0);
    cudaLaunchAttribute attributes[2];
    attributes[0].id = cudaLaunchAttributeClusterDimension;
    attributes[0].val.clusterDim.x = static_cast<unsigned>(shape.cluster_size);
    attributes[0].val.clusterDim.y = 1;
    attributes[0].val.clusterDim.z = 1;
    attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[1].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(args.num_rows * shape.cluster_size));
    config.blockDim = dim3(KernelPolicy::kThreads);
    config.dynamicSmemBytes = static_cast<std::size_t>(smem_bytes);
    config.stream = stream;
    config.attrs = attributes;
    config.numAttrs = misled ? 2 : 1;
    const auto launch = [&](auto kernel, auto... kernel_args) {
      // Raised on every call: the histograms alone pass the 48 KB a kernel gets without asking.
      HYLRA_RETURN_IF_ERROR(
          cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes)));
      if (KernelPolicy::kMaxClusterSize > 8)
        HYLRA_RETURN_IF_ERROR(
            cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1)));
      return cuda_status(cudaLaunchKernelEx(&config, kernel, kernel_args...));
    };
    const auto launch_for = [&](auto access) {
      constexpr detail::SegmentAccess kAccess = decltype(access)::value;
      return misled ? launch(detail::misled_rows_kernel<ScoreT, KernelPolicy, kFinish, kAccess>, args, *misled,
                             shape.segment, shape.cached, vectorized)
                    : launch(detail::cluster_select_kernel<ScoreT, KernelPolicy, kFinish, kAccess>, args, shape.segment,
                             shape.cached, vectorized);
    };
    using detail::SegmentAccess;
    // The refine's kernel reads as the flags say even in the common case: specialised, it ran
    // 1.0-1.4 us slower in bf16 on launches of several waves (H200, bench/RESULTS.md, session 15).
    if constexpr (kFinish != detail::BucketFinish::kRefine)
      if (shape.cached && vectorized)
        return launch_for(std::integral_constant<SegmentAccess, SegmentAccess::kCachedVectorized>{});
    return launch_for(std::integral_constant<SegmentAccess, SegmentAccess::kAny>{});
  }
};

HYLRA_NAMESPACE_END
