// Cluster selection: BatchedTopK's default method (see batched_topk.cuh for the contract). One
// thread-block cluster of up to 8 CTAs per row, each CTA owning a segment.
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
// When T holds more candidates than the buffer (many equal scores), segments are small, or the
// launch fits one wave and its passes are short, the cluster instead refines T with
// further radix passes (8-bit digits) and the classify pass writes the ties directly. The choice
// comes from the cluster-wide histogram and the launch shape (TopKLaunchShape::refine, which picks
// the kernel's BucketFinish), the same in every CTA. Global traffic: the row read once, k outputs
// written. No workspace, no host synchronisation, a grid fixed by (R, N): CUDA-graph capturable.
//
// select_row_in_cluster is also the exact fallback of the sampled method (sampled_select.cuh),
// whose misled_rows_kernel calls it for the rows its sample misled.
#pragma once

#include <cooperative_groups.h>
#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <utility>

#include "hylra/core/dtype.hpp"
#include "hylra/core/vec.cuh"
#include "hylra/topk/block_topk.cuh"
#include "hylra/topk/radix_bucket.cuh"
#include "hylra/topk/radix_key.cuh"
#include "hylra/topk/topk_arguments.cuh"

HYLRA_NAMESPACE_BEGIN
namespace detail {

// How run() cuts rows into cluster segments; a function of host values only.
struct TopKLaunchShape {
  int cluster_size;
  int segment;  // positions per CTA, a multiple of the vector width
  bool cached;  // keys kept in shared memory
  bool refine;  // candidates of the k-th bucket refined by the first CTA (else cluster-wide passes)
};

// The classify pass gives each thread chunks of up to kChunkKeys consecutive keys (one 32-bit mask
// each) and keeps the masks of its first kKeptChunks chunks in registers: only longer runs classify
// a chunk twice, and up to kKeptChunks * kChunkKeys keys per thread the radix passes can visit the
// k-th bucket's keys alone (BucketFinish::kSparsePasses).
constexpr int kChunkKeys = 32;
constexpr int kKeptChunks = 2;

template <typename ScoreT, typename P>
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
  // The refine frees the other CTAs' slots early, which pays when clusters queue for slots. In
  // one wave the cluster-wide passes are cheaper where they are short: one pass for 16-bit keys
  // (H200, bench/RESULTS.md session 11: 1 x 128K bf16 14.7 against 15.7 us), and fp32 segments
  // of up to 64 keys per thread, whose passes visit only the k-th bucket's keys (session 14:
  // 8 x 128K 15.2 against 15.8). Longer fp32 segments would re-scan theirs three times.
  const int keys = segment(cluster);
  const bool short_passes = sizeof(Bits) == 2 || keys <= kKeptChunks * kChunkKeys * P::kThreads;
  const bool refine = keys >= P::kMinRefineSegmentKeys && !(fits_one_wave(cluster) && short_passes);
  return {cluster, keys, bytes(cluster) <= P::kMaxSegmentBytes, refine};
}

// How a cluster kernel finishes the k-th bucket after the first digit: a compile-time choice, so
// that each kernel carries the code of one way only (H200, bench/RESULTS.md session 14: the
// sparse passes' code in the refine's kernel cost it 1 %, and in the small-segment kernel up to
// 2 us on one-row shapes).
// * kRefine: the first CTA refines the bucket's candidates (TopKLaunchShape::refine); further
//   passes only when they overflow the buffer.
// * kPasses: further cluster-wide radix passes, each over the whole segment.
// * kSparsePasses: the same passes, visiting the bucket's keys alone where each thread holds 32
//   to 64 keys (located by the classify masks, computed first); other segments re-scan.
enum class BucketFinish { kRefine, kPasses, kSparsePasses };

// How a cluster kernel reads its segment: another compile-time choice, so that the common case's
// kernel carries no code for the others. In one wave these kernels are latency-bound, and their
// unused code costs time (H200, bench/RESULTS.md session 15: a third of the instructions,
// 0.3-1.2 us less on launches of one wave; waiting for instructions was their largest stall).
// * kCachedVectorized: keys cached in shared memory, rows read with 16-byte loads.
// * kAny: as TopKLaunchShape::cached and rows_vectorized say, at run time: segments of more than
//   kMaxSegmentBytes of keys, rows not 16-byte aligned, and the refine's kernel (run() says why).
enum class SegmentAccess { kCachedVectorized, kAny };

// The policy of the kernel that run() launches for segments of at most kSmallSegmentKeys keys.
template <typename Policy>
struct SmallSegmentPolicy : Policy {
  static constexpr int kThreads = Policy::kSmallSegmentThreads;
};

