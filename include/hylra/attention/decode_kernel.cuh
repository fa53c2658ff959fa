// The split-KV decode kernel behind DenseDecode, GatherDecode and DenseScores (decode.cuh,
// gather.cuh, dense_scores.cuh).
//
// One CTA handles one (chunk of slots, KV head, sequence). A slot is a candidate token: in dense
// decode slot s is token s; in gather decode slot s is token id * B + s % B of index entry s / B.
// Dense decode may also take 2 or 4 adjacent KV heads per CTA (PackedHeads).
// The CTA's warps take tiles of kTileSlots slots (32 in dense decode at head dim <= 128, else 16)
// in runs (run r goes to warp r % kWarps), stream each tile's K and V rows into their own
// shared-memory ring with cp.async (zero-filled where a slot is skipped), and compute all query
// heads of the GQA group at once on tensor cores: the group is the M dimension (padded to 16) of
// S = Q K^T and O += P V, so K and V are read from memory once per KV head. Each warp keeps an
// online softmax (log2 domain); the CTA combines its warps and writes either the final output (one
// chunk per sequence) or a partial state that MergeStates combines. Dense decode can also export
// per-token logits max-reduced over the group (scores.hpp); DenseScores computes only those: its
// ring holds K alone, and no softmax, P V or output follows.
#pragma once

#include <cstdint>

#include "hylra/attention/scores.hpp"
#include "hylra/attention/warp_mma.cuh"
#include "hylra/core/vec.cuh"
#include "hylra/core/dtype.hpp"
#include "hylra/layout/index_list.hpp"
#include "hylra/layout/kv_cache.hpp"

HYLRA_NAMESPACE_BEGIN
namespace detail {

// Tuning of the decode kernel for one head dimension, dense (kGather false) or gather decode.
// Dense decode at head dim <= 128 computes 32-slot tiles: one softmax max/vote, one Q fragment
// load per k-step and one export reduction per 32 slots instead of per 16. Gather keeps 16-slot
// tiles, so that a small selection still spreads over many CTAs. The ring (kWarps * kStages tiles
// of K and V) is what limits CTAs per SM: 96 KB at d=64 (2 CTAs/SM), 192 KB at d=128 and 256.
template <int kHeadDim, bool kGather>
struct DecodePolicy {
  static constexpr int kTileSlots = !kGather && kHeadDim <= 128 ? 32 : 16;  // N of S = Q K^T per step
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = 3;
  static constexpr int kMaxGroup = 16;   // query heads per KV head: the MMA's M
  // KV heads a dense tile may hold (PackedHeads): each keeps at least an n8 block of slots.
  static constexpr int kMaxPackedHeads = kGather ? 1 : kTileSlots / 8;
  // Dense chunks are multiples of the largest score block, so a block never spans two CTAs.
  static constexpr int kDenseChunkAlign = 128;
  static constexpr int kDenseMinChunk = 256;
  static constexpr int kGatherChunkAlign = kWarps * kTileSlots;
  static constexpr int kGatherMinChunk = kWarps * kTileSlots;
  static_assert(kTileSlots == 16 || kTileSlots == 32, "a tile is one or two 16-slot MMA widths");
  static_assert(kDenseChunkAlign % kTileSlots == 0, "tiles never straddle a dense chunk");
};

// kAttend: a stage holds a K tile then a V tile; otherwise (scores only) the K tile alone.
template <typename T, typename Policy, int kHeadDim, bool kAttend>
struct DecodeSmem {
  static constexpr int kTileElems = Policy::kTileSlots * kHeadDim;
  static constexpr int kStageElems = (kAttend ? 2 : 1) * kTileElems;
  static constexpr int kRingElems = Policy::kWarps * Policy::kStages * kStageElems;
  static constexpr std::size_t kQOffset = 0;
  static constexpr std::size_t kRingOffset = kQOffset + sizeof(T) * Policy::kMaxGroup * kHeadDim;
  static constexpr std::size_t kMaskOffset = kRingOffset + sizeof(T) * kRingElems;
  static constexpr std::size_t kStatsOffset = kMaskOffset + sizeof(std::uint32_t) * Policy::kWarps * Policy::kStages;
  static constexpr std::size_t kBytes = kStatsOffset + sizeof(float) * 2 * Policy::kWarps * Policy::kMaxGroup;
  // After the loop the ring holds each warp's unnormalized O for the CTA combine.
  static_assert(!kAttend || sizeof(float) * Policy::kWarps * Policy::kMaxGroup * kHeadDim <= sizeof(T) * kRingElems,
                "the combine buffer must fit in the K/V ring");
};

// Everything a decode CTA reads; built on the host by DenseDecode / GatherDecode.
template <typename T>
struct DecodeParams {
  const T* q;  // [batch, num_qo_heads, head_dim]
  PagedKvCache<const T> kv;
  IndexList indices;  // gather only
  int num_qo_heads;
  int group;
  int page_shift;   // log2(page_size)
  int block_shift;  // log2(indices.block_size)
  float scale_log2;  // sm_scale * log2(e)
  int chunk_slots;
  int num_splits;
  int run_shift;     // log2 of the tiles a warp takes in a row
  T* out;            // [batch, num_qo_heads, head_dim]; written when num_splits == 1
  float* lse;        // [batch, num_qo_heads] or null; written when num_splits == 1
  float* partial_o;  // [batch * num_qo_heads, num_splits, head_dim] when num_splits > 1
  float* partial_lse;
  ScoreExport scores;
};

// One (sequence, KV head) row of exported scores, stored in the export's dtype (scores.hpp).
struct ExportRow {
  void* entries;  // entry 0 of the row
  DType dtype;

