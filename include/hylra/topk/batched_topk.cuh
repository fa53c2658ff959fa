// BatchedTopK<ScoreT>: the k best scores of each of R rows, as int32 positions (and optionally
// their scores), in one launch. Exact, with the rules of reference::topk_row: ties at the k-th
// score go to the lower position, NaN is never selected, -0 equals +0, a row with fewer than k
// selectable scores returns them all then -1. Rows may have different lengths; the first
// `sink_tokens` and last `recent_tokens` positions of a row are always selected and count inside k.
// Output order is unspecified (but deterministic) unless `sorted` is set; positions can be
// translated through a block table on the way out.
//
// Method: one thread-block cluster of up to 8 CTAs per row. Each CTA streams its segment of the
// row once from global memory with 16-byte loads, turns scores into RadixKey bits, builds the
// first digit's histogram on the fly and keeps the keys in shared memory; the remaining radix
// passes (8-bit digits) run on shared memory with 16-byte reads. Each CTA adds its non-zero
// histogram bins into every peer's copy through distributed shared memory, so every CTA picks
// the same bucket from local reads. A last pass numbers the selected positions in index order
// (warp scans, then a scan over warps and over the cluster's CTAs) and writes them. Global traffic: the row read once,
// k outputs written. No workspace, no host synchronisation, a grid fixed by (R, N): the call is
// CUDA-graph capturable.
#pragma once

#include <cooperative_groups.h>
#include <cub/block/block_radix_sort.cuh>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "hylra/core/dtype.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"
#include "hylra/core/vec.cuh"
#include "hylra/topk/radix_bucket.cuh"
#include "hylra/topk/radix_key.cuh"

HYLRA_NAMESPACE_BEGIN

// Tuning knobs of BatchedTopK (Hopper defaults). Another policy is a struct with the same members,
// passed as BatchedTopK's second template argument.
struct BatchedTopKPolicy {
  static constexpr int kThreads = 512;
  // 8-bit digits: fp32 keys take at most 4 passes, 16-bit keys 2. Measured on H200 in two runs
  // (bench/RESULTS.md), they beat 11-bit digits (3 passes) by 3-8 %: later passes are cheap,
  // and 256 bins mean fewer histogram entries to push across the cluster and scan.
  static constexpr int kDigitBits = 8;
  static constexpr int kMaxClusterSize = 8;  // the portable cluster size; 16 is allowed on Hopper
  // A row is split further while its segments exceed this many bytes of keys, so that several
  // CTAs fit on one SM and one loads while another computes.
  static constexpr int kPreferredSegmentBytes = 64 * 1024;
  // ... or while the grid has fewer than kCtasPerSm CTAs per SM and segments keep this many keys.
  static constexpr int kCtasPerSm = 2;
  static constexpr int kMinSegmentKeys = 1024;
  // Segments larger than this are not cached in shared memory; later passes re-read the scores.
  static constexpr int kMaxSegmentBytes = 192 * 1024;
  static constexpr int kLoadUnroll = 4;  // 16-byte loads in flight per thread
  // Sorted output: one CTA sorts a row's selection in registers.
  static constexpr int kSortThreads = 512;
  static constexpr int kSortItemsPerThread = 8;
  static constexpr int kMaxSortedK = kSortThreads * kSortItemsPerThread;
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
};