// Shared memory of select_row_in_cluster beyond the cached keys, at the start of its dynamic
// shared memory (too large for static). The histograms are dead once the threshold is known; the
// first CTA's copy then receives the candidates.
template <typename ScoreT, typename Policy>
union alignas(16) TopKExchange {
  using Bits = typename RadixKey<ScoreT>::Bits;
  static constexpr int kFirstBits =
      Policy::kFirstDigitBits < RadixKey<ScoreT>::kBits ? Policy::kFirstDigitBits : RadixKey<ScoreT>::kBits;
  static constexpr int kFirstBins = 1 << kFirstBits;
  static constexpr int kCapacity = Policy::kCandidateCapacity;
  static constexpr int kLaterBins = 1 << Policy::kDigitBits;
  struct {
    // This CTA's counts of the current digit, plus a last bin that absorbs invalid keys so the
    // first pass counts every key without a branch.
    int local[kFirstBins + 1];
    // The cluster's counts of the first digit, which every CTA adds into every CTA's copy.
    int cluster[kFirstBins];
    // The same for later digits, in two halves, so that peers add the next digit's counts while
    // this CTA reads the current ones. Zeroed with the first digit's, so that the passes need no
    // cluster barrier before the first of them.
    int later[2 * kLaterBins];
  } histograms;
  struct {
    Bits keys[kCapacity];
    int positions[kCapacity];
  } candidates;
};

