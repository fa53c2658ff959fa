// BlockTopK (the CTA primitive) against reference::topk_row: one tile per block, partial tiles
// through num_valid, largest and smallest, every score pattern, three block shapes (one with
// fewer threads than radix bins).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hylra/reference/topk.hpp"
#include "hylra/topk/block_topk.cuh"
#include "topk_test_util.cuh"

using namespace hylra;
using namespace topk_test;

namespace {

template <typename T, int THREADS, int ITEMS>
__global__ void block_topk_kernel(const T* scores, const int* num_valid, int k, bool largest, T* out_keys,
                                  int* out_positions, int* out_counts) {
  using TopK = BlockTopK<T, THREADS, ITEMS>;
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

template <typename T, int THREADS, int ITEMS>
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
      block_topk_kernel<T, THREADS, ITEMS><<<tiles, THREADS>>>(d_scores.ptr, d_valid.ptr, k, largest, d_keys.ptr,
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

}  // namespace

TEST_CASE("BlockTopK<float, 128, 4>") { check_block_topk<float, 128, 4>(); }
TEST_CASE("BlockTopK<half, 64, 3>") { check_block_topk<half, 64, 3>(); }
TEST_CASE("BlockTopK<bf16, 256, 8>") { check_block_topk<__nv_bfloat16, 256, 8>(); }
