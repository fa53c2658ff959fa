// BatchedTopK<ScoreT>: the k best scores of each of R rows, as int32 positions (and optionally
// their scores), in one launch. Exact, with the rules of reference::topk_row: ties at the k-th
// score go to the lower position, NaN is never selected, -0 equals +0, a row with fewer than k
// selectable scores returns them all then -1. Rows may have different lengths; the first
// `sink_tokens` and last `recent_tokens` positions of a row are always selected and count inside k.
// Output order is unspecified but deterministic (the same inputs give bitwise the same output)
// unless `sorted` is set; positions can be translated through a block table on the way out.
//
// Method: one thread-block cluster of up to 8 CTAs per row, each CTA owning a segment.
// 1. Each CTA streams its segment once with 16-byte loads, turns scores into RadixKey bits, keeps
//    them in shared memory and counts a wide first digit (11 bits: sign, exponent and 2 mantissa
//    bits of fp32) with one shared atomic per key.
// 2. Each CTA adds its non-zero bins into every peer's copy through distributed shared memory;
//    every CTA then finds the same threshold bucket T: keys whose first digit exceeds T are
//    selected, keys in T are candidates, and `take` of them are still needed.
// 3. One classify pass: each thread turns up to 32 consecutive keys into two bit masks (above T,
//    in T); mask counts, a block scan and the earlier CTAs' totals number them in position order.
//    Selected keys go straight to the output; candidates go, at slots in position order, to a
//    buffer in the shared memory of the cluster's first CTA, which selects the `take` best of
//    them with BlockTopK (ties to the lower position) and writes them after the others. For a
//    normal row T holds ~2 % of the keys, so per key the kernel does one load, one atomic and two
//    compares; the write loop visits set mask bits only.
// When T holds more candidates than the buffer (many equal scores) or segments are small, the
// cluster instead refines T with further radix passes (8-bit digits) over the keys in shared
// memory and the same classify pass writes the ties directly; the choice comes from the
// cluster-wide histogram and the segment size, the same in every CTA. Global traffic: the row
// read once, k outputs written. No workspace, no host synchronisation, a grid fixed by (R, N):
// the call is CUDA-graph capturable.
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
#include "hylra/topk/block_topk.cuh"
#include "hylra/topk/radix_bucket.cuh"
#include "hylra/topk/radix_key.cuh"

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
  static constexpr int kCandidateCapacity = 4096;
  // Segments of fewer keys skip that refine and use the cluster-wide passes: re-scanning a few
  // thousand keys in shared memory is cheaper than the refine's barriers and block-wide passes.
  static constexpr int kMinRefineSegmentKeys = 2048;
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
  const auto fits_one_wave = [&](int cluster) {
    return static_cast<std::int64_t>(num_rows) * cluster * 100 <=
           static_cast<std::int64_t>(P::kCtasPerSm) * num_sms * P::kWavePercent;
  };
  int cluster = 1;
  while (cluster < P::kMaxClusterSize &&
         (bytes(cluster) > P::kPreferredSegmentBytes ||
          (fits_one_wave(2 * cluster) && segment(2 * cluster) >= P::kMinSegmentKeys)))
    cluster *= 2;
  return {cluster, segment(cluster), bytes(cluster) <= P::kMaxSegmentBytes};
}

// The policy of the kernel that run() launches for segments of at most kSmallSegmentKeys keys.
template <typename Policy>
struct SmallSegmentPolicy : Policy {
  static constexpr int kThreads = Policy::kSmallSegmentThreads;
};

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

// Shared memory of batched_topk_kernel beyond the cached keys, at the start of its dynamic
// shared memory (too large for static). The histograms are dead once the threshold is known; the
// first CTA's copy then receives the candidates.
template <typename ScoreT, typename Policy>
union alignas(16) TopKExchange {
  using Bits = typename RadixKey<ScoreT>::Bits;
  static constexpr int kFirstBits =
      Policy::kFirstDigitBits < RadixKey<ScoreT>::kBits ? Policy::kFirstDigitBits : RadixKey<ScoreT>::kBits;
  static constexpr int kFirstBins = 1 << kFirstBits;
  static constexpr int kCapacity = Policy::kCandidateCapacity;
  struct {
    // This CTA's counts of the current digit, plus a last bin that absorbs invalid keys so the
    // first pass counts every key without a branch.
    int local[kFirstBins + 1];
    // The cluster's counts, which every CTA adds into every CTA's copy. Later digits use two
    // halves, so that peers add the next digit's counts while this CTA reads the current ones.
    int cluster[kFirstBins];
  } histograms;
  struct {
    Bits keys[kCapacity];
    int positions[kCapacity];
  } candidates;
};