// Selects row `row` in the calling cluster (of Policy::kThreads-thread CTAs), CTA r owning
// positions [r * segment, (r + 1) * segment). Dynamic shared memory: a TopKExchange, then the
// segment's keys when cached. With SegmentAccess::kAny, `cached` and `vectorized` say how the
// segment is read; kCachedVectorized sets both (set, not shadowed by new constants, so that the
// kAny kernels compile to the code they had before the parameter). In sorted mode it writes
// untranslated positions only; sort_rows_kernel then orders them, translates them and writes the
// values.
template <typename ScoreT, typename Policy, BucketFinish kFinish, SegmentAccess kAccess>
HYLRA_DEVICE void select_row_in_cluster(const BatchedTopKArguments<ScoreT>& args, int row, int segment,
                                        bool cached, bool vectorized) {
  namespace cg = cooperative_groups;
  if constexpr (kAccess == SegmentAccess::kCachedVectorized) cached = vectorized = true;
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
  static_assert(kBins == Exchange::kLaterBins, "later digits have kDigitBits bits");
  static_assert(Policy::kMaxClusterSize <= 16, "earlier_counts holds one slot per CTA of a cluster");
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
  // Slot r: (above, candidates) of the cluster's CTA r, written by that CTA when r < our rank.
  __shared__ unsigned long long earlier_counts[16];
  __shared__ int cta_offsets[2];  // (above, candidates) in the cluster's earlier CTAs
  int* const local_histogram = exchange.histograms.local;
  int* const cluster_histogram = exchange.histograms.cluster;
  int* const later_histogram = exchange.histograms.later;

  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int cluster_size = static_cast<int>(cluster.num_blocks());
  const int tid = threadIdx.x;

  const int length = row_length(args, row);
  const int seg_begin = rank * segment;
  const int seg_len = length - seg_begin < 0 ? 0 : (length - seg_begin > segment ? segment : length - seg_begin);
  const int num_groups = (seg_len + kVec - 1) / kVec;  // groups of kVec consecutive positions
  const ScoreT* const row_scores = args.scores + static_cast<std::int64_t>(row) * args.row_stride;
  const ScoreT* const seg_scores = row_scores + seg_begin;
  const int recent_begin = length - args.recent_tokens;
  const auto key_of = [&](int i, ScoreT score) {  // i: position within the segment
    return position_key(args, seg_begin + i, recent_begin, score);
  };
  // Positions [interior_begin, interior_end) of the segment are neither forced nor past its end:
  // whole groups inside it take their keys without per-position checks (the common case).
  const int interior_begin = args.sink_tokens - seg_begin;
  const int interior_end = (recent_begin - seg_begin < seg_len ? recent_begin - seg_begin : seg_len);
  const auto interior = [&](int g) { return g * kVec >= interior_begin && (g + 1) * kVec <= interior_end; };
  // Keys of positions [g * kVec, (g + 1) * kVec) of the segment; kInvalid past its end.
  const auto key_at = [&](int i) { return cached ? cache[i] : key_of(i, seg_scores[i]); };
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
  for (int b = tid; b < 2 * kBins; b += kThreads) later_histogram[b] = 0;
  if (tid == 0) local_histogram[kFirstBins] = 0;
  // Peers add into our cluster histograms only after this barrier; wait for it after the load.
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
  // Number the above keys and the candidates (or ties) in position order. Thread t owns
  // `chunks` chunks of `chunk_groups` consecutive groups (at most 32 positions) from group
  // chunks * chunk_groups * t on, and classifies each into two bit masks (bit i: position i of
  // the chunk), starting at a different group per thread so that a warp's 16-byte shared-memory
  // reads fall in distinct banks. Mask counts, a block scan and the cluster's earlier CTAs give
  // its first slots; the write loop then visits only the set bits, so a warp spends time on
  // selected keys alone. Small segments get short chunks so that every thread has some: 1024
  // fp32 keys are 256 chunks of one group, not 32 chunks of eight left to a single warp.
  constexpr int kChunkGroups = kChunkKeys / kVec;  // the most groups one 32-bit mask covers
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
  // The kept chunks' masks, for the passes and the write loop (a 16K-key cached segment is one
  // chunk per thread, a 32K-key one two).
  ChunkMasks kept[kKeptChunks];
  // Candidates of the bucket go to the first CTA, which picks `take` of them.
  constexpr bool kRefine = kFinish == BucketFinish::kRefine;
  const bool refine_candidates = kRefine && take > 0 && first.count <= kCapacity;
  // Keys of the bucket, when its take is still open and the refine does not run, go through
  // further radix passes with cluster-wide histograms until `take` is the whole bucket or all
  // bits are fixed; the ties left are then taken in position order. Too many candidates (e.g.
  // many equal scores) or a launch shape without the refine lead here. The push above left
  // local_histogram zero.
  const bool passes = take > 0 && !refine_candidates;
  // kSparsePasses, when every thread holds whole chunks and their masks fit in registers: the
  // first digit's classification comes first, and the passes then visit the bucket's keys alone
  // (about 2 % of a normal segment) instead of the whole segment each time.
  const bool sparse_passes = kFinish == BucketFinish::kSparsePasses && passes && chunks <= kKeptChunks &&
                             chunk_groups == kChunkGroups;
  if (sparse_passes) {
#pragma unroll
    for (int c = 0; c < kKeptChunks; ++c) kept[c] = c < chunks ? classify_chunk(c) : ChunkMasks{0u, 0u};
  }
  // Calls f(key, bit, c) for each key of the first digit's bucket that this thread's chunk c holds.
  const auto for_each_bucket_key = [&](auto&& f) {
#pragma unroll
    for (int c = 0; c < kKeptChunks; ++c) {
      const int chunk_begin = (run_first + c * chunk_groups) * kVec;
      for (unsigned bits = kept[c].tied; bits != 0; bits &= bits - 1) {
        const int i = chunk_begin + __ffs(bits) - 1;
        f(key_at(i), bits & (0u - bits), c);
      }
    }
  };
  if (passes) {
    Bits prefix = bucket_min, mask = static_cast<Bits>(~((Bits(1) << kFirstShift) - 1u));
    for (int shift = kFirstShift, buffer = 0; shift > 0; buffer ^= 1) {
      const int width = shift < Policy::kDigitBits ? shift : Policy::kDigitBits;
      shift -= width;
      const Bits digit_mask = static_cast<Bits>((1u << width) - 1u);
      const auto count = [&](Bits key) {
        if (key != Key::kInvalid && (key & mask) == prefix) atomicAdd(&local_histogram[(key >> shift) & digit_mask], 1);
      };
      if (sparse_passes) {
        for_each_bucket_key([&](Bits key, unsigned, int) { count(key); });
      } else {
        for (int g = tid; g < num_groups; g += kThreads) {
          const Keys keys = group_keys(g);
#pragma unroll
          for (int e = 0; e < kVec; ++e) count(keys.data[e]);
        }
      }
      __syncthreads();  // local_histogram complete
      int* const half = later_histogram + buffer * kBins;
      push_histogram(half, kBins);
      // Our other half was last read by us (previous digit) and is next added into after the
      // barrier below: clear it now.
      int* const other_half = later_histogram + (buffer ^ 1) * kBins;
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
  if (sparse_passes) {  // the bucket's keys, reclassified against the final range
    for_each_bucket_key([&](Bits key, unsigned bit, int c) {
      if (key > tied_max) kept[c].above |= bit;
      if (key > tied_max || key < tied_min) kept[c].tied &= ~bit;
    });
  }
  const int selected = above_total + take;

  int above_count = 0, tied_count = 0;
  const auto count_chunk = [&](const ChunkMasks& masks) {
    above_count += __popc(masks.above);
    tied_count += __popc(masks.tied);
  };
#pragma unroll
  for (int c = 0; c < kKeptChunks; ++c) {
    if (!sparse_passes) kept[c] = c < chunks ? classify_chunk(c) : ChunkMasks{0u, 0u};
    count_chunk(kept[c]);
  }
  for (int c = kKeptChunks; c < chunks; ++c) count_chunk(classify_chunk(c));
  unsigned long long before, cta_total;
  CountScan(scan_storage)
      .ExclusiveSum(static_cast<unsigned long long>(tied_count) << 32 | static_cast<unsigned>(above_count), before,
                    cta_total);
  // Pushed, not read by the peers afterwards: no CTA touches another's shared memory after the
  // barrier below except the candidate buffer of the first CTA.
  if (tid > rank && tid < cluster_size) *cluster.map_shared_rank(&earlier_counts[rank], tid) = cta_total;
  cluster.sync();  // earlier_counts complete
  if (tid < 32) {  // lane r adds CTA r's counts (a cluster has at most 16 CTAs)
    unsigned long long earlier = tid < rank ? earlier_counts[tid] : 0ull;
#pragma unroll
    for (int offset = 16; offset >= 1; offset /= 2) earlier += __shfl_xor_sync(0xFFFFFFFFu, earlier, offset);
    if (tid == 0) {
      cta_offsets[0] = static_cast<int>(earlier & 0xFFFFFFFFu);
      cta_offsets[1] = static_cast<int>(earlier >> 32);
    }
  }
  __syncthreads();

  const RowOutput<ScoreT> output(args, row);
  Bits* const candidate_keys = cluster.map_shared_rank(exchange.candidates.keys, 0);
  int* const candidate_positions = cluster.map_shared_rank(exchange.candidates.positions, 0);
  int next_above = cta_offsets[0] + static_cast<int>(before & 0xFFFFFFFFu);
  int next_tied = cta_offsets[1] + static_cast<int>(before >> 32);
  const auto write_chunk = [&](int c, const ChunkMasks& masks) {
    const int chunk_begin = (run_first + c * chunk_groups) * kVec;  // within the segment
    for (unsigned bits = masks.above; bits != 0; bits &= bits - 1)
      output.select(next_above++, seg_begin + chunk_begin + __ffs(bits) - 1);
    for (unsigned bits = masks.tied; bits != 0; bits &= bits - 1) {
      const int i = chunk_begin + __ffs(bits) - 1;
      if (refine_candidates) {
        candidate_keys[next_tied] = key_at(i);
        candidate_positions[next_tied++] = seg_begin + i;
      } else {
        if (next_tied < take) output.select(above_total + next_tied, seg_begin + i);
        ++next_tied;
      }
    }
  };
#pragma unroll
  for (int c = 0; c < kKeptChunks; ++c) write_chunk(c, kept[c]);  // empty masks past `chunks`
  for (int c = kKeptChunks; c < chunks; ++c) write_chunk(c, classify_chunk(c));
  for (int j = selected + rank * kThreads + tid; j < args.k; j += cluster_size * kThreads) {
    output.pad(j);
  }
  if (args.counts && rank == 0 && tid == 0) args.counts[row] = selected;
  if constexpr (kRefine) {
    if (!refine_candidates) return;
    // The first CTA's candidates are complete once every CTA has arrived. The others leave at
    // once: an exited thread counts as arrived, and nobody reads their shared memory any more.
    auto written = cluster.barrier_arrive();
    if (rank != 0) return;
    cluster.barrier_wait(std::move(written));

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
      if (slots[i] >= 0) output.select(above_total + slots[i], positions[i]);
  }
}

// One cluster per row.
template <typename ScoreT, typename Policy, BucketFinish kFinish, SegmentAccess kAccess>
__global__ void __launch_bounds__(Policy::kThreads, Policy::kCtasPerSm)
    cluster_select_kernel(const BatchedTopKArguments<ScoreT> args, int segment, bool cached, bool vectorized) {
  const int row = static_cast<int>(blockIdx.x / cooperative_groups::this_cluster().num_blocks());
  select_row_in_cluster<ScoreT, Policy, kFinish, kAccess>(args, row, segment, cached, vectorized);
}

}  // namespace detail
HYLRA_NAMESPACE_END
