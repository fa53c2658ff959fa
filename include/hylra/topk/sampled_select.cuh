// Sampled-threshold selection: BatchedTopK's method for many long rows of scores without structure
// along the row, on request (TopKMethod::kSampled; batched_topk.cuh has the contract). Four
// kernels and a workspace; cluster barriers only for rows the sample misled:
// 1. sample_threshold_kernel, one CTA per row: reads kSampleKeys scores (128-byte runs, one at a
//    hashed place in each of as many equal strata of the row; or the whole row when it is no
//    longer) and, with two radix passes over them, takes about the sample's key of rank
//    sample_threshold_rank as the row's threshold t: for scores in random order, at least k and
//    at most the candidate capacity of the row's keys are >= t, except with a probability of a
//    few in a million (kSampleSigmas standard deviations of the binomial count). It clears the
//    row's candidate counter.
// 2. filter_candidates_kernel, one CTA per (row, tile): starts a bulk copy of its tile into
//    shared memory, then waits for the sample kernel (a programmatic dependent launch, so the
//    copy overlaps it), compares each key with t and appends the keys >= t to the row's candidate
//    list, in position order within the tile, at a range reserved with one global atomic per CTA.
// 3. select_candidates_kernel, one CTA per row, launched while the filter's last wave runs:
//    reads the candidates back in tile order (so in position order) and selects k of them with
//    BlockTopK, ties to the lower position; or takes them all when t admits every valid key and
//    there are at most k.
// 4. misled_rows_kernel, one cluster per row, launched while the select kernel runs: a row whose
//    candidate count fell outside [k, capacity] (the sample misled: scores correlated or sorted
//    along the row, many equal) is selected by the cluster method (select_row_in_cluster) over
//    the whole row; the other rows' clusters exit at once.
// Per key: one load and one compare, no shared-memory atomics. Global traffic: the row read once,
// ~1.5 k candidates written and read back. The grid depends on (R, N) only and nothing is
// allocated or synchronised: the call is CUDA-graph capturable.
#pragma once

#include <cooperative_groups.h>
#include <cub/block/block_scan.cuh>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "hylra/core/bulk_copy.cuh"
#include "hylra/core/dtype.hpp"
#include "hylra/core/vec.cuh"
#include "hylra/topk/block_topk.cuh"
#include "hylra/topk/cluster_select.cuh"
#include "hylra/topk/radix_bucket.cuh"
#include "hylra/topk/radix_key.cuh"
#include "hylra/topk/topk_arguments.cuh"

HYLRA_NAMESPACE_BEGIN
namespace detail {

// The sample key of this rank (1 = the largest) becomes a row's threshold: the expected number of
// the row's k best in a sample of `sample_keys` of its `length` keys, plus `sigmas` standard
// deviations and 2, so that few rows get fewer than k candidates. When the sample is the whole
// row, exactly k.
HYLRA_HOST_DEVICE int sample_threshold_rank(int k, int length, int sample_keys, float sigmas) {
  if (length <= sample_keys) return k;
  const float expected = static_cast<float>(k) * static_cast<float>(sample_keys) / static_cast<float>(length);
  const float rank = ceilf(expected + sigmas * sqrtf(expected) + 2.0f);
  return rank < 1.0f ? 1 : (rank < static_cast<float>(sample_keys) ? static_cast<int>(rank) : sample_keys);
}

// The number of candidates a row of `length` keys gets, at the same confidence: the keys the
// threshold's rank stands for in the row, plus `sigmas` standard deviations.
HYLRA_HOST_DEVICE float sampled_candidate_bound(int k, int length, int sample_keys, float sigmas) {
  if (length <= sample_keys) return static_cast<float>(k);  // exactly k unless scores tie at the k-th
  const float rank = static_cast<float>(sample_threshold_rank(k, length, sample_keys, sigmas));
  return (rank + sigmas * sqrtf(rank)) * static_cast<float>(length) / static_cast<float>(sample_keys);
}

// The sampled method's workspace, carved from the caller's buffer: per row a threshold, a
// candidate count (it may pass the capacity: then nothing past it was written) and, per tile, the
// first slot and count of its candidates; then the candidates' keys and positions.
template <typename ScoreT>
struct SampledWorkspace {
  using Bits = typename RadixKey<ScoreT>::Bits;
  Bits* thresholds = nullptr;  // [rows]
  int* counts = nullptr;       // [rows]
  int2* tiles = nullptr;       // [rows * tiles_per_row]: (first slot, count)
  Bits* keys = nullptr;        // [rows * capacity]
  int* positions = nullptr;    // [rows * capacity]