  HYLRA_DEVICE static ExportRow of(const ScoreExport& scores, std::int64_t row) {
    return {static_cast<unsigned char*>(scores.scores) + row * scores.row_stride * static_cast<std::int64_t>(size_of(scores.dtype)),
            scores.dtype};
  }

  HYLRA_DEVICE void store(int entry, float value) const { store_score(entries, entry, dtype, value); }

  // The same, asking L2 to keep the line under `policy`.
  HYLRA_DEVICE void store(int entry, float value, std::uint64_t policy) const {
    if (dtype == DType::kFloat32) {
      store_with_policy(static_cast<float*>(entries) + entry, value, policy);
    } else {
      const std::uint16_t bits = dtype == DType::kBFloat16 ? __bfloat16_as_ushort(from_float<__nv_bfloat16>(value))
                                                           : __half_as_ushort(from_float<half>(value));
      store_with_policy(static_cast<std::uint16_t*>(entries) + entry, bits, policy);
    }
  }
};

// Slot -> logical token of dense decode: the first seq_len tokens, in order. kAttend: the CTA
// attends to its slots (else it only exports their scores).
struct DenseSlots {
  static constexpr bool kGather = false;
  static constexpr bool kAttend = true;
  static constexpr int kHeadsPerTile = 1;
  template <typename T>
  HYLRA_DEVICE static int num_slots(const DecodeParams<T>&, int, int, int seq_len) {
    return seq_len;
  }
  template <typename T>
  HYLRA_DEVICE static int token(const DecodeParams<T>&, int, int, int slot, int) {
    return slot;
  }
};

// Slot -> logical token of gather decode: entry slot / B of the (sequence, head) index row, token
// slot % B of that block; -1 for padding, ids past the sequence and tokens past its end.
struct GatheredSlots {
  static constexpr bool kGather = true;
  static constexpr bool kAttend = true;
  static constexpr int kHeadsPerTile = 1;
  template <typename T>
  HYLRA_DEVICE static int num_slots(const DecodeParams<T>& p, int batch, int kv_head, int) {
    return p.indices.row_length(batch, kv_head) << p.block_shift;
  }
  template <typename T>
  HYLRA_DEVICE static int token(const DecodeParams<T>& p, int batch, int kv_head, int slot, int seq_len) {
    const int id = p.indices.row(batch, kv_head)[slot >> p.block_shift];
    if (id < 0) return -1;
    const std::int64_t pos = (static_cast<std::int64_t>(id) << p.block_shift) + (slot & ((1 << p.block_shift) - 1));
    return pos < seq_len ? static_cast<int>(pos) : -1;
  }
};

// The dense slots of DenseScores: K is read and scored, V never.
struct ScoredSlots : DenseSlots {
  static constexpr bool kAttend = false;
};

// Dense slots (Base: DenseSlots or ScoredSlots) of kHeads adjacent KV heads per CTA: a tile holds
// the same kTileSlots / kHeads tokens of each head, and the MMA's 16 rows hold 16 / kHeads query
// rows per head, so the group must be at most that. In an NHD cache one token's rows of those
// heads are adjacent, so each copy instruction reads kHeads times longer contiguous runs
// (kHeadDim * 2 bytes per head otherwise). Logits of a row and a slot of different heads are
// masked out, so S = Q K^T and P V cost what they cost unpacked per byte read. Token scores only
// (a score block would span tiles of several heads).
template <typename Base, int kHeads>
struct PackedHeads : Base {
  static_assert(!Base::kGather && Base::kHeadsPerTile == 1, "dense slots of one head");
  static_assert(kHeads == 2 || kHeads == 4, "2 or 4 heads per tile");
  static constexpr int kHeadsPerTile = kHeads;
};

template <typename T, int kHeadDim, typename Slots>
using DecodeSmemOf = DecodeSmem<T, DecodePolicy<kHeadDim, Slots::kGather>, kHeadDim, Slots::kAttend>;

// Element offset of (row, 16-byte chunk) in a [rows, kHeadDim] tile: chunks XOR-swizzled by the
// row so that ldmatrix's eight rows of one column hit eight different bank groups.
template <typename T, int kHeadDim>
HYLRA_DEVICE int swizzle(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) * kVecElems<T>);
}