// One cluster per row. In sorted mode it writes untranslated positions only; sort_rows_kernel
// then orders them, translates them and writes the values.
template <typename ScoreT, typename Policy>
__global__ void __launch_bounds__(Policy::kThreads, Policy::kCtasPerSm)
    batched_topk_kernel(const BatchedTopKArguments<ScoreT> args, int segment, bool cached, bool vectorized) {
  namespace cg = cooperative_groups;
  constexpr int kThreads = Policy::kThreads;
  constexpr int kVec = kVecElems<ScoreT>;
  constexpr int kUnroll = Policy::kLoadUnroll;
  using Key = RadixKey<ScoreT>;
  using Bits = typename Key::Bits;
  using Keys = Vec<Bits, kVec>;
  using Exchange = TopKExchange<ScoreT, Policy>;
  constexpr int kFirstBits = Exchange::kFirstBits;
  constexpr int kFirstShift = Key::kBits - kFirstBits;
  using FirstBucket = BlockRadixBucket<kThreads, kFirstBits>;
  using Bucket = BlockRadixBucket<kThreads, Policy::kDigitBits>;
  constexpr int kFirstBins = FirstBucket::kBins, kBins = Bucket::kBins;
  constexpr int kCapacity = Exchange::kCapacity;
  static_assert(kCapacity % kThreads == 0, "kCandidateCapacity must be a multiple of kThreads");
  static_assert(2 * kBins <= kFirstBins, "the later digits' two cluster histograms reuse the first digit's");
  // The refine examines the kFirstShift bits below the first digit in as few passes of at most
  // 11 bits as it can (fp32: 2 of 11 and 10 bits instead of 3 of 8; 16-bit keys: one pass).
  constexpr int kRefinePasses = kFirstShift > 11 ? (kFirstShift + 10) / 11 : 1;
  constexpr int kRefineBits = kFirstShift > 0 ? (kFirstShift + kRefinePasses - 1) / kRefinePasses : 1;
  using CandidateTopK = BlockTopK<ScoreT, kThreads, kCapacity / kThreads, int, kRefineBits>;
  static_assert(sizeof(typename CandidateTopK::TempStorage) <= sizeof(Exchange),
                "the refine's TempStorage reuses the candidate buffer");
  // Per-thread (above, candidate) counts, low and high half, scanned together.
  using CountScan = cub::BlockScan<unsigned long long, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;

  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  Exchange& exchange = *reinterpret_cast<Exchange*>(dynamic_smem);
  Bits* const cache = reinterpret_cast<Bits*>(dynamic_smem + sizeof(Exchange));  // the segment's keys
  // Barriers separate every use of one of these from the next.
  __shared__ union {
    typename FirstBucket::TempStorage first_bucket;
    typename Bucket::TempStorage bucket;
  } temp;
  __shared__ typename CountScan::TempStorage scan_storage;
  __shared__ unsigned long long cta_counts;  // this CTA's (above, candidates), read by its peers
  __shared__ int cta_offsets[2];             // (above, candidates) in the cluster's earlier CTAs
  int* const local_histogram = exchange.histograms.local;
  int* const cluster_histogram = exchange.histograms.cluster;

  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int cluster_size = static_cast<int>(cluster.num_blocks());
  const int row = blockIdx.x / cluster_size;
  const int tid = threadIdx.x;

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
  // Positions [interior_begin, interior_end) of the segment are neither forced nor past its end:
  // whole groups inside it take their keys without per-position checks (the common case).
  const int interior_begin = args.sink_tokens - seg_begin;
  const int interior_end = (recent_begin - seg_begin < seg_len ? recent_begin - seg_begin : seg_len);
  const auto interior = [&](int g) { return g * kVec >= interior_begin && (g + 1) * kVec <= interior_end; };
  // Keys of positions [g * kVec, (g + 1) * kVec) of the segment; kInvalid past its end.
  const auto group_keys = [&](int g) {
    Keys keys;
    if (cached) return Keys::load(cache + g * kVec);
    if (vectorized && interior(g)) {  // one 16-byte load, as in pass 0
      const Vec<ScoreT> scores = Vec<ScoreT>::load(seg_scores + g * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) keys.data[e] = Key::make(scores.data[e], args.largest);
      return keys;
    }
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const int i = g * kVec + e;
      keys.data[e] = i < seg_len ? key_of(i, seg_scores[i]) : Key::kInvalid;
    }
    return keys;
  };
  // Adds this CTA's non-zero bins into every CTA's `cluster` copy (ours included), starting at a
  // different peer in each CTA, and zeroes them.
  const auto push_histogram = [&](int* cluster_bins, int bins) {
    for (int b = tid; b < bins; b += kThreads) {
      const int count = local_histogram[b];
      if (count == 0) continue;
      for (int r = 0; r < cluster_size; ++r) {
        const int peer = rank + r < cluster_size ? rank + r : rank + r - cluster_size;
        atomicAdd(cluster.map_shared_rank(cluster_bins + b, peer), count);
      }
      local_histogram[b] = 0;
    }
  };

  for (int b = tid; b < kFirstBins; b += kThreads) local_histogram[b] = cluster_histogram[b] = 0;
  if (tid == 0) local_histogram[kFirstBins] = 0;
  // Peers add into our cluster_histogram only after this barrier; wait for it after the load.
  auto cleared = cluster.barrier_arrive();
  __syncthreads();

  // Pass 0 fused with the load: the first digit's histogram, and the keys into shared memory.
  const auto count_first = [&](Bits key) {
    atomicAdd(&local_histogram[key == Key::kInvalid ? kFirstBins : key >> kFirstShift], 1);
  };
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
        if (interior(g)) {
#pragma unroll
          for (int e = 0; e < kVec; ++e) keys.data[e] = Key::make(loaded[u].data[e], args.largest);
        } else {
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            keys.data[e] = g * kVec + e < seg_len ? key_of(g * kVec + e, loaded[u].data[e]) : Key::kInvalid;
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) count_first(keys.data[e]);
        if (cached) keys.store(cache + g * kVec);
      }
    }
  } else {
    for (int i = tid; i < num_groups * kVec; i += kThreads) {
      const Bits key = i < seg_len ? key_of(i, seg_scores[i]) : Key::kInvalid;
      count_first(key);
      if (cached) cache[i] = key;
    }
  }
  __syncthreads();  // local_histogram complete
  cluster.barrier_wait(std::move(cleared));
  push_histogram(cluster_histogram, kFirstBins);
  cluster.sync();  // every CTA's additions into cluster_histogram are visible

  // The selection is every key above [tied_min, tied_max] plus `take` keys inside it. Every CTA
  // sees the same cluster histograms, so all take the same branches. Valid keys are >= 1.
  const RadixBucket first =
      FirstBucket(temp.first_bucket).find([&](int digit) { return cluster_histogram[digit]; }, args.k);
  const Bits bucket_min = static_cast<Bits>(static_cast<Bits>(first.digit) << kFirstShift);
  Bits tied_min = bucket_min > 1 ? bucket_min : Bits(1);
  Bits tied_max = static_cast<Bits>(bucket_min | ((Bits(1) << kFirstShift) - 1u));
  int take = first.remaining, above_total = args.k - first.remaining;
  if (first.total < args.k) {  // fewer selectable positions than k: take them all
    tied_min = 1;
    tied_max = 0;
    take = 0;
    above_total = first.total;
  } else if (first.remaining == first.count) {  // the whole bucket is taken
    tied_max = static_cast<Bits>(tied_min - 1u);
    take = 0;
    above_total = args.k;
  }
  // Candidates of the bucket go to the first CTA, which picks `take` of them.
  const bool refine_candidates = take > 0 && first.count <= kCapacity && segment >= Policy::kMinRefineSegmentKeys;
  if (take > 0 && !refine_candidates) {
    // Too many candidates (e.g. many equal scores) or a small segment: radix passes over the
    // bucket's keys with cluster-wide histograms until `take` is the whole bucket or all bits are
    // fixed; the ties left are then taken in position order. Our cluster_histogram is read by us only, and the
    // push above left local_histogram zero.
    for (int b = tid; b < 2 * kBins; b += kThreads) cluster_histogram[b] = 0;
    cluster.sync();  // zeroed everywhere before any peer adds into them
    Bits prefix = bucket_min, mask = static_cast<Bits>(~((Bits(1) << kFirstShift) - 1u));
    for (int shift = kFirstShift, buffer = 0; shift > 0; buffer ^= 1) {
      const int width = shift < Policy::kDigitBits ? shift : Policy::kDigitBits;
      shift -= width;
      const Bits digit_mask = static_cast<Bits>((1u << width) - 1u);
      for (int g = tid; g < num_groups; g += kThreads) {
        const Keys keys = group_keys(g);
#pragma unroll
        for (int e = 0; e < kVec; ++e)
          if (keys.data[e] != Key::kInvalid && (keys.data[e] & mask) == prefix)
            atomicAdd(&local_histogram[(keys.data[e] >> shift) & digit_mask], 1);
      }
      __syncthreads();  // local_histogram complete
      int* const half = cluster_histogram + buffer * kBins;
      push_histogram(half, kBins);
      // Our other half was last read by us (previous digit) and is next added into after the
      // barrier below: clear it now.
      int* const other_half = cluster_histogram + (buffer ^ 1) * kBins;
      for (int b = tid; b < kBins; b += kThreads) other_half[b] = 0;
      cluster.sync();  // every CTA's additions into this half are visible
      const RadixBucket bucket =
          Bucket(temp.bucket).find([&](int digit) { return half[digit]; }, take);
      prefix |= static_cast<Bits>(static_cast<Bits>(bucket.digit) << shift);
      mask |= static_cast<Bits>(digit_mask << shift);
      take = bucket.remaining;
      if (bucket.remaining == bucket.count) break;
    }
    tied_min = prefix;  // >= bucket_min >= 1 for any first digit of 8 bits or more
    tied_max = static_cast<Bits>(prefix | ~mask);
    above_total = args.k - take;
  }
  const int selected = above_total + take;

  // Number the above keys and the candidates (or ties) in position order. Thread t owns
  // `chunks` chunks of `chunk_groups` consecutive groups (at most 32 positions) from group
  // chunks * chunk_groups * t on, and classifies each into two bit masks (bit i: position i of
  // the chunk), starting at a different group per thread so that a warp's 16-byte shared-memory
  // reads fall in distinct banks. Mask counts, a block scan and the cluster's earlier CTAs give
  // its first slots; the write loop then visits only the set bits, so a warp spends time on
  // selected keys alone. Small segments get short chunks so that every thread has some: 1024
  // fp32 keys are 256 chunks of one group, not 32 chunks of eight left to a single warp.
  constexpr int kChunkGroups = 32 / kVec;  // the most groups one 32-bit mask covers
  static_assert(kChunkGroups == 4 || kChunkGroups == 8, "16-byte groups of 16- or 32-bit keys");
  const int groups_per_thread = (num_groups + kThreads - 1) / kThreads;
  const int chunk_groups =
      groups_per_thread < 1 ? 1 : (groups_per_thread < kChunkGroups ? groups_per_thread : kChunkGroups);
  const int chunks = (num_groups + kThreads * chunk_groups - 1) / (kThreads * chunk_groups);
  const int run_first = tid * chunks * chunk_groups;  // first group of this thread
  const unsigned rotation = static_cast<unsigned>(tid / (8 / kChunkGroups)) % kChunkGroups;
  struct ChunkMasks {
    unsigned above, tied;
  };
  const auto classify_chunk = [&](int c) {
    ChunkMasks masks{0u, 0u};
    const int chunk_first = run_first + c * chunk_groups;
    if (cached && chunk_groups == kChunkGroups && chunk_first + kChunkGroups <= num_groups) {
      // A whole chunk in shared memory (the common case): every read issued before any compare,
      // bit i * kVec + e for key e of the i-th group read, then one rotate to chunk positions.
      Keys keys[kChunkGroups];
#pragma unroll
      for (int i = 0; i < kChunkGroups; ++i)
        keys[i] = Keys::load(cache + (chunk_first + ((i + rotation) % kChunkGroups)) * kVec);
#pragma unroll
      for (int i = 0; i < kChunkGroups; ++i)
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          if (keys[i].data[e] > tied_max) masks.above |= 1u << (i * kVec + e);
          else if (keys[i].data[e] >= tied_min) masks.tied |= 1u << (i * kVec + e);
        }
      const unsigned shift = rotation * kVec;  // < 32
      masks.above = __funnelshift_l(masks.above, masks.above, shift);
      masks.tied = __funnelshift_l(masks.tied, masks.tied, shift);
      return masks;
    }
