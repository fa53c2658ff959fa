// BlockTopK: the k largest (or smallest) of the items a thread block holds in registers, in the
// shape of CUB's block primitives (cub::BlockRadixSort): the caller provides an aliasable
// TempStorage and each thread passes its ITEMS_PER_THREAD items in a blocked arrangement (thread t
// holds items t * ITEMS_PER_THREAD + i). Selection is exact: ties at the k-th score go to the lower
// item index, NaN is never selected, -0 equals +0, and items at or past num_valid are ignored.
//
// Method: radix select over RADIX_BITS-bit digits of RadixKey (by default 8: 2 passes for 16-bit
// scores, 4 for fp32, fewer when the k-th bucket is exhausted early), then one block scan that
// numbers the selected items in index order. Cost per call: one shared-memory histogram of
// 2^RADIX_BITS bins per pass plus one scan; no global memory traffic. Usable inside any kernel
// whose block has BLOCK_THREADS threads.
// SelectLargestKeys takes RadixKey bits directly, e.g. the keys of one bucket of an earlier radix
// pass, and skips the digits they already share (BatchedTopK refines its candidates so).
#pragma once

#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "hylra/core/config.hpp"
#include "hylra/topk/radix_bucket.cuh"
#include "hylra/topk/radix_key.cuh"

HYLRA_NAMESPACE_BEGIN

template <typename KeyT, int BLOCK_THREADS, int ITEMS_PER_THREAD, typename ValueT = int, int RADIX_BITS = 8>
class BlockTopK {
  using Key = RadixKey<KeyT>;
  using Bits = typename Key::Bits;
  // 8-bit digits by default: a 1 KB histogram, cheap next to the kernel that embeds this
  // primitive. Wider digits trade a larger histogram and scan for fewer passes.
  static constexpr int kDigitBits = RADIX_BITS;
  static_assert(RADIX_BITS >= 1 && RADIX_BITS <= 16, "RADIX_BITS: 1 to 16");
  using Bucket = BlockRadixBucket<BLOCK_THREADS, kDigitBits>;
  static constexpr int kBins = Bucket::kBins;
  // Counts of items above the threshold (low half) and tied with it (high half), scanned together.
  using CountScan = cub::BlockScan<unsigned long long, BLOCK_THREADS>;

  struct _TempStorage {
    int histogram[kBins];
    typename Bucket::TempStorage bucket;
    typename CountScan::TempStorage scan;
  };

 public:
  static constexpr int kTileItems = BLOCK_THREADS * ITEMS_PER_THREAD;
  using KeyBits = Bits;  // RadixKey<KeyT>::Bits
  struct TempStorage : cub::Uninitialized<_TempStorage> {};

  HYLRA_DEVICE explicit BlockTopK(TempStorage& storage) : storage_(storage.Alias()) {}

  // Numbers the k largest valid items: slots[i] is the item's place in [0, selected) or -1, where
  // selected = min(k, valid items) is returned to every thread. Selected items above the k-th
  // score come first, in index order, then the tied ones, in index order.
  HYLRA_DEVICE int SelectLargest(const KeyT (&keys)[ITEMS_PER_THREAD], int (&slots)[ITEMS_PER_THREAD], int k,
                                 int num_valid = kTileItems) {
    return select<true>(keys, slots, k, num_valid);
  }

  HYLRA_DEVICE int SelectSmallest(const KeyT (&keys)[ITEMS_PER_THREAD], int (&slots)[ITEMS_PER_THREAD], int k,
                                  int num_valid = kTileItems) {
    return select<false>(keys, slots, k, num_valid);
  }

  // As SelectLargest on RadixKey bits (RadixKey<KeyT>::largest or ::smallest of the scores),
  // largest key first; RadixKey::kInvalid items are never selected. The valid keys must agree
  // on every bit from `varying_bits` up (keys of one radix bucket): only the low digits are
  // examined, so ties on the varying bits go to the lower item index.
  HYLRA_DEVICE int SelectLargestKeys(const KeyBits (&keys)[ITEMS_PER_THREAD], int (&slots)[ITEMS_PER_THREAD], int k,
                                     int varying_bits = Key::kBits) {
    return select_keys(keys, slots, k, varying_bits);
  }

  // As above, and scatters each selected item's key and value to out_keys[slot] and
  // out_values[slot] (shared or global memory; either may be null). Slots past the returned
  // count are left untouched.
  HYLRA_DEVICE int SelectLargest(const KeyT (&keys)[ITEMS_PER_THREAD], const ValueT (&values)[ITEMS_PER_THREAD],
                                 KeyT* out_keys, ValueT* out_values, int k, int num_valid = kTileItems) {
    int slots[ITEMS_PER_THREAD];
    const int selected = select<true>(keys, slots, k, num_valid);
    scatter(keys, values, slots, out_keys, out_values);
    return selected;
  }