// Max-reduces each lane's kValues logits over the eight lanes of equal t (the group's rows) and
// scatters the results, one slot per lane: lane bits 4, 3, 2 each halve the values a lane keeps
// (while more than one is left; then they only reduce). Returns the lane's value; *v_kept gets the
// index of the value (into the original kValues) it stands for.
template <int kValues>
HYLRA_DEVICE float reduce_scatter_group_max(float (&x)[kValues], int lane, int* v_kept) {
  static_assert(kValues == 4 || kValues == 8, "4 or 8 values per lane");
  int kept = 0;
  float y[kValues];
#pragma unroll
  for (int i = 0; i < kValues; ++i) y[i] = x[i];
#pragma unroll
  for (int bit = 4, n = kValues; bit >= 2; --bit) {
    const bool hi = (lane >> bit) & 1;
    if (n > 1) {
      n /= 2;
#pragma unroll
      for (int i = 0; i < n; ++i) {
        const float keep = hi ? y[n + i] : y[i], give = hi ? y[i] : y[n + i];
        y[i] = fmaxf(keep, __shfl_xor_sync(0xffffffffu, give, 1 << bit));
      }
      kept = 2 * kept + (hi ? 1 : 0);
    } else {
      y[0] = fmaxf(y[0], __shfl_xor_sync(0xffffffffu, y[0], 1 << bit));
    }
  }
  *v_kept = kept;
  return y[0];
}