#pragma unroll
    for (int i = 0; i < kChunkGroups; ++i) {
      const int local = static_cast<int>((i + rotation) % kChunkGroups);
      const int g = chunk_first + local;
      if (local >= chunk_groups || g >= num_groups) continue;
      const Keys keys = group_keys(g);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const unsigned bit = 1u << (local * kVec + e);
        if (keys.data[e] > tied_max) masks.above |= bit;
        else if (keys.data[e] >= tied_min) masks.tied |= bit;
      }
    }
    return masks;
  };
  // The first two chunks' masks stay in registers for the write loop (a 16K-key cached segment is
  // one chunk per thread, a 32K-key uncached one two), so only longer runs classify a chunk twice.
  constexpr int kKeptChunks = 2;
  ChunkMasks kept[kKeptChunks];
  int above_count = 0, tied_count = 0;
  const auto count_chunk = [&](const ChunkMasks& masks) {
    above_count += __popc(masks.above);
    tied_count += __popc(masks.tied);
  };
#pragma unroll
  for (int c = 0; c < kKeptChunks; ++c) {
    kept[c] = c < chunks ? classify_chunk(c) : ChunkMasks{0u, 0u};
    count_chunk(kept[c]);
  }
  for (int c = kKeptChunks; c < chunks; ++c) count_chunk(classify_chunk(c));
  unsigned long long before, cta_total;
  CountScan(scan_storage)
      .ExclusiveSum(static_cast<unsigned long long>(tied_count) << 32 | static_cast<unsigned>(above_count), before,
                    cta_total);
  if (tid == 0) cta_counts = cta_total;
  cluster.sync();  // cta_counts visible to the cluster
  if (tid < 32) {  // lane r reads CTA r's counts (a cluster has at most 16 CTAs)
    unsigned long long earlier = tid < rank ? *cluster.map_shared_rank(&cta_counts, tid) : 0ull;
#pragma unroll
    for (int offset = 16; offset >= 1; offset /= 2) earlier += __shfl_xor_sync(0xFFFFFFFFu, earlier, offset);
    if (tid == 0) {
      cta_offsets[0] = static_cast<int>(earlier & 0xFFFFFFFFu);
      cta_offsets[1] = static_cast<int>(earlier >> 32);
    }
  }
  __syncthreads();

  const std::int64_t out_row = static_cast<std::int64_t>(row) * args.k;
  std::int32_t* const out_indices = args.indices + out_row;
  ScoreT* const out_values = args.sorted || args.values == nullptr ? nullptr : args.values + out_row;
  const auto emit = [&](int slot, int pos) {
    out_indices[slot] = args.sorted ? pos : translate_position(args, row, pos);
    if (out_values) out_values[slot] = row_scores[pos];
  };
  Bits* const candidate_keys = cluster.map_shared_rank(exchange.candidates.keys, 0);
  int* const candidate_positions = cluster.map_shared_rank(exchange.candidates.positions, 0);
  int next_above = cta_offsets[0] + static_cast<int>(before & 0xFFFFFFFFu);
  int next_tied = cta_offsets[1] + static_cast<int>(before >> 32);
  const auto write_chunk = [&](int c, const ChunkMasks& masks) {
    const int chunk_begin = (run_first + c * chunk_groups) * kVec;  // within the segment
    for (unsigned bits = masks.above; bits != 0; bits &= bits - 1)
      emit(next_above++, seg_begin + chunk_begin + __ffs(bits) - 1);
    for (unsigned bits = masks.tied; bits != 0; bits &= bits - 1) {
      const int i = chunk_begin + __ffs(bits) - 1;
      if (refine_candidates) {
        candidate_keys[next_tied] = cached ? cache[i] : key_of(i, seg_scores[i]);
        candidate_positions[next_tied++] = seg_begin + i;
      } else {
        if (next_tied < take) emit(above_total + next_tied, seg_begin + i);
        ++next_tied;
      }
    }
  };