  HYLRA_DEVICE int SelectSmallest(const KeyT (&keys)[ITEMS_PER_THREAD], const ValueT (&values)[ITEMS_PER_THREAD],
                                  KeyT* out_keys, ValueT* out_values, int k, int num_valid = kTileItems) {
    int slots[ITEMS_PER_THREAD];
    const int selected = select<false>(keys, slots, k, num_valid);
    scatter(keys, values, slots, out_keys, out_values);
    return selected;
  }

 private:
  template <bool LARGEST>
  HYLRA_DEVICE int select(const KeyT (&scores)[ITEMS_PER_THREAD], int (&slots)[ITEMS_PER_THREAD], int k,
                          int num_valid) {
    Bits keys[ITEMS_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ITEMS_PER_THREAD; ++i) {
      const int index = threadIdx.x * ITEMS_PER_THREAD + i;
      keys[i] = index < num_valid ? Key::make(scores[i], LARGEST) : Key::kInvalid;
    }
    return select_keys(keys, slots, k, Key::kBits);
  }

  HYLRA_DEVICE int select_keys(const Bits (&keys)[ITEMS_PER_THREAD], int (&slots)[ITEMS_PER_THREAD], int k,
                               int varying_bits) {
#pragma unroll
    for (int i = 0; i < ITEMS_PER_THREAD; ++i) slots[i] = -1;
    if (k <= 0) return 0;

    // Invariant: the selection is every valid key whose masked bits exceed `prefix`, plus the
    // first `take` (in index order) whose masked bits equal it. Bits from varying_bits up are
    // equal in all valid keys, so the mask may leave them out.
    Bits prefix = 0, mask = 0;
    int take = k;
    for (int shift = varying_bits; shift > 0;) {
      const int width = shift < kDigitBits ? shift : kDigitBits;
      shift -= width;
      const Bits digit_mask = static_cast<Bits>((1u << width) - 1u);
      for (int b = threadIdx.x; b < kBins; b += BLOCK_THREADS) storage_.histogram[b] = 0;
      __syncthreads();
#pragma unroll
      for (int i = 0; i < ITEMS_PER_THREAD; ++i)
        if (keys[i] != Key::kInvalid && (keys[i] & mask) == prefix)
          atomicAdd(&storage_.histogram[(keys[i] >> shift) & digit_mask], 1);
      __syncthreads();
      const RadixBucket bucket =
          Bucket(storage_.bucket).find([this](int digit) { return storage_.histogram[digit]; }, take);
      if (bucket.total < take) {  // fewer valid items than k (first pass only): take them all
        take = bucket.total;
        break;
      }
      prefix |= static_cast<Bits>(bucket.digit) << shift;
      mask |= static_cast<Bits>(digit_mask << shift);
      take = bucket.remaining;
      if (bucket.remaining == bucket.count) break;  // the whole bucket is taken: no finer digit needed
    }

    unsigned long long counts = 0;
#pragma unroll
    for (int i = 0; i < ITEMS_PER_THREAD; ++i) {
      if (keys[i] == Key::kInvalid) continue;
      const Bits masked = keys[i] & mask;
      counts += masked > prefix ? 1ull : (masked == prefix ? 1ull << 32 : 0ull);
    }
    unsigned long long before, totals;
    CountScan(storage_.scan).ExclusiveSum(counts, before, totals);
    const int above_total = static_cast<int>(totals & 0xFFFFFFFFu);
    const int tied_total = static_cast<int>(totals >> 32);  // < take only when no digit was examined
    int above = static_cast<int>(before & 0xFFFFFFFFu);
    int tied = static_cast<int>(before >> 32);
#pragma unroll
    for (int i = 0; i < ITEMS_PER_THREAD; ++i) {
      if (keys[i] == Key::kInvalid) continue;
      const Bits masked = keys[i] & mask;
      if (masked > prefix) {
        slots[i] = above++;
      } else if (masked == prefix) {
        if (tied < take) slots[i] = above_total + tied;
        ++tied;
      }
    }
    return above_total + (tied_total < take ? tied_total : take);
  }

  HYLRA_DEVICE static void scatter(const KeyT (&keys)[ITEMS_PER_THREAD], const ValueT (&values)[ITEMS_PER_THREAD],
                                   const int (&slots)[ITEMS_PER_THREAD], KeyT* out_keys, ValueT* out_values) {
#pragma unroll
    for (int i = 0; i < ITEMS_PER_THREAD; ++i) {
      if (slots[i] < 0) continue;
      if (out_keys) out_keys[slots[i]] = keys[i];
      if (out_values) out_values[slots[i]] = values[i];
    }
  }

  _TempStorage& storage_;
};

HYLRA_NAMESPACE_END