namespace detail {

// How run() cuts rows into cluster segments; a function of host values only.
struct TopKLaunchShape {
  int cluster_size;
  int segment;  // positions per CTA, a multiple of the vector width
  bool cached;  // keys kept in shared memory
};

template <typename ScoreT, typename P = BatchedTopKPolicy>
TopKLaunchShape topk_launch_shape(int num_rows, int num_cols, int num_sms) {
  using Bits = typename RadixKey<ScoreT>::Bits;
  constexpr int kVec = kVecElems<ScoreT>;
  const auto segment = [&](int cluster) {
    const int per_cta = (num_cols + cluster - 1) / cluster;
    return (per_cta + kVec - 1) / kVec * kVec;
  };
  const auto bytes = [&](int cluster) { return static_cast<std::int64_t>(segment(cluster)) * sizeof(Bits); };
  int cluster = 1;
  while (cluster < P::kMaxClusterSize &&
         (bytes(cluster) > P::kPreferredSegmentBytes ||
          (static_cast<std::int64_t>(num_rows) * cluster < static_cast<std::int64_t>(P::kCtasPerSm) * num_sms &&
           segment(2 * cluster) >= P::kMinSegmentKeys)))
    cluster *= 2;
  return {cluster, segment(cluster), bytes(cluster) <= P::kMaxSegmentBytes};
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

// One cluster per row. In sorted mode it writes untranslated positions only; sort_rows_kernel
// then orders them, translates them and writes the values.
template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kThreads)
    batched_topk_kernel(const BatchedTopKArguments<ScoreT> args, int segment, bool cached, bool vectorized) {
  namespace cg = cooperative_groups;
  constexpr int kThreads = Policy::kThreads;
  constexpr int kWarps = kThreads / 32;
  constexpr int kVec = kVecElems<ScoreT>;
  constexpr int kUnroll = Policy::kLoadUnroll;
  using Key = RadixKey<ScoreT>;
  using Bits = typename Key::Bits;
  using Keys = Vec<Bits, kVec>;
  using Bucket = BlockRadixBucket<kThreads, Policy::kDigitBits>;
  constexpr int kBins = Bucket::kBins;
  constexpr unsigned kAllLanes = 0xFFFFFFFFu;

  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  Bits* const cache = reinterpret_cast<Bits*>(dynamic_smem);  // the segment's keys, whole groups
  // This CTA's counts of the current digit, plus a last bin that absorbs invalid keys so the
  // first pass counts every key without a branch.
  __shared__ int local_histogram[kBins + 1];
  // The cluster's counts, which every CTA adds into every CTA's copy; double-buffered so that
  // peers can add the next digit's counts while this CTA still reads the current ones.
  __shared__ int cluster_histogram[2][kBins];
  __shared__ typename Bucket::TempStorage bucket_storage;
  __shared__ int warp_above[kWarps], warp_tied[kWarps];
  __shared__ int cta_counts[2];   // this CTA's (above, tied), read by the cluster's other CTAs
  __shared__ int cta_offsets[3];  // (above before us, tied before us, above in the whole row)

  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int cluster_size = static_cast<int>(cluster.num_blocks());
  const int row = blockIdx.x / cluster_size;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;

  int length = args.lengths ? args.lengths[row] : args.num_cols;
  length = length < 0 ? 0 : (length > args.num_cols ? args.num_cols : length);
  const int seg_begin = rank * segment;
  const int seg_len = length - seg_begin < 0 ? 0 : (length - seg_begin > segment ? segment : length - seg_begin);
  const int num_groups = (seg_len + kVec - 1) / kVec;  // groups of kVec consecutive positions
  const ScoreT* const row_scores = args.scores + static_cast<std::int64_t>(row) * args.row_stride;
  const ScoreT* const seg_scores = row_scores + seg_begin;
  const int recent_begin = length - args.recent_tokens;
  const auto key_of = [&](int i, ScoreT score) {  // i: position within the segment
    const int pos = seg_begin + i;
    return pos < args.sink_tokens || pos >= recent_begin ? Key::kForced : Key::make(score, args.largest);
  };
  // Keys of positions [g * kVec, (g + 1) * kVec) of the segment; kInvalid past its end.
  const auto group_keys = [&](int g) {
    Keys keys;
    if (cached) return Keys::load(cache + g * kVec);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const int i = g * kVec + e;
      keys.data[e] = i < seg_len ? key_of(i, seg_scores[i]) : Key::kInvalid;
    }
    return keys;
  };