  // Points the arrays into `base` (16-byte aligned, or 0 to only measure); returns the bytes used.
  std::size_t carve(std::uintptr_t base, int rows, int tiles_per_row, int capacity) {
    const std::size_t r = static_cast<std::size_t>(rows), slots = r * static_cast<std::size_t>(capacity);
    std::size_t used = 0;
    const auto take = [&](auto*& array, std::size_t count) {
      array = reinterpret_cast<std::remove_reference_t<decltype(array)>>(base + used);
      used += (count * sizeof(*array) + 255) / 256 * 256;
    };
    take(thresholds, r);
    take(counts, r);
    take(tiles, r * static_cast<std::size_t>(tiles_per_row));
    take(keys, slots);
    take(positions, slots);
    return used;
  }
  static std::size_t bytes(int rows, int tiles_per_row, int capacity) {
    return SampledWorkspace{}.carve(0, rows, tiles_per_row, capacity);
  }
  static SampledWorkspace in(void* base, int rows, int tiles_per_row, int capacity) {
    SampledWorkspace w;
    w.carve(reinterpret_cast<std::uintptr_t>(base), rows, tiles_per_row, capacity);
    return w;
  }
};

// A 32-bit integer hash (lowbias32): where a sample run lies inside its stratum.
HYLRA_HOST_DEVICE unsigned sample_hash(unsigned x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Loads group g (kVec positions from g * kVec) of a row of `length` scores: one 16-byte load when
// the group is whole, else element by element with NaN past the end.
template <typename ScoreT>
HYLRA_DEVICE Vec<ScoreT> load_group(const ScoreT* row_scores, int g, int length) {
  constexpr int kVec = kVecElems<ScoreT>;
  if ((g + 1) * kVec <= length) return Vec<ScoreT>::load(row_scores + g * kVec);
  Vec<ScoreT> v;
#pragma unroll
  for (int e = 0; e < kVec; ++e) v.data[e] = g * kVec + e < length ? row_scores[g * kVec + e] : nan_score<ScoreT>();
  return v;
}

template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kSampleThreads, Policy::kSampleCtasPerSm)
    sample_threshold_kernel(const BatchedTopKArguments<ScoreT> args, SampledWorkspace<ScoreT> workspace) {
  constexpr int kThreads = Policy::kSampleThreads;
  constexpr int kVec = kVecElems<ScoreT>;
  constexpr int kItems = Policy::kSampleKeys / kThreads;  // keys per thread
  constexpr int kLoads = kItems / kVec;
  constexpr int kRunGroups = 128 / 16;  // a run is one 128-byte line: 8 groups
  constexpr int kRuns = Policy::kSampleKeys / (kRunGroups * kVec);
  static_assert(kItems % kVec == 0 && kRuns * kRunGroups * kVec == Policy::kSampleKeys,
                "kSampleKeys: a multiple of kSampleThreads 16-byte groups and of 128-byte runs");
  using Key = RadixKey<ScoreT>;
  using Bits = typename Key::Bits;
  // Two radix passes find the threshold: the first digit's bucket holding the rank-th key, then
  // the next digit inside it. For 32-bit keys the last kSecondShift bits are left at zero: the
  // threshold may sit up to 2^kSecondShift keys below the rank-th, a few extra candidates.
  constexpr int kDigitBits = Policy::kSampleDigitBits < Key::kBits ? Policy::kSampleDigitBits : Key::kBits;
  constexpr int kFirstShift = Key::kBits - kDigitBits;
  constexpr int kSecondShift = kFirstShift > kDigitBits ? kFirstShift - kDigitBits : 0;  // fp32: 10
  using Bucket = BlockRadixBucket<kThreads, kDigitBits>;
  __shared__ int histogram[Bucket::kBins];
  __shared__ typename Bucket::TempStorage bucket_storage;

#if __CUDA_ARCH__ >= 900
  // The filter kernel may start now: its loads do not depend on this kernel.
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
  const int row = blockIdx.x;
  const int length = row_length(args, row);
  const ScoreT* const row_scores = args.scores + static_cast<std::int64_t>(row) * args.row_stride;
  const bool whole_row = length <= Policy::kSampleKeys;
  const int lines = length / (kRunGroups * kVec);  // >= kRuns when the row is sampled
  // Run r lies at a hashed line of the r-th of kRuns equal strata of the row's lines. At a fixed
  // stride the sample aliased with structure of that period along the row (scores interpolated
  // between points 1024 positions apart misled every bf16 row, bench/RESULTS.md, session 10).
  const auto run_line = [&](int run) {
    const int first = static_cast<int>(static_cast<std::int64_t>(run) * lines / kRuns);
    const int width = static_cast<int>(static_cast<std::int64_t>(run + 1) * lines / kRuns) - first;  // >= 1
    return first + static_cast<int>(sample_hash(static_cast<unsigned>(row) * kRuns + static_cast<unsigned>(run)) %
                                    static_cast<unsigned>(width));
  };
  int groups[kLoads];
#pragma unroll
  for (int l = 0; l < kLoads; ++l) {
    const int s = l * kThreads + static_cast<int>(threadIdx.x);  // group of the sample
    groups[l] = whole_row ? s : run_line(s / kRunGroups) * kRunGroups + s % kRunGroups;
  }
  Vec<ScoreT> scores[kLoads];  // every load issued before any is used
  if (whole_row) {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) scores[l] = load_group(row_scores, groups[l], length);
  } else {  // every sampled group lies inside the row
#pragma unroll
    for (int l = 0; l < kLoads; ++l) scores[l] = Vec<ScoreT>::load(row_scores + groups[l] * kVec);
  }
  Bits keys[kItems];
#pragma unroll
  for (int l = 0; l < kLoads; ++l)
#pragma unroll
    for (int e = 0; e < kVec; ++e)
      keys[l * kVec + e] = groups[l] * kVec + e < length
                               ? position_key(args, groups[l] * kVec + e, length - args.recent_tokens, scores[l].data[e])
                               : Key::kInvalid;