#pragma unroll
  for (int c = 0; c < kKeptChunks; ++c) write_chunk(c, kept[c]);  // empty masks past `chunks`
  for (int c = kKeptChunks; c < chunks; ++c) write_chunk(c, classify_chunk(c));
  // Peers read our cta_counts and the first CTA's candidates are complete once all have arrived.
  auto written = cluster.barrier_arrive();
  for (int j = selected + rank * kThreads + tid; j < args.k; j += cluster_size * kThreads) {
    out_indices[j] = -1;
    if (out_values) out_values[j] = nan_score<ScoreT>();
  }
  if (args.counts && rank == 0 && tid == 0) args.counts[row] = selected;
  cluster.barrier_wait(std::move(written));
  if (!refine_candidates || rank != 0) return;

  // The first CTA picks `take` of the bucket's candidates, which agree on the first digit; ties
  // go to the lower buffer index, that is the lower position.
  constexpr int kItems = kCapacity / kThreads;
  Bits keys[kItems];
  int positions[kItems], slots[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int c = tid * kItems + i;
    keys[i] = c < first.count ? exchange.candidates.keys[c] : Key::kInvalid;
    positions[i] = c < first.count ? exchange.candidates.positions[c] : -1;
  }
  __syncthreads();  // the candidates are in registers: their buffer becomes the refine's storage
  CandidateTopK(*reinterpret_cast<typename CandidateTopK::TempStorage*>(&exchange))
      .SelectLargestKeys(keys, slots, take, kFirstShift);