template <typename T, int kHeadDim, typename Slots>
__global__ void __launch_bounds__(DecodePolicy<kHeadDim, Slots::kGather>::kThreads)
    decode_kernel(const __grid_constant__ DecodeParams<T> p) {
  using Policy = DecodePolicy<kHeadDim, Slots::kGather>;
  using Smem = DecodeSmemOf<T, kHeadDim, Slots>;
  constexpr int kWarps = Policy::kWarps, kStages = Policy::kStages, kTile = Policy::kTileSlots;
  constexpr int kNBlocks = kTile / 8;                       // n8 MMA blocks of S per tile
  constexpr int kChunksPerRow = kHeadDim / kVecElems<T>;  // 16-byte chunks of one K row
  // Copies: 8 lanes cover one 128-byte line of a row, so one cp.async covers 4 rows; a lane
  // copies rows lane / 8 + 4 m (m < kRowsPerLane), chunks lane % 8 + 8 g (g < kLinesPerRow).
  constexpr int kLanesPerRow = 8;
  constexpr int kRowsPerLane = kTile * kLanesPerRow / 32;
  constexpr int kLinesPerRow = kChunksPerRow / kLanesPerRow;
  static_assert(kChunksPerRow % kLanesPerRow == 0, "rows are whole 128-byte lines");
  constexpr float kLn2 = 0.693147180559945309f;

  // 128-byte aligned: the ring's swizzle assumes it. Static __shared__ variables sit before this
  // buffer, and one 4-byte flag that shifted it by 16 bytes cost 11-17 % (H200, bench/RESULTS.md,
  // session 12).
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_smem = reinterpret_cast<T*>(smem + Smem::kQOffset);
  T* ring = reinterpret_cast<T*>(smem + Smem::kRingOffset);
  std::uint32_t* masks = reinterpret_cast<std::uint32_t*>(smem + Smem::kMaskOffset);
  float* warp_max = reinterpret_cast<float*>(smem + Smem::kStatsOffset);
  float* warp_sum = warp_max + kWarps * Policy::kMaxGroup;

  // kHeads KV heads per CTA (PackedHeads): tile slot s is token s % kTileTokens of head
  // kv_head + s / kTileTokens, and MMA row r is query r % kRowsPerHead of head r / kRowsPerHead.
  constexpr int kHeads = Slots::kHeadsPerTile;
  constexpr int kTileTokens = kTile / kHeads, kRowsPerHead = Policy::kMaxGroup / kHeads;
  static_assert(kTileTokens % 8 == 0, "an n8 block of S holds one head's slots");
  const int split = blockIdx.x, kv_head = blockIdx.y * kHeads, batch = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = p.group;
  const int seq_len = min(max(p.kv.seq_lens[batch], 0), p.kv.max_seq_len());
  const int chunk_start = split * p.chunk_slots;
  const int slot_end = min(Slots::num_slots(p, batch, kv_head, seq_len), chunk_start + p.chunk_slots);
  const int num_tiles = slot_end > chunk_start ? (slot_end - chunk_start + kTileTokens - 1) / kTileTokens : 0;
  // The CTA's query rows: `group` per head, heads in order. Output row i sits in MMA row mma_row(i).
  const std::int64_t q_row0 = static_cast<std::int64_t>(batch) * p.num_qo_heads + kv_head * group;
  const int out_rows = kHeads * group;
  auto mma_row = [&](int i) { return kHeads == 1 ? i : i / group * kRowsPerHead + i % group; };

  // Q of the group is loaded first, so that its latency overlaps the address lookups, and stored
  // to shared memory once the first tiles are requested. Rows past the group repeat its row 0:
  // their logits then never raise a max over the 16 MMA rows (the score export needs no row
  // mask), and their outputs are not written.
  constexpr int kQVecs = Policy::kMaxGroup * kChunksPerRow / Policy::kThreads;
  static_assert(kQVecs * Policy::kThreads == Policy::kMaxGroup * kChunksPerRow);
  Vec<T> q_vecs[kQVecs];
#pragma unroll
  for (int i = 0; i < kQVecs; ++i) {
    const int row = (threadIdx.x + i * Policy::kThreads) / kChunksPerRow;
    const int chunk = (threadIdx.x + i * Policy::kThreads) % kChunksPerRow;
    const int head = row / kRowsPerHead, head_row = row % kRowsPerHead;
    q_vecs[i] = Vec<T>::load(p.q + (q_row0 + head * group + (head_row < group ? head_row : 0)) * kHeadDim +
                             chunk * kVecElems<T>);
  }

  // The merge kernel (launched as a programmatic dependent) may start its prologue once every
  // CTA is resident; it still waits for this grid to finish before reading any partial state.
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif

  T* my_ring = ring + warp * kStages * Smem::kStageElems;
  std::uint32_t* my_masks = masks + warp * kStages;
  const int run_mask = (1 << p.run_shift) - 1;
  auto tile_of = [&](int j) { return (((j >> p.run_shift) * kWarps + warp) << p.run_shift) | (j & run_mask); };

  // A tile's addresses resolve in three dependent steps, each issued one loop iteration before
  // the next needs it, so their latencies hide behind compute: lanes 0 .. kTile-1 look up the
  // logical token of their slot (an index-list read in gather decode), then its physical page (a
  // block-table read), then the copy starts. -1 marks a skipped slot at every step.
  auto token_of = [&](int tile) {
    const int slot = chunk_start + tile * kTileTokens + lane % kTileTokens;
    return lane < kTile && tile < num_tiles && slot < slot_end ? Slots::token(p, batch, kv_head, slot, seq_len) : -1;
  };
  auto page_of = [&](int pos) { return pos >= 0 ? p.kv.physical_page(batch, pos >> p.page_shift) : -1; };
  // V rows sit at a fixed byte distance from K rows (two pools, or one interleaved pool).
  const std::uintptr_t v_delta =
      reinterpret_cast<std::uintptr_t>(p.kv.v_data) - reinterpret_cast<std::uintptr_t>(p.kv.k_data);
  const int copy_sub = lane % kLanesPerRow, copy_row = lane / kLanesPerRow;
  // Shared-memory element offset of a lane's chunk of row copy_row + 4 m, line g: the swizzle
  // (chunk ^ (row & 7)) only changes the chunk's low three bits, and row & 7 = copy_row ^ 4 (m & 1).
  const int copy_dst[2] = {copy_row * kHeadDim + (copy_sub ^ copy_row) * kVecElems<T>,
                           copy_row * kHeadDim + (copy_sub ^ copy_row ^ 4) * kVecElems<T>};
  // Copies the tile whose slots resolved to (pos, page) into stage `stage`, zero-filling skips.
  auto issue = [&](int pos, int page, int stage) {
    const bool ok = pos >= 0 && page >= 0 && page < p.kv.num_pages;
    const int head = kv_head + (kHeads == 1 ? 0 : lane / kTileTokens);
    const T* row_k = ok ? p.kv.k_data + p.kv.offset(page, pos & ((1 << p.page_shift) - 1), head) : p.kv.k_data;
    const std::uint32_t valid = __ballot_sync(0xffffffffu, ok);
    if (lane == 0) my_masks[stage] = valid;
    const std::uint32_t lane_valid = valid >> copy_row;
    T* k_tile = my_ring + stage * Smem::kStageElems;
    T* v_tile = k_tile + Smem::kTileElems;
#pragma unroll
    for (int m = 0; m < kRowsPerLane; ++m) {
      const T* k_src = reinterpret_cast<const T*>(
          __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(row_k), copy_row + 4 * m));
      const T* v_src = reinterpret_cast<const T*>(reinterpret_cast<std::uintptr_t>(k_src) + v_delta);
      const int bytes = (lane_valid >> (4 * m)) & 1 ? 16 : 0;
      const int dst = copy_dst[m & 1] + 4 * m * kHeadDim;
#pragma unroll
      for (int g = 0; g < kLinesPerRow; ++g) {
        const int src = (copy_sub + kLanesPerRow * g) * kVecElems<T>;
        // K/V keep the default L2 policy: evict-first measured no gain once the benchmark's L2
        // flush left clean lines (gather B=8 29.9 vs 29.8 us; H200, 2026-11-28), and cost dense
        // decode 2-5 % under a flush that leaves dirty ones (bench/RESULTS.md).
        cp_async_16(k_tile + dst + g * kLanesPerRow * kVecElems<T>, k_src + src, bytes);
        if constexpr (Slots::kAttend) cp_async_16(v_tile + dst + g * kLanesPerRow * kVecElems<T>, v_src + src, bytes);
      }
    }
  };

  // Per-lane state: rows g and g + 8 of the group (index 0 and 1).
  const int g = lane / 4, t = lane % 4;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  float acc[kHeadDim / 8][4] = {};
  const bool exporting = p.scores.scores != nullptr;
  const int score_row_length = exporting ? p.scores.row_length(p.kv.max_seq_len()) : 0;
  const std::int64_t score_row0 = static_cast<std::int64_t>(batch) * p.kv.num_kv_heads + kv_head;
  const ExportRow score_row = exporting ? ExportRow::of(p.scores, score_row0) : ExportRow{};
  float block_score = -INFINITY;

  // Prologue: each lookup step for all the tiles the ring takes first (and the next two
  // addresses) at once, one memory round trip per step rather than per tile.
  int pos[kStages + 1], page[kStages];