  const int rank = sample_threshold_rank(args.k, length, Policy::kSampleKeys, Policy::kSampleSigmas);
  // Counts the keys whose bits above `shift` equal `prefix` (all valid keys when shift is the
  // key width), by their next digit.
  const auto count_digit = [&](int shift, Bits prefix) {
    for (int b = threadIdx.x; b < Bucket::kBins; b += kThreads) histogram[b] = 0;
    __syncthreads();
    const int width = shift < kDigitBits ? shift : kDigitBits;
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (keys[i] != Key::kInvalid && (shift >= Key::kBits || (keys[i] >> shift) == prefix))
        atomicAdd(&histogram[(keys[i] >> (shift - width)) & ((1u << width) - 1u)], 1);
    __syncthreads();
  };
  count_digit(Key::kBits, 0);
  const RadixBucket first = Bucket(bucket_storage).find([&](int d) { return histogram[d]; }, rank);
  Bits threshold = 1;  // fewer valid keys in the sample than `rank`: every valid key is a candidate
  if (first.total >= rank) {
    threshold = static_cast<Bits>(static_cast<Bits>(first.digit) << kFirstShift);
    if (kFirstShift > 0) {
      count_digit(kFirstShift, static_cast<Bits>(first.digit));
      const RadixBucket second = Bucket(bucket_storage).find([&](int d) { return histogram[d]; }, first.remaining);
      threshold = static_cast<Bits>(threshold | static_cast<Bits>(static_cast<Bits>(second.digit) << kSecondShift));
    }
    if (threshold == Key::kInvalid) threshold = 1;
  }
  if (threadIdx.x == 0) {
    workspace.thresholds[row] = threshold;
    workspace.counts[row] = 0;
  }
}

