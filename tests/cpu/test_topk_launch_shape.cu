// How BatchedTopK cuts rows into cluster segments (detail::topk_launch_shape): a host function
// of (rows, N, SMs), checked on an H200's 132 SMs against the splits the benchmarks chose
// (bench/RESULTS.md) and, over a sweep, against its invariants. Host only: no GPU needed.
#include <doctest/doctest.h>

#include <cuda_bf16.h>

#include <cstdint>

#include "hylra/topk/batched_topk.cuh"

using namespace hylra;

namespace {

constexpr int kSms = 132;

template <typename T>
void check_shape(int rows, int cols, int cluster, int segment, bool cached, bool refine) {
  CAPTURE(rows);
  CAPTURE(cols);
  const detail::TopKLaunchShape shape = detail::topk_launch_shape<T, BatchedTopKPolicy>(rows, cols, kSms);
  CHECK(shape.cluster_size == cluster);
  CHECK(shape.segment == segment);
  CHECK(shape.cached == cached);
  CHECK(shape.refine == refine);
}

}  // namespace

TEST_CASE("topk_launch_shape: the splits measured on the H200") {
  // One wave is 90 % of 2 CTAs x 132 SMs = 237 CTAs: 64 rows x 4 CTAs would not fit (only 248 of
  // the 264 slots fill with 4-CTA clusters), so 64 x 32K runs as 2 x 16K (17.3 us, 4 x 8K 27.0).
  // 16K-key segments refine the k-th bucket in one CTA, except in launches of one wave (up to 64
  // fp32 keys per thread there: longer segments would re-scan theirs in three passes).
  check_shape<float>(64, 32768, 2, 16384, true, false);
  check_shape<__nv_bfloat16>(64, 32768, 2, 16384, true, false);
  // 64 KB of keys per CTA at most, so fp32 128K rows take 8 CTAs and bf16 ones 4.
  check_shape<float>(64, 131072, 8, 16384, true, true);
  check_shape<__nv_bfloat16>(64, 131072, 4, 32768, true, true);
  check_shape<float>(256, 131072, 8, 16384, true, true);
  check_shape<__nv_bfloat16>(256, 131072, 4, 32768, true, true);
  // Few rows spread over up to 8 CTAs while segments keep >= 1024 keys.
  check_shape<float>(1, 131072, 8, 16384, true, false);
  check_shape<__nv_bfloat16>(1, 131072, 8, 16384, true, false);
  check_shape<float>(8, 32768, 8, 4096, true, false);
  check_shape<float>(8, 8192, 8, 1024, true, false);
  check_shape<float>(1, 1024, 1, 1024, true, false);
  // Rows over 8 x 176 KB are not cached.
  check_shape<float>(1, 1 << 20, 8, 131072, false, true);
  check_shape<__nv_bfloat16>(1, 1 << 20, 8, 131072, false, false);
  check_shape<float>(16, 262144, 8, 32768, true, false);
  // Segments are whole 16-byte vectors: 4 fp32 or 8 bf16 keys.
  check_shape<float>(1, 1001, 1, 1004, true, false);
  check_shape<__nv_bfloat16>(1, 1001, 1, 1008, true, false);
}

TEST_CASE_TEMPLATE("topk_launch_shape: invariants", T, float, __nv_bfloat16) {
  using Policy = BatchedTopKPolicy;
  constexpr int kVec = kVecElems<T>;
  constexpr std::int64_t kKeyBytes = sizeof(typename RadixKey<T>::Bits);
  for (int rows : {1, 3, 8, 64, 100, 256, 4096})
    for (int cols : {1, 7, 1000, 4096, 8192, 30000, 131072, 300000, 1 << 20}) {
      CAPTURE(rows);
      CAPTURE(cols);
      const detail::TopKLaunchShape shape = detail::topk_launch_shape<T, BatchedTopKPolicy>(rows, cols, kSms);
      const int c = shape.cluster_size;
      REQUIRE(c >= 1);
      CHECK(c <= Policy::kMaxClusterSize);
      CHECK((c & (c - 1)) == 0);
      CHECK(shape.segment % kVec == 0);
      CHECK(static_cast<std::int64_t>(shape.segment) * c >= cols);  // the segments cover the row
      CHECK(static_cast<std::int64_t>(shape.segment) * (c - 1) < cols);  // and none is empty
      CHECK(shape.cached == (shape.segment * kKeyBytes <= Policy::kMaxSegmentBytes));
      if (shape.refine) CHECK(shape.segment >= Policy::kMinRefineSegmentKeys);
      // Split only for bytes or for parallelism within one wave of segments >= kMinSegmentKeys.
      if (c > 1 && shape.segment * 2 * kKeyBytes <= Policy::kPreferredSegmentBytes) {
        CHECK(static_cast<std::int64_t>(rows) * c * 100 <= std::int64_t{Policy::kCtasPerSm} * kSms * Policy::kWavePercent);
        CHECK(shape.segment >= Policy::kMinSegmentKeys);
      }
    }
}