  if (tid == 0) local_histogram[kBins] = 0;
  for (int b = tid; b < kBins; b += kThreads) {
    local_histogram[b] = 0;
    cluster_histogram[0][b] = 0;
    cluster_histogram[1][b] = 0;
  }
  // Peers add into our cluster_histogram only after this barrier; wait for it after the load.
  auto cleared = cluster.barrier_arrive();
  __syncthreads();

  // Pass 0 fused with the load: the top digit's histogram, and the keys into shared memory.
  constexpr int kTopShift = Key::kBits - Policy::kDigitBits;
  const auto count_top = [&](Bits key) {
    atomicAdd(&local_histogram[key == Key::kInvalid ? kBins : key >> kTopShift], 1);
  };
  // Positions [interior_begin, interior_end) of the segment are neither forced nor past its end:
  // whole groups inside it take their keys without per-position checks (the common case).
  const int interior_begin = args.sink_tokens - seg_begin;
  const int interior_end = (recent_begin - seg_begin < seg_len ? recent_begin - seg_begin : seg_len);
  if (vectorized) {
    for (int first = 0; first < num_groups; first += kThreads * kUnroll) {
      Vec<ScoreT> loaded[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int g = first + u * kThreads + tid;
        if ((g + 1) * kVec <= seg_len) {
          loaded[u] = Vec<ScoreT>::load(seg_scores + g * kVec);
        } else if (g < num_groups) {
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            loaded[u].data[e] = g * kVec + e < seg_len ? seg_scores[g * kVec + e] : nan_score<ScoreT>();
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int g = first + u * kThreads + tid;
        if (g >= num_groups) continue;
        Keys keys;
        if (g * kVec >= interior_begin && (g + 1) * kVec <= interior_end) {
#pragma unroll
          for (int e = 0; e < kVec; ++e) keys.data[e] = Key::make(loaded[u].data[e], args.largest);
        } else {
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            keys.data[e] = g * kVec + e < seg_len ? key_of(g * kVec + e, loaded[u].data[e]) : Key::kInvalid;
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) count_top(keys.data[e]);
        if (cached) keys.store(cache + g * kVec);
      }
    }
  } else {
    for (int i = tid; i < num_groups * kVec; i += kThreads) {
      const Bits key = i < seg_len ? key_of(i, seg_scores[i]) : Key::kInvalid;
      count_top(key);
      if (cached) cache[i] = key;
    }
  }

  // Radix select. Invariant: the row's selection is every valid key whose masked bits exceed
  // `prefix`, plus the first `take` (in position order) whose masked bits equal it. Every CTA of
  // the cluster sees the same summed histograms, so all take the same branches.
  Bits prefix = 0, mask = 0;
  int take = args.k;
  for (int shift = kTopShift, width = Policy::kDigitBits, buffer = 0;; buffer ^= 1) {
    const Bits digit_mask = static_cast<Bits>((1u << width) - 1u);
    if (shift != kTopShift) {
      for (int g = tid; g < num_groups; g += kThreads) {
        const Keys keys = group_keys(g);
#pragma unroll
        for (int e = 0; e < kVec; ++e)
          if (keys.data[e] != Key::kInvalid && (keys.data[e] & mask) == prefix)
            atomicAdd(&local_histogram[(keys.data[e] >> shift) & digit_mask], 1);
      }
    }
    __syncthreads();  // local_histogram complete
    if (shift == kTopShift) cluster.barrier_wait(std::move(cleared));
    // Add our non-zero bins into every CTA's copy (ours included), starting at a different peer
    // in each CTA; zero them for the next digit.
    for (int b = tid; b < kBins; b += kThreads) {
      const int count = local_histogram[b];
      if (count == 0) continue;
      for (int r = 0; r < cluster_size; ++r) {
        const int peer = rank + r < cluster_size ? rank + r : rank + r - cluster_size;
        atomicAdd(cluster.map_shared_rank(&cluster_histogram[buffer][b], peer), count);
      }
      local_histogram[b] = 0;
    }
    // Our copy of the other buffer was last read by us (previous digit) and is next added into
    // after the barrier below: clear it now.
    for (int b = tid; b < kBins; b += kThreads) cluster_histogram[buffer ^ 1][b] = 0;
    cluster.sync();  // every CTA's additions into cluster_histogram[buffer] are visible
    const RadixBucket bucket =
        Bucket(bucket_storage).find([&](int digit) { return cluster_histogram[buffer][digit]; }, take);
    if (bucket.total < take) {  // fewer selectable positions than k: take them all
      take = bucket.total;
      break;
    }
    prefix |= static_cast<Bits>(bucket.digit) << shift;
    mask |= static_cast<Bits>(digit_mask << shift);
    take = bucket.remaining;
    if (bucket.remaining == bucket.count || shift == 0) break;
    width = shift < Policy::kDigitBits ? shift : Policy::kDigitBits;
    shift -= width;
  }

  // Number the selected positions in position order. Warps own contiguous runs of groups; lane l
  // of an iteration holds group base + l, so a warp scan of per-lane counts orders them.
  const int groups_per_warp = ((num_groups + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int warp_first = warp * groups_per_warp;
  const int warp_last = warp_first + groups_per_warp < num_groups ? warp_first + groups_per_warp : num_groups;
  // Bit e of `above` / `tied`: position g * kVec + e is above the threshold / tied with it.
  const auto classify = [&](int g, unsigned& above, unsigned& tied) {
    above = tied = 0;
    if (g >= warp_last) return;
    const Keys keys = group_keys(g);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const Bits masked = keys.data[e] & mask;
      if (keys.data[e] == Key::kInvalid) continue;
      above |= static_cast<unsigned>(masked > prefix) << e;
      tied |= static_cast<unsigned>(masked == prefix) << e;
    }
  };
  int above_count = 0, tied_count = 0;
  for (int base = warp_first; base < warp_last; base += 32) {
    unsigned above, tied;
    classify(base + lane, above, tied);
    above_count += __popc(above);
    tied_count += __popc(tied);
  }
#pragma unroll
  for (int offset = 16; offset >= 1; offset /= 2) {
    above_count += __shfl_xor_sync(kAllLanes, above_count, offset);
    tied_count += __shfl_xor_sync(kAllLanes, tied_count, offset);
  }
  if (lane == 0) {
    warp_above[warp] = above_count;
    warp_tied[warp] = tied_count;
  }
  __syncthreads();
  if (warp == 0) {  // exclusive scan over warps; lane 31 ends with the CTA's totals
    int above = lane < kWarps ? warp_above[lane] : 0, tied = lane < kWarps ? warp_tied[lane] : 0;
    const int own_above = above, own_tied = tied;
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const int a = __shfl_up_sync(kAllLanes, above, offset), t = __shfl_up_sync(kAllLanes, tied, offset);
      if (lane >= offset) above += a, tied += t;
    }
    if (lane < kWarps) {
      warp_above[lane] = above - own_above;
      warp_tied[lane] = tied - own_tied;
    }
    if (lane == 31) {
      cta_counts[0] = above;
      cta_counts[1] = tied;
    }
  }
  cluster.sync();  // cta_counts visible to the cluster
  if (tid == 0) {
    int above_before = 0, tied_before = 0, above_total = 0;
    for (int r = 0; r < cluster_size; ++r) {
      const int* counts = cluster.map_shared_rank(cta_counts, r);
      if (r < rank) above_before += counts[0], tied_before += counts[1];
      above_total += counts[0];
    }
    cta_offsets[0] = above_before;
    cta_offsets[1] = tied_before;
    cta_offsets[2] = above_total;
  }
  // Peers may leave once every CTA has read the counts; wait for that only at exit.
  auto counts_read = cluster.barrier_arrive();
  __syncthreads();

  const int above_total = cta_offsets[2];
  const int selected = above_total + take;
  const std::int64_t out_row = static_cast<std::int64_t>(row) * args.k;
  std::int32_t* const out_indices = args.indices + out_row;
  ScoreT* const out_values = args.sorted || args.values == nullptr ? nullptr : args.values + out_row;
  int next_above = cta_offsets[0] + warp_above[warp];
  int next_tied = cta_offsets[1] + warp_tied[warp];
  for (int base = warp_first; base < warp_last; base += 32) {
    const int g = base + lane;
    unsigned above, tied;
    classify(g, above, tied);
    if (!__any_sync(kAllLanes, (above | tied) != 0)) continue;
    const int lane_above = __popc(above), lane_tied = __popc(tied);
    int above_through = lane_above, tied_through = lane_tied;  // inclusive scans over lanes
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const int a = __shfl_up_sync(kAllLanes, above_through, offset);
      const int t = __shfl_up_sync(kAllLanes, tied_through, offset);
      if (lane >= offset) above_through += a, tied_through += t;
    }
    int above_rank = next_above + above_through - lane_above;
    int tied_rank = next_tied + tied_through - lane_tied;
    next_above += __shfl_sync(kAllLanes, above_through, 31);
    next_tied += __shfl_sync(kAllLanes, tied_through, 31);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      int slot = -1;
      if ((above >> e) & 1u) {
        slot = above_rank++;
      } else if ((tied >> e) & 1u) {
        if (tied_rank < take) slot = above_total + tied_rank;
        ++tied_rank;
      }
      if (slot < 0) continue;
      const int pos = seg_begin + g * kVec + e;
      out_indices[slot] = args.sorted ? pos : translate_position(args, row, pos);
      if (out_values) out_values[slot] = row_scores[pos];
    }
  }
  for (int j = selected + rank * kThreads + tid; j < args.k; j += cluster_size * kThreads) {
    out_indices[j] = -1;
    if (out_values) out_values[j] = nan_score<ScoreT>();
  }
  if (args.counts && rank == 0 && tid == 0) args.counts[row] = selected;
  cluster.barrier_wait(std::move(counts_read));
}

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

  static std::size_t workspace_size(const Arguments&) { return 0; }

  static Status run(const Arguments& args, void* /*workspace*/, std::size_t /*workspace_bytes*/,
                    cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    int device = 0, num_sms = 0;
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaGetDevice(&device)));
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device)));
    const detail::TopKLaunchShape shape = detail::topk_launch_shape<ScoreT, Policy>(args.num_rows, args.num_cols, num_sms);
    constexpr int kVec = kVecElems<ScoreT>;
    const bool vectorized = reinterpret_cast<std::uintptr_t>(args.scores) % 16 == 0 && args.row_stride % kVec == 0;
    const int smem_bytes =
        shape.cached ? shape.segment * static_cast<int>(sizeof(typename RadixKey<ScoreT>::Bits)) : 0;

    const auto kernel = detail::batched_topk_kernel<ScoreT, Policy>;
    // Raised on every call: with the kernel's static histograms, even a small cache can pass the
    // 48 KB a kernel gets without asking.
    if (smem_bytes > 0)
      HYLRA_RETURN_IF_ERROR(
          cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes)));
    if (Policy::kMaxClusterSize > 8)
      HYLRA_RETURN_IF_ERROR(cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1)));
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = static_cast<unsigned>(shape.cluster_size);
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(args.num_rows * shape.cluster_size));
    config.blockDim = dim3(Policy::kThreads);
    config.dynamicSmemBytes = static_cast<std::size_t>(smem_bytes);
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    HYLRA_RETURN_IF_ERROR(cuda_status(cudaLaunchKernelEx(&config, kernel, args, shape.segment, shape.cached, vectorized)));
    if (args.sorted) {
      detail::sort_rows_kernel<ScoreT, Policy><<<args.num_rows, Policy::kSortThreads, 0, stream>>>(args);
      HYLRA_RETURN_IF_ERROR(check_launch());
    }
    return Status::success();
  }
};

HYLRA_NAMESPACE_END