// Whether the sample misled a row's threshold, from the filter's count of its candidates: fewer
// than k (unless the threshold admits every valid key) or more than the capacity, past which
// nothing was written.
HYLRA_HOST_DEVICE bool sample_misled(int count, bool every_valid, int k, int capacity) {
  return count > capacity || (count < k && !every_valid);
}

// The select kernel's BlockTopK: Policy::kSampledCapacity candidates over Policy::kThreads threads.
template <typename ScoreT, typename Policy>
using CandidateTopK = BlockTopK<ScoreT, Policy::kThreads, Policy::kSampledCapacity / Policy::kThreads, int,
                                Policy::kSelectDigitBits>;

// Selects row `row` from its candidates, in a block of Policy::kThreads threads, once every tile
// of the row has written them: k of them with BlockTopK, or all; nothing when the sample misled
// (misled_rows_kernel selects that row).
template <typename ScoreT, typename Policy>
HYLRA_DEVICE void select_from_candidates(const BatchedTopKArguments<ScoreT>& args,
                                         const SampledWorkspace<ScoreT>& workspace, int tiles_per_row, int row) {
  constexpr int kThreads = Policy::kThreads;
  constexpr int kCapacity = Policy::kSampledCapacity;
  constexpr int kItems = kCapacity / kThreads;
  static_assert(kItems * kThreads == kCapacity, "kSampledCapacity: a multiple of kThreads");
  using Key = RadixKey<ScoreT>;
  using Bits = typename Key::Bits;
  using TopK = CandidateTopK<ScoreT, Policy>;
  using TileScan = cub::BlockScan<int, kThreads>;
  extern __shared__ __align__(16) unsigned char dynamic_smem[];  // TopK's storage
  __shared__ typename TileScan::TempStorage scan_storage;
  __shared__ int tile_start[Policy::kMaxSampledTiles + 1];  // first candidate of each tile, in tile order
  __shared__ int tile_first[Policy::kMaxSampledTiles];      // its slot in the workspace
  __shared__ unsigned warp_largest[kThreads / 32];

  const int tid = static_cast<int>(threadIdx.x);
  const int count = workspace.counts[row];
  const Bits threshold = workspace.thresholds[row];
  if (sample_misled(count, threshold == Bits(1), args.k, kCapacity)) return;

  const int2* const tiles = workspace.tiles + static_cast<std::int64_t>(row) * tiles_per_row;
  int running = 0;
  for (int base = 0; base < tiles_per_row; base += kThreads) {
    const int t = base + tid;
    const int2 info = t < tiles_per_row ? tiles[t] : make_int2(0, 0);
    int start, aggregate;
    TileScan(scan_storage).ExclusiveSum(info.y, start, aggregate);
    if (t < tiles_per_row) {
      tile_start[t] = running + start;
      tile_first[t] = info.x;
    }
    running += aggregate;
    __syncthreads();  // scan_storage is reused
  }
  if (tid == 0) tile_start[tiles_per_row] = count;
  __syncthreads();

  // Thread t holds candidates t * kItems + i: find the tile of the first, then walk. Items past
  // the count read the last candidate (or slot 0 of an empty list) and are then marked invalid.
  const int first_item = tid * kItems;
  const int last = count > 0 ? count - 1 : 0;
  const auto clamped = [&](int j) { return j < last ? j : last; };
  int lo = 0, hi = tiles_per_row - 1;  // the last tile whose start is <= clamped(first_item)
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile_start[mid] <= clamped(first_item)) lo = mid;
    else hi = mid - 1;
  }
  const std::int64_t row_slots = static_cast<std::int64_t>(row) * kCapacity;
  int slots[kItems];  // first the workspace slot of each item, then its output slot
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int j = clamped(first_item + i);
    while (lo + 1 < tiles_per_row && j >= tile_start[lo + 1]) ++lo;
    slots[i] = tile_first[lo] + (j - tile_start[lo]);
  }
  Bits keys[kItems];
  int positions[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {  // all loads issued before any is used
    keys[i] = workspace.keys[row_slots + slots[i]];
    positions[i] = workspace.positions[row_slots + slots[i]];
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i)
    if (first_item + i >= count) keys[i] = Key::kInvalid;
  int selected = count;
  if (count <= args.k) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) slots[i] = first_item + i < count ? first_item + i : -1;
  } else {
    // Every candidate lies in [threshold, the largest], so they all share the bits above the
    // highest one in which those two differ: the radix passes start below it (for a normal row's
    // top 2 % that skips the sign and most exponent bits, which hold few distinct digits).
    unsigned largest = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) largest = keys[i] > largest ? keys[i] : largest;  // kInvalid is 0
    largest = __reduce_max_sync(0xFFFFFFFFu, largest);
    if (tid % 32 == 0) warp_largest[tid / 32] = largest;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) largest = warp_largest[w] > largest ? warp_largest[w] : largest;
    const int varying_bits = 32 - __clz(static_cast<int>(largest ^ threshold));
    selected = TopK(*reinterpret_cast<typename TopK::TempStorage*>(dynamic_smem))
                   .SelectLargestKeys(keys, slots, args.k, varying_bits);
  }
  const RowOutput<ScoreT> output(args, row);
