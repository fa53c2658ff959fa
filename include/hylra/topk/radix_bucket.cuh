// BlockRadixBucket: one step of a block-wide radix select. Given the histogram of one digit of
// RADIX_BITS bits over the candidates still in play and how many of them must still be taken, it finds the digit
// bucket that holds the k-th largest candidate. Every top-k kernel of hylra iterates this step
// from the most significant digit down.
#pragma once

#include <cub/block/block_scan.cuh>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

// Outcome of one step, the same in every thread of the block.
struct RadixBucket {
  int digit;      // bucket holding the k-th largest candidate
  int remaining;  // candidates still to take from that bucket (1 <= remaining <= count)
  int count;      // candidates in that bucket
  int total;      // candidates over all buckets
};

template <int BLOCK_THREADS, int RADIX_BITS>
class BlockRadixBucket {
 public:
  static constexpr int kBins = 1 << RADIX_BITS;

 private:
  // Thread t owns bins counted from the top, so an inclusive prefix sum gives "candidates with
  // a digit >= this bin".
  static constexpr int kBinsPerThread = (kBins + BLOCK_THREADS - 1) / BLOCK_THREADS;
  using BlockScan = cub::BlockScan<int, BLOCK_THREADS>;

  struct _TempStorage {
    typename BlockScan::TempStorage scan;
    RadixBucket result;
  };

 public:
  struct TempStorage : cub::Uninitialized<_TempStorage> {};

  HYLRA_DEVICE explicit BlockRadixBucket(TempStorage& storage) : storage_(storage.Alias()) {}

  // `bin_count(d)` returns the candidates whose digit is d; it is called by the threads that own
  // d. Needs `want` >= 1; when fewer candidates than `want` exist, the result's total says so and
  // its digit is meaningless. Ends with a barrier, so the result is visible to all threads; as
  // with CUB's primitives, a barrier must separate two calls on the same TempStorage.
  template <typename BinCount>
  HYLRA_DEVICE RadixBucket find(BinCount bin_count, int want) {
    int counts[kBinsPerThread];
    int at_least[kBinsPerThread];
#pragma unroll
    for (int i = 0; i < kBinsPerThread; ++i) {
      const int from_top = threadIdx.x * kBinsPerThread + i;
      counts[i] = from_top < kBins ? bin_count(kBins - 1 - from_top) : 0;
    }
    int total;
    BlockScan(storage_.scan).InclusiveSum(counts, at_least, total);
#pragma unroll
    for (int i = 0; i < kBinsPerThread; ++i) {
      const int from_top = threadIdx.x * kBinsPerThread + i;
      if (from_top < kBins && at_least[i] >= want && at_least[i] - counts[i] < want)
        storage_.result = RadixBucket{kBins - 1 - from_top, want - (at_least[i] - counts[i]), counts[i], total};
    }
    if (threadIdx.x == 0 && total < want) storage_.result = RadixBucket{0, want, 0, total};
    __syncthreads();
    return storage_.result;
  }

 private:
  _TempStorage& storage_;
};

HYLRA_NAMESPACE_END
