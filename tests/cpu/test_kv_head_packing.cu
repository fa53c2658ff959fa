// Which KV-head packings dense decode accepts (detail::can_pack_heads, kv_heads_per_cta in
// DenseDecode and DenseScores) and when plan() takes one (detail::packing_pays): host code of the
// decode headers, checked without a GPU. The GPU
// side (packed kernels against the reference, plan()'s choice) is in tests/gpu/test_decode.cu.
#include <doctest/doctest.h>

#include <cuda_bf16.h>

#include <cstdint>

#include "hylra/attention/decode.cuh"
#include "hylra/attention/dense_scores.cuh"

using namespace hylra;

namespace {

using bf16 = __nv_bfloat16;

// A cache of placeholder addresses (never read): `heads` KV heads of head_dim `dim`.
PagedKvCache<const bf16> cache(KvLayout layout, int heads, int dim) {
  const auto* const data = reinterpret_cast<const bf16*>(std::uintptr_t{1} << 20);
  const auto* const lens = reinterpret_cast<const std::int32_t*>(std::uintptr_t{1} << 12);
  return make_paged_kv_cache<const bf16>(layout, data, data, 64, 64, heads, dim, nullptr, 16, lens, 4);
}

const ScoreExport kNoScores{};
const ScoreExport kTokenScores{reinterpret_cast<void*>(std::uintptr_t{1} << 24), 1, 1024, DType::kBFloat16};
const ScoreExport kBlockScores{reinterpret_cast<void*>(std::uintptr_t{1} << 24), 64, 16, DType::kBFloat16};

template <int kDim>
bool packs(KvLayout layout, int heads, int group, const ScoreExport& scores, int per_cta) {
  return detail::can_pack_heads<kDim>(cache(layout, heads, kDim), heads * group, scores, per_cta);
}

}  // namespace

TEST_CASE("can_pack_heads: adjacent rows, token scores or none, divisible heads, group rows within 16") {
  // The shapes the benchmark packs: 32/8 heads (group 4) in NHD pages, d = 64 and 128.
  CHECK(packs<128>(KvLayout::kNHD, 8, 4, kNoScores, 4));
  CHECK(packs<64>(KvLayout::kNHD, 8, 4, kNoScores, 4));
  CHECK(packs<128>(KvLayout::kNHD, 8, 4, kTokenScores, 4));
  CHECK(packs<256>(KvLayout::kNHD, 8, 4, kNoScores, 2));
  CHECK(packs<128>(KvLayout::kNHD, 6, 8, kNoScores, 2));  // group 8: two heads fill the 16 rows
  CHECK(packs<128>(KvLayout::kNHD, 4, 3, kNoScores, 4));  // 12 rows of 16
  // Each condition on its own.
  CHECK_FALSE(packs<128>(KvLayout::kHND, 8, 4, kNoScores, 2));       // a head's tokens contiguous
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 8, 4, kBlockScores, 2));    // a block spans several tiles
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 6, 4, kNoScores, 4));       // 4 does not divide 6
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 8, 5, kNoScores, 4));       // 20 rows
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 8, 9, kNoScores, 2));       // 18 rows
  CHECK_FALSE(packs<256>(KvLayout::kNHD, 8, 4, kNoScores, 4));       // 16-slot tiles: 8 slots per head at least
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 8, 2, kNoScores, 3));       // 2 or 4 only
  CHECK_FALSE(packs<128>(KvLayout::kNHD, 8, 2, kNoScores, 8));
  // One head per CTA always applies.
  for (int group : {1, 3, 16}) {
    CHECK(packs<128>(KvLayout::kHND, 5, group, kBlockScores, 1));
    CHECK(packs<256>(KvLayout::kNHD, 1, group, kNoScores, 1));
  }
}