#pragma unroll
  for (int i = 0; i < kItems; ++i)
    if (slots[i] >= 0) output.select(slots[i], positions[i]);
  for (int j = selected + tid; j < args.k; j += kThreads) output.pad(j);
  if (args.counts && tid == 0) args.counts[row] = selected;
}

// The filter's shared memory: the tile of scores, filled by one bulk copy. Registers hold no
// loads in flight, so several tiles per SM are on their way while other CTAs compare and write.
template <typename ScoreT, typename Policy>
struct FilterTile {
  static constexpr int kVec = kVecElems<ScoreT>;
  static constexpr int kLoads = Policy::kFilterKeysPerThread / kVec;  // 16-byte groups per thread
  static constexpr int kGroups = Policy::kFilterThreads * kLoads;
  static constexpr int kKeys = kGroups * kVec;
  static constexpr int kBytes = kGroups * 16;
};

template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kFilterThreads, Policy::kFilterCtasPerSm)
    filter_candidates_kernel(const BatchedTopKArguments<ScoreT> args, SampledWorkspace<ScoreT> workspace,
                             int tiles_per_row) {
  using Tile = FilterTile<ScoreT, Policy>;
  constexpr int kThreads = Policy::kFilterThreads;
  constexpr int kWarps = kThreads / 32;
  constexpr int kVec = Tile::kVec;
  constexpr int kLoads = Tile::kLoads;
  constexpr int kCapacity = Policy::kSampledCapacity;
  static_assert(kLoads >= 1 && kLoads * kVec == Policy::kFilterKeysPerThread && kLoads * kVec <= 64,
                "kFilterKeysPerThread: whole 16-byte groups, at most 64 (one 64-bit mask)");
  static_assert(kWarps <= 32, "one warp scans the warps' counts");
  using Key = RadixKey<ScoreT>;
  using Bits = typename Key::Bits;
  using Mask = std::conditional_t<(kLoads * kVec > 32), unsigned long long, unsigned>;
  // A name of its own: the other top-k kernels declare `dynamic_smem` with 16-byte alignment, and
  // one name may carry only one alignment in a translation unit (nvcc warning #1886).
  extern __shared__ __align__(128) unsigned char tile_smem[];
  const Vec<ScoreT>* const tile_groups = reinterpret_cast<const Vec<ScoreT>*>(tile_smem);
  const ScoreT* const tile_scores = reinterpret_cast<const ScoreT*>(tile_smem);
  __shared__ BulkCopyBarrier tile_loaded;
  __shared__ int warp_first[kWarps];

  const int row = static_cast<int>(blockIdx.x) / tiles_per_row;
  const int tile = static_cast<int>(blockIdx.x) % tiles_per_row;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int length = row_length(args, row);
  const int tile_begin = tile * Tile::kKeys;
  const ScoreT* const tile_src = args.scores + static_cast<std::int64_t>(row) * args.row_stride + tile_begin;
  // The tile's whole 16-byte groups inside the row arrive by one bulk copy, started before the
  // wait for the sample kernel (a programmatic dependent launch, so the copy overlaps it). A
  // partial last group of the row is read directly.
  const int whole_groups = length / kVec - tile * Tile::kGroups;
  const int copied_groups = whole_groups < 0 ? 0 : (whole_groups < Tile::kGroups ? whole_groups : Tile::kGroups);
  if (threadIdx.x == 0) {
    tile_loaded.init();
    if (copied_groups > 0) tile_loaded.copy(tile_smem, tile_src, static_cast<unsigned>(copied_groups) * 16u);
  }

#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // the sample kernel's thresholds and counters
  // The select kernel may launch once every CTA of this grid is past here (its last wave is
  // running): its launch overlaps this grid's tail, and it waits for this grid to finish.
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
  const Bits threshold = workspace.thresholds[row];
  __syncthreads();  // the barrier is initialised
  if (copied_groups > 0) tile_loaded.wait(0);

  // Thread t owns the tile's keys [t * kKeysPerThread, (t + 1) * kKeysPerThread): thread order is
  // position order, so one scan of the threads' counts orders the tile's candidates. Bit i of
  // `mask` stands for key first_key + i.
  constexpr int kKeysPerThread = Policy::kFilterKeysPerThread;
  const int first_key = static_cast<int>(threadIdx.x) * kKeysPerThread;
  const auto score_at = [&](int i) {  // key i of the tile, inside the row
    return i < copied_groups * kVec ? tile_scores[i]
                                    : args.scores[static_cast<std::int64_t>(row) * args.row_stride + tile_begin + i];
  };
  Mask mask = 0;
  // A tile inside the row with no forced position (the common case) compares without
  // per-position checks; the branch is uniform.
  if (tile_begin >= args.sink_tokens && tile_begin + Tile::kKeys <= length - args.recent_tokens) {
    // Lane L reads its groups starting at group L mod kLoads, so that the eight lanes of each
    // 128-byte shared-memory wavefront hit eight different 16-byte bank groups.
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int g = (j + lane) % kLoads;
      const Vec<ScoreT> scores = tile_groups[first_key / kVec + g];
#pragma unroll
      for (int e = 0; e < kVec; ++e)
        if (Key::make(scores.data[e], args.largest) >= threshold) mask |= Mask(1) << (g * kVec + e);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
      const int pos = tile_begin + first_key + i;
      if (pos < length && position_key(args, pos, length - args.recent_tokens, score_at(first_key + i)) >= threshold)
        mask |= Mask(1) << i;
    }
  }

  // The tile's range of the row's list (one atomic), then each thread's first slot in it.
  const int count = sizeof(Mask) == 8 ? __popcll(mask) : __popc(static_cast<unsigned>(mask));
  int inclusive = count;  // over the lanes of this warp
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int y = __shfl_up_sync(0xFFFFFFFFu, inclusive, d);
    if (lane >= d) inclusive += y;
  }
  if (lane == 31) warp_first[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const int warp_count = lane < kWarps ? warp_first[lane] : 0;
    int warp_inclusive = warp_count;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int y = __shfl_up_sync(0xFFFFFFFFu, warp_inclusive, d);
      if (lane >= d) warp_inclusive += y;
    }
    const int total = __shfl_sync(0xFFFFFFFFu, warp_inclusive, 31);
    int first = 0;
    if (lane == 0) {
      if (total > 0) first = atomicAdd(workspace.counts + row, total);
      workspace.tiles[static_cast<std::int64_t>(row) * tiles_per_row + tile] = make_int2(first, total);
    }
    first = __shfl_sync(0xFFFFFFFFu, first, 0);
    // A tile that would pass the capacity writes nothing: the row falls back anyway.
    if (lane < kWarps) warp_first[lane] = first + total <= kCapacity ? first + warp_inclusive - warp_count : -1;
  }
  __syncthreads();
  const int warp_slot = warp_first[warp];
  if (count > 0 && warp_slot >= 0) {
    Bits* const out_keys = workspace.keys + static_cast<std::int64_t>(row) * kCapacity;
    int* const out_positions = workspace.positions + static_cast<std::int64_t>(row) * kCapacity;
    // A rolled loop over this thread's few candidates (about 3 % of its keys): compact code, which
    // matters on a first wave that runs it from a cold instruction cache.
    int slot = warp_slot + inclusive - count;
    for (Mask bits = mask; bits != 0; bits &= bits - 1, ++slot) {
      const int i = (sizeof(Mask) == 8 ? __ffsll(static_cast<long long>(bits)) : __ffs(static_cast<int>(bits))) - 1;
      const int pos = tile_begin + first_key + i;
      out_keys[slot] = position_key(args, pos, length - args.recent_tokens, score_at(first_key + i));  // pos < length
      out_positions[slot] = pos;
    }
  }
}