#pragma unroll
  for (int i = 0; i < kItems; ++i)
    if (slots[i] >= 0) emit(above_total + slots[i], positions[i]);
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
    HYLRA_RETURN_IF_ERROR(shape.segment <= Policy::kSmallSegmentKeys
                              ? launch_select<detail::SmallSegmentPolicy<Policy>>(args, shape, vectorized, stream)
                              : launch_select<Policy>(args, shape, vectorized, stream));
    if (args.sorted) {
      detail::sort_rows_kernel<ScoreT, Policy><<<args.num_rows, Policy::kSortThreads, 0, stream>>>(args);
      HYLRA_RETURN_IF_ERROR(check_launch());
    }
    return Status::success();
  }

 private:
  template <typename KernelPolicy>
  static Status launch_select(const Arguments& args, const detail::TopKLaunchShape& shape, bool vectorized,
                              cudaStream_t stream) {
    const int smem_bytes =
        static_cast<int>(sizeof(detail::TopKExchange<ScoreT, KernelPolicy>)) +
        (shape.cached ? shape.segment * static_cast<int>(sizeof(typename RadixKey<ScoreT>::Bits)) : 0);
    const auto kernel = detail::batched_topk_kernel<ScoreT, KernelPolicy>;
    // Raised on every call: the histograms alone pass the 48 KB a kernel gets without asking.
    HYLRA_RETURN_IF_ERROR(
        cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes)));
    if (KernelPolicy::kMaxClusterSize > 8)
      HYLRA_RETURN_IF_ERROR(cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1)));
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = static_cast<unsigned>(shape.cluster_size);
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(args.num_rows * shape.cluster_size));
    config.blockDim = dim3(KernelPolicy::kThreads);
    config.dynamicSmemBytes = static_cast<std::size_t>(smem_bytes);
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    return cuda_status(cudaLaunchKernelEx(&config, kernel, args, shape.segment, shape.cached, vectorized));
  }
};

HYLRA_NAMESPACE_END
