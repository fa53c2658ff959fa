// BlockTopK (the CTA primitive) against reference::topk_row: one tile per block, partial tiles
// through num_valid, largest and smallest, every score pattern, three block shapes (one with
// fewer threads than radix bins) and digit widths of 8, 11 and 3 bits; SelectLargestKeys on the
// keys of one radix bucket.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hylra/reference/topk.hpp"
#include "hylra/topk/radix_key.cuh"
#include "hylra/topk/block_topk.cuh"
#include "topk_test_util.cuh"

using namespace hylra;
using namespace topk_test;

namespace {

template <typename T, int THREADS, int ITEMS, int RADIX_BITS = 8>
__global__ void block_topk_kernel(const T* scores, const int* num_valid, int k, bool largest, T* out_keys,
                                  int* out_positions, int* out_counts) {
  using TopK = BlockTopK<T, THREADS, ITEMS, int, RADIX_BITS>;
  __shared__ typename TopK::TempStorage storage;
  constexpr int kTile = THREADS * ITEMS;
  T keys[ITEMS];
  int positions[ITEMS];
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    positions[i] = threadIdx.x * ITEMS + i;
    keys[i] = scores[blockIdx.x * kTile + positions[i]];
  }
  T* const tile_keys = out_keys + static_cast<long>(blockIdx.x) * k;
  int* const tile_positions = out_positions + static_cast<long>(blockIdx.x) * k;
  TopK topk(storage);
  const int selected = largest ? topk.SelectLargest(keys, positions, tile_keys, tile_positions, k, num_valid[blockIdx.x])
                               : topk.SelectSmallest(keys, positions, tile_keys, tile_positions, k, num_valid[blockIdx.x]);
  // The slot form numbers the same items (the storage is reused after a barrier).
  __syncthreads();
  int slots[ITEMS];
  const int again = largest ? topk.SelectLargest(keys, slots, k, num_valid[blockIdx.x])
                            : topk.SelectSmallest(keys, slots, k, num_valid[blockIdx.x]);
  bool consistent = again == selected;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i)
    if (slots[i] >= 0) consistent = consistent && slots[i] < selected && tile_positions[slots[i]] == positions[i];
  const int all_consistent = __syncthreads_and(consistent);
  if (threadIdx.x == 0) out_counts[blockIdx.x] = all_consistent ? selected : -2;
}

template <typename T, int THREADS, int ITEMS, int RADIX_BITS = 8>
void check_block_topk() {
  constexpr int kTile = THREADS * ITEMS;
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const int tiles = 24;
  for (Pattern pattern : kAllPatterns) {
    for (int k : {1, 7, kTile / 2, kTile - 1, kTile, kTile + 5}) {
      const bool largest = (k + static_cast<int>(pattern)) % 2 == 0;
      CAPTURE(name(pattern));
      CAPTURE(k);
      CAPTURE(largest);
      const std::vector<T> scores = make_scores<T>(static_cast<std::size_t>(tiles) * kTile, pattern, rng);
      std::vector<int> num_valid(tiles);
      for (int t = 0; t < tiles; ++t) num_valid[t] = t == 0 ? kTile : (t == 1 ? 0 : static_cast<int>(rng() % (kTile + 1)));
      DeviceBuffer<T> d_scores(scores.size()), d_keys(static_cast<std::size_t>(tiles) * k);
      DeviceBuffer<int> d_valid(tiles), d_positions(static_cast<std::size_t>(tiles) * k), d_counts(tiles);
      d_scores.upload(scores);
      d_valid.upload(num_valid);
      d_keys.poison();
      d_positions.poison();
      d_counts.poison();
      block_topk_kernel<T, THREADS, ITEMS, RADIX_BITS><<<tiles, THREADS>>>(d_scores.ptr, d_valid.ptr, k, largest, d_keys.ptr,
                                                               d_positions.ptr, d_counts.ptr);
      REQUIRE(cudaGetLastError() == cudaSuccess);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const auto keys = d_keys.download();
      const auto positions = d_positions.download();
      const auto counts = d_counts.download();
      for (int t = 0; t < tiles; ++t) {
        CAPTURE(t);
        const T* tile = scores.data() + static_cast<std::size_t>(t) * kTile;
        const auto ref = reference::topk_row(tile, num_valid[t], k, largest);
        const int selected = static_cast<int>(std::count_if(ref.begin(), ref.end(), [](int x) { return x >= 0; }));
        REQUIRE(counts[t] == selected);
        std::vector<int> want(ref.begin(), ref.begin() + selected);
        std::vector<int> got(positions.begin() + static_cast<long>(t) * k,
                             positions.begin() + static_cast<long>(t) * k + selected);
        for (int j = 0; j < selected; ++j)
          REQUIRE(std::memcmp(&keys[static_cast<long>(t) * k + j], &tile[got[j]], sizeof(T)) == 0);
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
        REQUIRE(got == want);
      }
    }
  }
}