// One CTA per row, a programmatic dependent of the filter kernel. (Selecting in the row's last
// filter CTA instead, with a ticket counter, measured slower with many rows: those CTAs hold SM
// slots the streaming tiles need, bench/RESULTS.md.)
template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kThreads, 1)
    select_candidates_kernel(const BatchedTopKArguments<ScoreT> args, SampledWorkspace<ScoreT> workspace,
                             int tiles_per_row) {
#if __CUDA_ARCH__ >= 900
  // misled_rows_kernel may launch now: the filter's CTAs are all running or done, and it waits
  // for this grid to finish.
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // every tile's candidates written
#endif
  select_from_candidates<ScoreT, Policy>(args, workspace, tiles_per_row, static_cast<int>(blockIdx.x));
}

// One cluster per row of the launch (a grid of host values only), a programmatic dependent of
// the select kernel: the rows whose sample misled are selected by the cluster method, exactly;
// the other rows' clusters exit at once. (One wave of clusters looping over the rows measured
// no faster without such rows and slower with many, bench/RESULTS.md.) Policy may be the
// small-segment variant of the sampled method's policy; the candidate capacity is the same.
template <typename ScoreT, typename Policy, BucketFinish kFinish, SegmentAccess kAccess>
__global__ void __launch_bounds__(Policy::kThreads, Policy::kCtasPerSm)
    misled_rows_kernel(const BatchedTopKArguments<ScoreT> args, SampledWorkspace<ScoreT> workspace, int segment,
                       bool cached, bool vectorized) {
#if __CUDA_ARCH__ >= 900
  // The select kernel's end, which came after the filter's: every row's count is final.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
  const int row = static_cast<int>(blockIdx.x / cooperative_groups::this_cluster().num_blocks());
  if (sample_misled(workspace.counts[row], workspace.thresholds[row] == 1, args.k, Policy::kSampledCapacity))
    select_row_in_cluster<ScoreT, Policy, kFinish, kAccess>(args, row, segment, cached, vectorized);
}