#pragma unroll
  for (int s = 0; s <= kStages; ++s) pos[s] = token_of(tile_of(s));
#pragma unroll
  for (int s = 0; s < kStages; ++s) page[s] = page_of(pos[s]);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (tile_of(s) < num_tiles) issue(pos[s], page[s], s);
    cp_async_commit();
  }
  // Address pipeline: (next_pos, next_page) for the next tile to copy, after_pos for the one after.
  int next_pos = pos[kStages - 1];
  int next_page = page[kStages - 1];
  int after_pos = pos[kStages];
#pragma unroll
  for (int i = 0; i < kQVecs; ++i) {
    const int row = (threadIdx.x + i * Policy::kThreads) / kChunksPerRow;
    const int chunk = (threadIdx.x + i * Policy::kThreads) % kChunksPerRow;
    q_vecs[i].store(q_smem + swizzle<T, kHeadDim>(row, chunk));
  }
  __syncthreads();

  const int lane_head_row = g / kRowsPerHead;  // head of MMA row g (row g + 8: add 8 / kRowsPerHead)
  for (int j = 0; tile_of(j) < num_tiles; ++j) {
    const int ahead = j + kStages - 1;
    if (tile_of(ahead) < num_tiles) issue(next_pos, next_page, ahead % kStages);
    cp_async_commit();
    next_pos = after_pos;
    next_page = page_of(after_pos);
    after_pos = token_of(tile_of(ahead + 2));
    cp_async_wait<kStages - 1>();
    __syncwarp();

    const int stage = j % kStages;
    const T* k_tile = my_ring + stage * Smem::kStageElems;
    const T* v_tile = k_tile + Smem::kTileElems;
    const std::uint32_t valid = my_masks[stage];

    // S = Q K^T for 16 group rows x kTile slots: s[n] covers slots 8n .. 8n + 7.
    float s[kNBlocks][4] = {};
    const int mi = lane / 8, mr = lane % 8;
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      std::uint32_t a[4];
      ldmatrix_x4<false>(a, q_smem + swizzle<T, kHeadDim>((mi & 1) * 8 + mr, 2 * ks + (mi >> 1)));
#pragma unroll
      for (int np = 0; np < kNBlocks / 2; ++np) {
        std::uint32_t b[4];
        ldmatrix_x4<false>(b, k_tile + swizzle<T, kHeadDim>(np * 16 + (mi >> 1) * 8 + mr, 2 * ks + (mi & 1)));
        mma_16x8x16<T>(s[2 * np], a, b[0], b[1]);
        mma_16x8x16<T>(s[2 * np + 1], a, b[2], b[3]);
      }
    }
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kNBlocks; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int slot = n * 8 + 2 * t + (e & 1);
        const bool same_head = kHeads == 1 || n * 8 / kTileTokens == lane_head_row + (e >> 1) * (8 / kRowsPerHead);
        s[n][e] = (valid >> slot) & 1 && same_head ? s[n][e] * p.scale_log2 : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[n][e]);
      }

    if (exporting) {
      // Max over the 16 MMA rows (rows past the group repeat row 0) of each slot's logit, in
      // natural units. Lane (g, t) holds slots 8n + 2t + c, c in {0, 1}, for rows g and g + 8.
      float x[2 * kNBlocks];
#pragma unroll
      for (int v = 0; v < 2 * kNBlocks; ++v) x[v] = fmaxf(s[v >> 1][v & 1], s[v >> 1][2 + (v & 1)]);
      const int tile_pos = chunk_start + tile_of(j) * kTileTokens;
      if (p.scores.block_size == 1) {
        // Reduce-scatter over the 8 lanes of equal t: 7 shuffles for 32 slots (3 for 16, where
        // lane bit 2 only duplicates), one coalesced store per tile (per head when packed: the
        // other heads' logits are -inf in each slot's column).
        int v = 0;
        const float z = reduce_scatter_group_max(x, lane, &v);
        const int slot = 8 * (v >> 1) + 2 * t + (v & 1);
        const int pos = tile_pos + slot % kTileTokens;
        if ((kTile == 32 || (lane & 4) == 0) && pos < score_row_length) {
          // Evict-last: the top-k that reads the scores next finds them in L2, and their
          // write-back (~1.7 us per MB inside this kernel) leaves the K/V stream. It pays while
          // they fit beside the stream (8 MB: export 1.05x -> 1.03x), not at 33 MB.
          const ExportRow row = kHeads == 1 ? score_row : ExportRow::of(p.scores, score_row0 + slot / kTileTokens);
          row.store(pos, z * kLn2, l2_evict_last_policy());
        }
      } else if constexpr (kHeads > 1) {
        // Never taken: heads are packed for token scores only (can_pack_heads, split_kv.cuh).
      } else if (kTile > 16 && p.scores.block_size < kTile) {
        // Two 16-slot blocks per tile: lane bit 4 picks the block, then a butterfly over the rest.
        float lo = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
        float hi = -INFINITY;
#pragma unroll
        for (int v = 4; v < 2 * kNBlocks; ++v) hi = fmaxf(hi, x[v]);
        const bool upper = lane & 16;
        float m = fmaxf(upper ? hi : lo, __shfl_xor_sync(0xffffffffu, upper ? lo : hi, 16));
#pragma unroll
        for (int mask = 1; mask < 16; mask *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, mask));
        const int entry = tile_pos / 16 + (upper ? 1 : 0);
        if ((lane & 15) == 0 && entry < score_row_length) score_row.store(entry, m * kLn2);
      } else {
        float m = x[0];
#pragma unroll
        for (int v = 1; v < 2 * kNBlocks; ++v) m = fmaxf(m, x[v]);
#pragma unroll
        for (int mask = 1; mask < 32; mask *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, mask));
        block_score = fmaxf(block_score, m);
        // A block ends here, or this warp's run (which ends on a block boundary) stops here.
        const bool block_done = ((tile_pos + kTile) & (p.scores.block_size - 1)) == 0 || tile_of(j + 1) >= num_tiles;
        if (block_done) {
          if (lane == 0) score_row.store(tile_pos / p.scores.block_size, block_score * kLn2);
          block_score = -INFINITY;
        }
      }
    }

    if constexpr (!Slots::kAttend) {  // scores only: the tile is done
      __syncwarp();                    // the stage is refilled next iteration
      continue;
    }

    // Online softmax. The accumulator is rescaled only when some row's max grows, which after the
    // first tiles is rare: the skipped factor would be exactly 1, so results are unchanged.
    float p_val[kNBlocks][4], base[2];
    bool grew = false;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      grew |= tile_max[r] > row_max[r];
    }
    if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float new_max = fmaxf(row_max[r], tile_max[r]);
        const float rescale = exp2f(row_max[r] - (new_max == -INFINITY ? 0.0f : new_max));
        row_max[r] = new_max;
        row_sum[r] *= rescale;