// SelectLargestKeys on RadixKey bits of the tile's scores (kInvalid from num_valid on), examining
// only the low `varying_bits`; writes each item's slot (-1: not selected) and the count.
template <typename T, int THREADS, int ITEMS, int RADIX_BITS = 8>
__global__ void select_keys_kernel(const T* scores, const int* num_valid, int k, bool largest, int varying_bits,
                                   int* out_slots, int* out_counts) {
  using TopK = BlockTopK<T, THREADS, ITEMS, int, RADIX_BITS>;
  using Key = RadixKey<T>;
  __shared__ typename TopK::TempStorage storage;
  constexpr int kTile = THREADS * ITEMS;
  typename TopK::KeyBits keys[ITEMS];
  int slots[ITEMS];
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int index = threadIdx.x * ITEMS + i;
    keys[i] = index < num_valid[blockIdx.x] ? Key::make(scores[blockIdx.x * kTile + index], largest) : Key::kInvalid;
  }
  const int selected = TopK(storage).SelectLargestKeys(keys, slots, k, varying_bits);
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) out_slots[blockIdx.x * kTile + threadIdx.x * ITEMS + i] = slots[i];
  if (threadIdx.x == 0) out_counts[blockIdx.x] = selected;
}

// Tiles whose valid scores share every bit from `low_bits` up (4.0 plus up to 2^low_bits - 1 units
// in the last place; negated for smallest-first), drawn from `distinct` values when > 0 so that
// exact ties cross the k-th slot. The selected set must be reference::topk_row's, and the slots
// 0 .. count-1, each once.
template <typename T, int THREADS, int ITEMS, int RADIX_BITS = 8>
void check_select_keys(int low_bits, int distinct) {
  constexpr int kTile = THREADS * ITEMS;
  auto seed = fresh_seed();
  CAPTURE(seed);
  CAPTURE(low_bits);
  CAPTURE(distinct);
  std::mt19937_64 rng(seed);
  const int tiles = 16;
  std::uint32_t four = 0;
  const T four_t = from_float<T>(4.0f);
  std::memcpy(&four, &four_t, sizeof(T));
  std::vector<std::uint32_t> values;
  for (int i = 0; i < distinct; ++i) values.push_back(static_cast<std::uint32_t>(rng() % (1u << low_bits)));
  for (int k : {1, 5, kTile / 3, kTile - 1, kTile + 2}) {
    for (const bool largest : {true, false}) {
      CAPTURE(k);
      CAPTURE(largest);
      std::vector<T> scores(static_cast<std::size_t>(tiles) * kTile);
      for (T& x : scores) {
        const std::uint32_t bits = four + (distinct > 0 ? values[rng() % distinct] : rng() % (1u << low_bits));
        std::memcpy(static_cast<void*>(&x), &bits, sizeof(T));
        if (!largest) x = from_float<T>(-to_float(x));
      }
      std::vector<int> num_valid(tiles);
      for (int t = 0; t < tiles; ++t) num_valid[t] = t == 0 ? kTile : (t == 1 ? 0 : static_cast<int>(rng() % (kTile + 1)));
      DeviceBuffer<T> d_scores(scores.size());
      DeviceBuffer<int> d_valid(tiles), d_slots(scores.size()), d_counts(tiles);
      d_scores.upload(scores);
      d_valid.upload(num_valid);
      d_slots.poison();
      d_counts.poison();
      select_keys_kernel<T, THREADS, ITEMS, RADIX_BITS><<<tiles, THREADS>>>(d_scores.ptr, d_valid.ptr, k, largest, low_bits,
                                                                d_slots.ptr, d_counts.ptr);
      REQUIRE(cudaGetLastError() == cudaSuccess);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const auto slots = d_slots.download();
      const auto counts = d_counts.download();
      for (int t = 0; t < tiles; ++t) {
        CAPTURE(t);
        const auto ref = reference::topk_row(scores.data() + static_cast<std::size_t>(t) * kTile, num_valid[t], k, largest);
        std::vector<int> want;
        for (int x : ref)
          if (x >= 0) want.push_back(x);
        REQUIRE(counts[t] == static_cast<int>(want.size()));
        std::vector<int> got, used(want.size(), 0);
        for (int i = 0; i < kTile; ++i) {
          const int slot = slots[static_cast<std::size_t>(t) * kTile + i];
          if (slot < 0) continue;
          REQUIRE(slot < counts[t]);
          REQUIRE(used[slot]++ == 0);
          got.push_back(i);
        }
        std::sort(want.begin(), want.end());
        REQUIRE(got == want);
      }
    }
  }
}

}  // namespace

TEST_CASE("BlockTopK::SelectLargestKeys on one radix bucket") {
  for (int distinct : {0, 3, 1}) {
    check_select_keys<float, 128, 4>(21, distinct);
    check_select_keys<float, 128, 4>(5, distinct);
    check_select_keys<half, 64, 3>(6, distinct);
    check_select_keys<__nv_bfloat16, 256, 8>(5, distinct);
    check_select_keys<float, 128, 4, 11>(21, distinct);  // BatchedTopK's fp32 refine: 11 + 10 bits
    check_select_keys<__nv_bfloat16, 256, 8, 5>(5, distinct);
  }
}

TEST_CASE("BlockTopK<float, 128, 4>") { check_block_topk<float, 128, 4>(); }
TEST_CASE("BlockTopK<half, 64, 3>") { check_block_topk<half, 64, 3>(); }
TEST_CASE("BlockTopK<bf16, 256, 8>") { check_block_topk<__nv_bfloat16, 256, 8>(); }
TEST_CASE("BlockTopK<float, 128, 4, int, 11>") { check_block_topk<float, 128, 4, 11>(); }
TEST_CASE("BlockTopK<half, 64, 3, int, 3>") { check_block_topk<half, 64, 3, 3>(); }