// The sampled method's launch plan; a function of host values only.
template <typename ScoreT, typename Policy>
struct SampledPlan {
  using Tile = FilterTile<ScoreT, Policy>;
  int tiles_per_row;

  explicit SampledPlan(const BatchedTopKArguments<ScoreT>& args)
      : tiles_per_row((args.num_cols + Tile::kKeys - 1) / Tile::kKeys) {}

  // Whether run() takes the sampled method for `args`: asked for, and many long, 16-byte aligned
  // rows whose candidates fit the capacity at the sample's confidence.
  bool applies(const BatchedTopKArguments<ScoreT>& args) const {
    return args.method == TopKMethod::kSampled && rows_vectorized(args) && args.num_rows >= Policy::kSampledMinRows &&
           args.num_cols >= Policy::kSampledMinCols &&
           static_cast<std::int64_t>(args.num_rows) * args.num_cols >= Policy::kSampledMinKeys &&
           tiles_per_row <= Policy::kMaxSampledTiles &&
           static_cast<std::int64_t>(args.num_rows) * tiles_per_row <= 0x7FFFFFFF &&
           sampled_candidate_bound(args.k, args.num_cols, Policy::kSampleKeys, Policy::kSampleSigmas) <=
               static_cast<float>(Policy::kSampledCapacity);
  }

  std::size_t workspace_bytes(const BatchedTopKArguments<ScoreT>& args) const {
    return SampledWorkspace<ScoreT>::bytes(args.num_rows, tiles_per_row, Policy::kSampledCapacity);
  }

  // Dynamic shared memory of select_candidates_kernel.
  static constexpr int select_smem_bytes() {
    return static_cast<int>(sizeof(typename CandidateTopK<ScoreT, Policy>::TempStorage));
  }
};

}  // namespace detail
HYLRA_NAMESPACE_END