#pragma unroll
        for (int n = 0; n < kHeadDim / 8; ++n) {
          acc[n][2 * r] *= rescale;
          acc[n][2 * r + 1] *= rescale;
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      base[r] = row_max[r] == -INFINITY ? 0.0f : row_max[r];  // all skipped so far: keep zeros
#pragma unroll
      for (int n = 0; n < kNBlocks; ++n)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          p_val[n][2 * r + c] = exp2f(s[n][2 * r + c] - base[r]);
          row_sum[r] += p_val[n][2 * r + c];
        }
    }
    // The S accumulator layout of two 16x8 tiles is the A layout of one 16x16 operand; 16-slot
    // step kk of the tile multiplies V rows 16 kk .. 16 kk + 15.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      const std::uint32_t pa[4] = {pack2<T>(p_val[2 * kk][0], p_val[2 * kk][1]),
                                   pack2<T>(p_val[2 * kk][2], p_val[2 * kk][3]),
                                   pack2<T>(p_val[2 * kk + 1][0], p_val[2 * kk + 1][1]),
                                   pack2<T>(p_val[2 * kk + 1][2], p_val[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < kHeadDim / 16; ++dn) {
        std::uint32_t b[4];
        ldmatrix_x4<true>(b, v_tile + swizzle<T, kHeadDim>(kk * 16 + (mi & 1) * 8 + mr, 2 * dn + (mi >> 1)));
        mma_16x8x16<T>(acc[2 * dn], pa, b[0], b[1]);
        mma_16x8x16<T>(acc[2 * dn + 1], pa, b[2], b[3]);
      }
    }
    __syncwarp();  // the stage is refilled next iteration
  }
  cp_async_wait<0>();

  // Score entries this CTA owns but no tile covered (past the sequence end): -inf.
  if (exporting) {
    const int covered_end = chunk_start + num_tiles * kTileTokens;
    const int bs = p.scores.block_size;
    const int first = (covered_end + bs - 1) / bs;
    const int last = min(score_row_length, (chunk_start + p.chunk_slots + bs - 1) / bs);
    for (int h = 0; h < kHeads; ++h) {
      const ExportRow row = ExportRow::of(p.scores, score_row0 + h);
      for (int e = first + threadIdx.x; e < last; e += Policy::kThreads) row.store(e, -INFINITY);
    }
  }
  if constexpr (Slots::kAttend) {  // scores only: nothing to combine or write
    // Combine the warps: per-row statistics first, then the unnormalized accumulators of the
    // group's rows (rows g + 8 only exist in groups of more than 8).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }
    __syncthreads();  // every warp is done with its ring before it is reused
    float* combine = reinterpret_cast<float*>(ring);  // [kWarps][kMaxGroup][kHeadDim]
    if (t == 0) {
      warp_max[warp * Policy::kMaxGroup + g] = row_max[0];
      warp_max[warp * Policy::kMaxGroup + g + 8] = row_max[1];
      warp_sum[warp * Policy::kMaxGroup + g] = row_sum[0];
      warp_sum[warp * Policy::kMaxGroup + g + 8] = row_sum[1];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (r == 1 && kHeads == 1 && group <= 8) continue;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        float* dst = combine + (warp * Policy::kMaxGroup + g + 8 * r) * kHeadDim + n * 8 + 2 * t;
        dst[0] = acc[n][2 * r];
        dst[1] = acc[n][2 * r + 1];
      }
    }
    __syncthreads();

    // One thread per row turns the warps' statistics into weights (their rescale over the CTA's
    // sum, in place of warp_sum) and the row's LSE (in place of warp 0's max), so that the output
    // loop below is only multiply-adds: no exponential or division per element.
    if (threadIdx.x < out_rows) {
      const int row = mma_row(threadIdx.x);
      float cta_max = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) cta_max = fmaxf(cta_max, warp_max[w * Policy::kMaxGroup + row]);
      float scale[kWarps], sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        scale[w] = cta_max == -INFINITY ? 0.0f : exp2f(warp_max[w * Policy::kMaxGroup + row] - cta_max);
        sum += scale[w] * warp_sum[w * Policy::kMaxGroup + row];
      }
      const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) warp_sum[w * Policy::kMaxGroup + row] = scale[w] * inverse;
      warp_max[row] = sum > 0.0f ? (cta_max + log2f(sum)) * kLn2 : -INFINITY;
    }
    __syncthreads();
    const float* const weight = warp_sum;
    const float* const row_lse = warp_max;

    // Four consecutive elements per thread and step: 16-byte shared-memory reads and partial stores.
    constexpr int kQuadsPerRow = kHeadDim / 4;
    for (int i = threadIdx.x; i < out_rows * kQuadsPerRow; i += Policy::kThreads) {
      const int out_row = i / kQuadsPerRow, row = mma_row(out_row), d = i % kQuadsPerRow * 4;
      float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float4 part = *reinterpret_cast<const float4*>(combine + (w * Policy::kMaxGroup + row) * kHeadDim + d);
        const float scale = weight[w * Policy::kMaxGroup + row];
        o[0] += scale * part.x;
        o[1] += scale * part.y;
        o[2] += scale * part.z;
        o[3] += scale * part.w;
      }
      const std::int64_t q_row = q_row0 + out_row;
      if (p.num_splits == 1) {
        Vec<T, 4> value;
#pragma unroll
        for (int e = 0; e < 4; ++e) value.data[e] = from_float<T>(o[e]);
        value.store(p.out + q_row * kHeadDim + d);
        if (p.lse != nullptr && d == 0) p.lse[q_row] = row_lse[row];
      } else {
        const std::int64_t state = q_row * p.num_splits + split;
        *reinterpret_cast<float4*>(p.partial_o + state * kHeadDim + d) = make_float4(o[0], o[1], o[2], o[3]);
        if (d == 0) p.partial_lse[state] = row_lse[row];
      }
    }
  }
}

}  // namespace detail
HYLRA_NAMESPACE_END