TEST_CASE("kv_heads_per_cta: DenseDecode and DenseScores accept 0, 1 and what can_pack_heads allows") {
  DenseDecodeArguments<bf16> dense;
  dense.q = reinterpret_cast<const bf16*>(std::uintptr_t{1} << 16);
  dense.kv = cache(KvLayout::kNHD, 8, 128);
  dense.num_qo_heads = 32;
  dense.sm_scale = 0.1f;
  dense.out = reinterpret_cast<bf16*>(std::uintptr_t{1} << 17);
  DenseScoresArguments<bf16> scoring{dense.q, dense.kv, 32, 0.1f, kTokenScores};
  using Decode = DenseDecode<bf16, 128>;
  using Scores = DenseScores<bf16, 128>;
  for (int heads : {0, 1, 2, 4}) {
    CAPTURE(heads);
    dense.kv_heads_per_cta = scoring.kv_heads_per_cta = heads;
    CHECK(Decode::can_implement(dense).ok());
    CHECK(Scores::can_implement(scoring).ok());
  }
  for (int heads : {-1, 3, 8}) {
    CAPTURE(heads);
    dense.kv_heads_per_cta = scoring.kv_heads_per_cta = heads;
    CHECK(Decode::can_implement(dense) == StatusCode::kInvalidValue);
    CHECK(Scores::can_implement(scoring) == StatusCode::kInvalidValue);
  }
  dense.kv_heads_per_cta = scoring.kv_heads_per_cta = 2;
  dense.scores = kBlockScores;
  scoring.scores = kBlockScores;
  CHECK(Decode::can_implement(dense) == StatusCode::kNotSupported);
  CHECK(Scores::can_implement(scoring) == StatusCode::kNotSupported);
  dense.scores = scoring.scores = kTokenScores;
  dense.kv = scoring.kv = cache(KvLayout::kHND, 8, 128);
  CHECK(Decode::can_implement(dense) == StatusCode::kNotSupported);
  CHECK(Scores::can_implement(scoring) == StatusCode::kNotSupported);
  dense.kv_heads_per_cta = scoring.kv_heads_per_cta = 0;  // plan() then keeps one head per CTA
  CHECK(Decode::can_implement(dense).ok());
  CHECK(Scores::can_implement(scoring).ok());
}

TEST_CASE("packing_pays: one chunk per row, or chunks of >= 4096 tokens and, where merged, a small merge") {
  const auto split = [](int splits, int chunk) {
    detail::SplitPlan plan;
    plan.num_splits = splits;
    plan.chunk_slots = chunk;
    return plan;
  };
  using Decode = detail::DenseSlots;   // merges its chunks
  using Scores = detail::ScoredSlots;  // writes scores only: no merge
  // The H200 shapes of bench/RESULTS.md (session 9), unpacked split -> packed split.
  CHECK(detail::packing_pays<Decode>(split(2, 65536), split(8, 16384), 256));  // 8 x 128K, 4 heads
  CHECK(detail::packing_pays<Decode>(split(2, 16384), split(8, 4096), 256));   // 8 x 32K, 4 heads
  CHECK(detail::packing_pays<Decode>(split(1, 32768), split(1, 32768), 256));  // 32 x 32K, 2 heads
  CHECK_FALSE(detail::packing_pays<Decode>(split(1, 8192), split(2, 4096), 256));    // 32 x 8K, 4 heads: a new merge
  CHECK_FALSE(detail::packing_pays<Decode>(split(2, 4096), split(8, 1024), 256));    // 8 x 8K, 4 heads: short chunks
  CHECK_FALSE(detail::packing_pays<Decode>(split(16, 8192), split(32, 4096), 256));  // 1 x 128K, 2 heads: 32 chunks
  CHECK_FALSE(detail::packing_pays<Decode>(split(8, 16384), split(9, 16384), 256));  // one chunk over the bound
  // d = 64 (128-byte rows): a new merge pays with chunks of >= 8192 tokens.
  CHECK(detail::packing_pays<Decode>(split(1, 32768), split(4, 8192), 128));       // 32 x 32K, 4 heads
  CHECK(detail::packing_pays<Decode>(split(1, 131072), split(4, 32768), 128));     // 32 x 128K, 4 heads
  CHECK_FALSE(detail::packing_pays<Decode>(split(1, 8192), split(2, 4096), 128));  // 32 x 8K, 2 heads
  CHECK_FALSE(detail::packing_pays<Decode>(split(1, 32768), split(4, 8192), 256));  // the same at d = 128
  // Without a merge only the chunk length counts.
  CHECK(detail::packing_pays<Scores>(split(1, 131072), split(4, 32768), 256));
  CHECK(detail::packing_pays<Scores>(split(16, 8192), split(32, 4096), 256));
  CHECK_FALSE(detail::packing_pays<Scores>(split(33, 4096), split(132, 1024), 256));  // 1 x 128K, 4 heads
  CHECK(detail::packing_pays<Scores>(split(2, 256), split(1, 300), 256));
}
