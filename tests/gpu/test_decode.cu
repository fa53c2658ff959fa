// DenseDecode (and its score export) and DenseScores against the fp64 host reference: both dtypes, head dims 64,
// 128 and 256, GQA groups 1-16 (non-powers of two included), page sizes 16-128, NHD and HND,
// contiguous caches, lengths 0, 1, odd and 128K, bad block-table entries, CUDA-graph capture,
// and every argument error.
#include "gpu/test_decode_common.cuh"

#include <cstring>
#include <limits>

#include "hylra/attention/decode.cuh"
#include "hylra/attention/dense_scores.cuh"
#include "hylra/reference/attention.hpp"

using namespace hylra;
using namespace decode_test;

namespace {

struct DenseResult {
  double out_error, lse_error, score_error;
};

// Runs dense decode on the device (outputs and workspace poisoned) and the reference on the host.
template <typename T>
DenseResult check_dense(const PagedCache<T>& cache, int group, std::mt19937& rng, int score_block = 0,
                        cudaStream_t stream = nullptr, DType score_dtype = DType::kFloat32, int kv_heads_per_cta = 0) {
  const int hq = cache.heads * group;
  const auto q = random_values<T>(static_cast<std::size_t>(cache.batch) * hq * cache.dim, rng);
  const float sm_scale = 1.0f / std::sqrt(static_cast<float>(cache.dim));
  DeviceBuffer<T> d_q(q), d_out(q.size());
  DeviceBuffer<float> d_lse(static_cast<std::size_t>(cache.batch) * hq);
  d_out.poison();
  d_lse.poison();

  DenseDecodeArguments<T> args;
  args.q = d_q.ptr;
  args.kv = cache.device_view();
  args.num_qo_heads = hq;
  args.sm_scale = sm_scale;
  args.out = d_out.ptr;
  args.lse = d_lse.ptr;
  args.kv_heads_per_cta = kv_heads_per_cta;
  const bool exporting = score_block > 0;
  DeviceBuffer<unsigned char> d_scores;
  if (exporting) args.scores = poisoned_scores(cache, score_block, score_dtype, &d_scores);
  std::size_t bytes = 0;
  DECODE_TEST_OK(dense_decode_workspace_size(args, &bytes));
  DeviceBuffer<unsigned char> workspace(bytes);
  workspace.poison();
  DECODE_TEST_OK(dense_decode(args, workspace.ptr, bytes, stream));
  DECODE_TEST_CUDA(cudaStreamSynchronize(stream));

  std::vector<float> ref(q.size()), ref_lse(d_lse.count);
  DECODE_TEST_OK(reference::dense_decode(q.data(), hq, cache.host_view(), sm_scale, ref.data(), ref_lse.data()));
  DenseResult result{max_row_rel_error(d_out.to_host(), ref, cache.dim), max_lse_error(d_lse.to_host(), ref_lse), 0.0};
  if (exporting) result.score_error = score_error(q, hq, cache, sm_scale, args.scores, d_scores);
  return result;
}

template <typename T>
void expect_close(const DenseResult& r) {
  CHECK(r.out_error <= kOutputTolerance<T>);
  CHECK(r.lse_error <= kLseTolerance);
  CHECK(r.score_error <= kLseTolerance);
}

}  // namespace

TEST_CASE_TEMPLATE("dense decode matches the reference over head dims, groups, page sizes and layouts", T, half,
                   __nv_bfloat16) {
  std::mt19937 rng(1234);
  const int groups[] = {1, 3, 5, 6, 7, 16, 4, 2};
  const int page_sizes[] = {16, 32, 64, 128};
  int config = 0;
  double worst = 0.0;
  for (int dim : {64, 128, 256}) {
    for (int i = 0; i < 4; ++i, ++config) {
      const int group = groups[config % 8], page = page_sizes[config % 4];
      const KvLayout layout = config % 2 ? KvLayout::kHND : KvLayout::kNHD;
      CAPTURE(dim);
      CAPTURE(group);
      CAPTURE(page);
      CAPTURE(config);
      // Lengths: one token, a non-multiple of the page, a multiple, one past a chunk boundary.
      PagedCache<T> cache(layout, 4, 2, dim, page, 2600, {1, 77 + config, 2 * page, 2561}, rng);
      const DenseResult r = check_dense(cache, group, rng);
      expect_close<T>(r);
      worst = std::max(worst, r.out_error);
    }
  }
  MESSAGE("dense: worst row relative error " << worst);
}

TEST_CASE_TEMPLATE("dense decode at 128K tokens with an empty sequence beside it", T, __nv_bfloat16, half) {
  std::mt19937 rng(99);
  PagedCache<T> cache(KvLayout::kNHD, 2, 2, 128, 64, 131072, {131072, 0}, rng);
  const DenseResult r = check_dense(cache, 4, rng, 64);
  expect_close<T>(r);
  MESSAGE("128K: row relative error " << r.out_error << ", lse error " << r.lse_error);
}

TEST_CASE("dense decode on contiguous caches, page size 1 included") {
  std::mt19937 rng(5);
  for (int max_len : {1001, 1024}) {
    CAPTURE(max_len);
    const int batch = 3, heads = 2, dim = 128, group = 3;
    std::vector<__nv_bfloat16> k = random_values<__nv_bfloat16>(static_cast<std::size_t>(batch) * max_len * heads * dim, rng);
    std::vector<__nv_bfloat16> v = random_values<__nv_bfloat16>(k.size(), rng);
    std::vector<__nv_bfloat16> q = random_values<__nv_bfloat16>(static_cast<std::size_t>(batch) * heads * group * dim, rng);
    std::vector<std::int32_t> lens = {max_len, 1, 500};
    DeviceBuffer<__nv_bfloat16> d_k(k), d_v(v), d_q(q), d_out(q.size());
    DeviceBuffer<std::int32_t> d_lens(lens);
    DeviceBuffer<float> d_lse(batch * heads * group);
    d_out.poison();
    d_lse.poison();
    DenseDecodeArguments<__nv_bfloat16> args;
    args.q = d_q.ptr;
    args.kv = make_contiguous_kv_cache<const __nv_bfloat16>(d_k.ptr, d_v.ptr, batch, max_len, heads, dim, d_lens.ptr);
    args.num_qo_heads = heads * group;
    args.sm_scale = 0.1f;
    args.out = d_out.ptr;
    args.lse = d_lse.ptr;
    std::size_t bytes = 0;
    DECODE_TEST_OK(DenseDecode<__nv_bfloat16, 128>::workspace_size(args, &bytes));
    DeviceBuffer<unsigned char> workspace(bytes);
    DECODE_TEST_OK(DenseDecode<__nv_bfloat16, 128>::run(args, workspace.ptr, bytes, nullptr));
    DECODE_TEST_CUDA(cudaDeviceSynchronize());
    std::vector<float> ref(q.size()), ref_lse(d_lse.count);
    const auto host_kv = make_contiguous_kv_cache<const __nv_bfloat16>(k.data(), v.data(), batch, max_len, heads, dim, lens.data());
    DECODE_TEST_OK(reference::dense_decode(q.data(), heads * group, host_kv, 0.1f, ref.data(), ref_lse.data()));
    CHECK(max_row_rel_error(d_out.to_host(), ref, dim) <= kOutputTolerance<__nv_bfloat16>);
    CHECK(max_lse_error(d_lse.to_host(), ref_lse) <= kLseTolerance);
  }
}

TEST_CASE_TEMPLATE("exported scores match the reference: tokens and blocks of 16, 32, 64, 128, as fp32, bf16 and fp16",
                   T, half, __nv_bfloat16) {
  std::mt19937 rng(77);
  const int blocks[] = {1, 16, 32, 64, 128};
  for (int i = 0; i < 5; ++i)
    for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
      const int dim = i % 2 ? 64 : 128, group = i % 2 ? 5 : 4;
      CAPTURE(blocks[i]);
      CAPTURE(to_string(dtype));
      // Lengths cut blocks and pages short; 2600 spans several chunks.
      PagedCache<T> cache(i % 2 ? KvLayout::kHND : KvLayout::kNHD, 3, 2, dim, 32, 2600, {2600, 200, 1}, rng);
      expect_close<T>(check_dense(cache, group, rng, blocks[i], nullptr, dtype));
    }
}

// Dense decode computes 32-slot steps at head dims 64 and 128 (16 at 256): lengths here end just
// before, after and inside a step, in the last of several chunks; groups 1 and 16 (no padded
// MMA rows) and 3; blocks of 16 are two per 32-slot step.
TEST_CASE("exported scores at step edges: groups 1, 3 and 16, lengths ending mid-step, 16-blocks in 32-slot steps") {
  std::mt19937 rng(2026);
  const int groups[] = {1, 16, 3};
  const int blocks[] = {1, 16, 16, 1, 32, 16};
  int i = 0;
  for (int dim : {64, 128, 256})
    for (int b = 0; b < 2; ++b, ++i) {
      const int group = groups[i % 3], block = blocks[i];
      CAPTURE(dim);
      CAPTURE(group);
      CAPTURE(block);
      PagedCache<__nv_bfloat16> cache(i % 2 ? KvLayout::kHND : KvLayout::kNHD, 4, 2, dim, 16, 1100,
                                      {17, 31, 33, 1091}, rng);
      const DType dtype = i % 3 == 1 ? DType::kBFloat16 : (i % 3 == 2 ? DType::kFloat16 : DType::kFloat32);
      CAPTURE(to_string(dtype));
      expect_close<__nv_bfloat16>(check_dense(cache, group, rng, block, nullptr, dtype));
    }
}

// DenseScores arguments over `cache` for the query in `q`, writing poisoned `buffer`.
template <typename T>
DenseScoresArguments<T> scores_args(const DeviceBuffer<T>& q, const PagedCache<T>& cache, int hq, float sm_scale,
                                    int block, DType dtype, DeviceBuffer<unsigned char>* buffer) {
  DenseScoresArguments<T> args;
  args.q = q.ptr;
  args.kv = cache.device_view();
  args.num_qo_heads = hq;
  args.sm_scale = sm_scale;
  args.scores = poisoned_scores(cache, block, dtype, buffer);
  return args;
}

// DenseScores runs the dense kernel with K alone in its ring and no softmax, P V or output: its
// scores must equal the export of DenseDecode over every head dim, group, block size, dtype and
// length edge (an empty sequence, one token, lengths ending mid-step and mid-page).
TEST_CASE_TEMPLATE("DenseScores writes what DenseDecode exports, without reading V", T, half, __nv_bfloat16) {
  std::mt19937 rng(4242);
  const int groups[] = {1, 3, 16, 5, 4, 7};
  const int blocks[] = {1, 16, 32, 64, 128, 1};
  const DType dtypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};
  int i = 0;
  for (int dim : {64, 128, 256})
    for (int b = 0; b < 2; ++b, ++i) {
      const int group = groups[i], block = blocks[i], hkv = 2, hq = hkv * group;
      const DType dtype = dtypes[i % 3];
      CAPTURE(dim);
      CAPTURE(group);
      CAPTURE(block);
      CAPTURE(to_string(dtype));
      PagedCache<T> cache(i % 2 ? KvLayout::kHND : KvLayout::kNHD, 4, hkv, dim, i % 2 ? 16 : 64, 5000,
                          {0, 1, 4097, 4999 - i}, rng);
      const auto q = random_values<T>(static_cast<std::size_t>(cache.batch) * hq * dim, rng);
      const float sm_scale = 0.37f;
      DeviceBuffer<T> d_q(q);
      DeviceBuffer<unsigned char> d_scores;
      const auto args = scores_args(d_q, cache, hq, sm_scale, block, dtype, &d_scores);
      DECODE_TEST_OK(dense_scores(args, nullptr));
      DECODE_TEST_CUDA(cudaDeviceSynchronize());
      CHECK(score_error(q, hq, cache, sm_scale, args.scores, d_scores) <= kLseTolerance);
    }

  // Argument errors, reported before any launch.
  PagedCache<half> cache(KvLayout::kNHD, 1, 2, 128, 64, 64, {64}, rng);
  DeviceBuffer<half> q(static_cast<std::size_t>(2 * 4 * 128));
  DeviceBuffer<float> scores(64);
  DenseScoresArguments<half> good;
  good.q = q.ptr;
  good.kv = cache.device_view();
  good.num_qo_heads = 8;
  good.sm_scale = 1.0f;
  good.scores = ScoreExport{scores.ptr, 1, 64};
  using Op = DenseScores<half, 128>;
  REQUIRE(Op::can_implement(good).ok());
  DenseScoresArguments<half> a = good;
  a.scores.scores = nullptr;
  CHECK(Op::run(a, nullptr) == StatusCode::kNullPointer);
  a = good;
  a.scores.block_size = 8;
  CHECK(Op::run(a, nullptr) == StatusCode::kNotSupported);
  a = good;
  a.scores.row_stride = 63;
  CHECK(Op::run(a, nullptr) == StatusCode::kInvalidStride);
  a = good;
  a.q = nullptr;
  CHECK(Op::run(a, nullptr) == StatusCode::kNullPointer);
  a = good;
  a.num_qo_heads = 34;
  CHECK(Op::run(a, nullptr) == StatusCode::kNotSupported);
  CHECK(DenseScores<half, 64>::can_implement(good) == StatusCode::kInvalidShape);
}

// DenseDecode and DenseScores with 1, 2 or 4 adjacent KV heads per CTA (PackedHeads), forced
// through kv_heads_per_cta or chosen by plan(), and the layouts and exports that refuse it.
TEST_CASE_TEMPLATE("dense decode and DenseScores with 1, 2 or 4 KV heads per CTA match the reference", T, half,
                   __nv_bfloat16) {
  std::mt19937 rng(4321);
  struct Config {
    int batch, heads, group, dim, max_len;
    KvLayout layout;
    int score_block;  // 0: no export; 1: token scores (DenseScores checked too)
    int forced;       // kv_heads_per_cta: 0 lets plan() choose
    int expected;     // KV heads per CTA in the plan; 0: refused with kNotSupported
  };
  // Batch 4 rows of up to 3000 tokens split into chunks (partial states, merged); batch 64 x 300
  // tokens fills the device with one chunk per row, where plan() packs on its own.
  const Config configs[] = {
      {4, 8, 4, 128, 3000, KvLayout::kNHD, 0, 4, 4},   {4, 8, 1, 64, 3000, KvLayout::kNHD, 0, 4, 4},
      {4, 4, 3, 128, 3000, KvLayout::kNHD, 0, 4, 4},   {4, 6, 8, 128, 3000, KvLayout::kNHD, 0, 2, 2},
      {4, 4, 5, 64, 3000, KvLayout::kNHD, 0, 2, 2},    {4, 4, 2, 256, 3000, KvLayout::kNHD, 0, 2, 2},
      {4, 2, 7, 256, 3000, KvLayout::kNHD, 0, 2, 2},   {4, 8, 4, 128, 3000, KvLayout::kNHD, 0, 1, 1},
      {4, 8, 4, 128, 3000, KvLayout::kNHD, 0, 0, 1},   {64, 8, 4, 128, 300, KvLayout::kNHD, 0, 0, 4},
      {64, 8, 1, 64, 300, KvLayout::kNHD, 0, 0, 2},    {64, 4, 3, 128, 300, KvLayout::kHND, 0, 0, 1},
      {64, 8, 4, 128, 300, KvLayout::kNHD, 64, 0, 1},  {4, 8, 9, 128, 3000, KvLayout::kNHD, 0, 2, 0},
      {4, 6, 3, 128, 3000, KvLayout::kNHD, 0, 4, 0},   {4, 8, 4, 128, 3000, KvLayout::kHND, 0, 2, 0},
      {4, 8, 4, 128, 3000, KvLayout::kNHD, 64, 2, 0},  {4, 4, 2, 256, 3000, KvLayout::kNHD, 0, 4, 0},
      {4, 8, 4, 128, 3000, KvLayout::kNHD, 1, 4, 4},   {4, 6, 8, 128, 3000, KvLayout::kNHD, 1, 2, 2},
      {4, 4, 5, 64, 3000, KvLayout::kNHD, 1, 1, 1},    {64, 8, 4, 128, 300, KvLayout::kNHD, 1, 0, 4},
      {4, 4, 3, 256, 3000, KvLayout::kNHD, 1, 0, 1},
  };
  int config = 0;
  for (const Config& c : configs) {
    CAPTURE(config++);
    CAPTURE(c.batch);
    CAPTURE(c.heads);
    CAPTURE(c.group);
    CAPTURE(c.dim);
    CAPTURE(c.forced);
    const int page = config % 2 ? 16 : 64;
    // An empty sequence, one token, a partial page; the rest end within the last page.
    std::vector<std::int32_t> lens(c.batch, c.max_len - config % 7);
    lens[0] = 0;
    lens[1] = 1;
    lens[2] = 77 + config;
    PagedCache<T> cache(c.layout, c.batch, c.heads, c.dim, page, c.max_len, lens, rng);
    DeviceBuffer<T> q(static_cast<std::size_t>(cache.batch) * c.heads * c.group * c.dim), out(q.count);
    DenseDecodeArguments<T> args;
    args.q = q.ptr;
    args.kv = cache.device_view();
    args.num_qo_heads = c.heads * c.group;
    args.sm_scale = 0.1f;
    args.out = out.ptr;
    args.kv_heads_per_cta = c.forced;
    DeviceBuffer<unsigned char> scores;
    if (c.score_block > 0) args.scores = poisoned_scores(cache, c.score_block, DType::kFloat32, &scores);
    detail::SplitPlan plan;
    const Status planned = dispatch_head_dim(c.dim, [&](auto dim) {
      return DenseDecode<T, decltype(dim)::value>::plan(args, &plan);
    });
    if (c.expected == 0) {
      CHECK(planned == StatusCode::kNotSupported);
      continue;
    }
    DECODE_TEST_OK(planned);
    CHECK(plan.heads_per_cta == c.expected);
    if (c.batch == 4) CHECK(plan.num_splits > 1);
    expect_close<T>(check_dense(cache, c.group, rng, c.score_block, nullptr, DType::kFloat32, c.forced));
    if (c.score_block > 1) continue;
    // DenseScores over the same cache, bf16 token scores.
    const int hq = c.heads * c.group;
    const auto q_host = random_values<T>(static_cast<std::size_t>(cache.batch) * hq * c.dim, rng);
    DeviceBuffer<T> d_q(q_host);
    DeviceBuffer<unsigned char> d_scores;
    auto scoring = scores_args(d_q, cache, hq, 0.3f, 1, DType::kBFloat16, &d_scores);
    scoring.kv_heads_per_cta = c.forced;
    detail::SplitPlan scores_plan;
    DECODE_TEST_OK(dispatch_head_dim(c.dim, [&](auto dim) {
      return DenseScores<T, decltype(dim)::value>::plan(scoring, &scores_plan);
    }));
    if (c.forced > 0) CHECK(scores_plan.heads_per_cta == c.forced);
    DECODE_TEST_OK(dense_scores(scoring, nullptr));
    DECODE_TEST_CUDA(cudaDeviceSynchronize());
    CHECK(score_error(q_host, hq, cache, 0.3f, scoring.scores, d_scores) <= kLseTolerance);
  }
}

TEST_CASE("bad block-table entries and lengths are skipped and clamped, as in the reference") {
  std::mt19937 rng(11);
  PagedCache<__nv_bfloat16> cache(KvLayout::kNHD, 2, 2, 128, 16, 400, {300, 1000}, rng);  // 1000 > 400: clamped
  cache.table[3] = -1;               // sequence 0, tokens 48..63
  cache.table[cache.max_pages + 5] = cache.num_pages + 7;  // sequence 1, tokens 80..95
  cache.upload();
  expect_close<__nv_bfloat16>(check_dense(cache, 6, rng, 1));
}

TEST_CASE("dense decode replays from a captured CUDA graph") {
  std::mt19937 rng(3);
  PagedCache<__nv_bfloat16> cache(KvLayout::kHND, 2, 4, 128, 64, 5000, {4999, 3000}, rng);
  const int hq = 4 * 4;
  const auto q = random_values<__nv_bfloat16>(static_cast<std::size_t>(2) * hq * 128, rng);
  DeviceBuffer<__nv_bfloat16> d_q(q), d_out(q.size());
  DeviceBuffer<float> d_lse(2 * hq);
  DenseDecodeArguments<__nv_bfloat16> args;
  args.q = d_q.ptr;
  args.kv = cache.device_view();
  args.num_qo_heads = hq;
  args.sm_scale = 0.09f;
  args.out = d_out.ptr;
  args.lse = d_lse.ptr;
  std::size_t bytes = 0;
  DECODE_TEST_OK(dense_decode_workspace_size(args, &bytes));
  REQUIRE(bytes > 0);  // several chunks: the graph holds the decode and the merge
  DeviceBuffer<unsigned char> workspace(bytes);
  CapturedGraph graph([&](cudaStream_t stream) { return dense_decode(args, workspace.ptr, bytes, stream); });
  d_out.poison();
  graph.replay();
  std::vector<float> ref(q.size()), ref_lse(2 * hq);
  DECODE_TEST_OK(reference::dense_decode(q.data(), hq, cache.host_view(), 0.09f, ref.data(), ref_lse.data()));
  CHECK(max_row_rel_error(d_out.to_host(), ref, 128) <= kOutputTolerance<__nv_bfloat16>);
  CHECK(max_lse_error(d_lse.to_host(), ref_lse) <= kLseTolerance);
}

TEST_CASE("DenseScores replays from a captured CUDA graph") {
  std::mt19937 rng(31);
  PagedCache<__nv_bfloat16> cache(KvLayout::kNHD, 2, 4, 128, 64, 5000, {4999, 3000}, rng);
  const int hq = 4 * 3;
  const auto q = random_values<__nv_bfloat16>(static_cast<std::size_t>(2) * hq * 128, rng);
  DeviceBuffer<__nv_bfloat16> d_q(q);
  DeviceBuffer<unsigned char> d_scores;
  const auto args = scores_args(d_q, cache, hq, 0.09f, 1, DType::kBFloat16, &d_scores);
  detail::SplitPlan plan;
  DECODE_TEST_OK((DenseScores<__nv_bfloat16, 128>::plan(args, &plan)));
  REQUIRE(plan.num_splits > 1);  // several chunks per row, still no workspace
  CHECK(plan.workspace_bytes == 0);
  CapturedGraph graph([&](cudaStream_t stream) { return dense_scores(args, stream); });
  d_scores.poison();
  graph.replay();
  CHECK(score_error(q, hq, cache, 0.09f, args.scores, d_scores) <= kLseTolerance);
}

TEST_CASE("dense decode reports bad arguments without launching") {
  std::mt19937 rng(8);
  PagedCache<half> cache(KvLayout::kNHD, 1, 2, 128, 16, 64, {64}, rng);
  DeviceBuffer<half> q(2 * 17 * 128), out(q.count);
  DenseDecodeArguments<half> good;
  good.q = q.ptr;
  good.kv = cache.device_view();
  good.num_qo_heads = 4;
  good.sm_scale = 0.1f;
  good.out = out.ptr;
  using Op = DenseDecode<half, 128>;
  REQUIRE(Op::can_implement(good).ok());
  auto expect = [&](DenseDecodeArguments<half> args, StatusCode code) {
    CHECK(Op::can_implement(args) == code);
    detail::SplitPlan plan;
    CHECK(Op::plan(args, &plan) == code);  // public, so it validates too
  };
  auto a = good;
  a.q = nullptr;
  expect(a, StatusCode::kNullPointer);
  a = good;
  a.q = q.ptr + 1;
  expect(a, StatusCode::kMisaligned);
  a = good;
  a.out = out.ptr + 1;
  expect(a, StatusCode::kMisaligned);
  a = good;
  a.num_qo_heads = 34;  // group 17
  expect(a, StatusCode::kNotSupported);
  a.num_qo_heads = 5;  // not a multiple of 2 KV heads
  expect(a, StatusCode::kInvalidShape);
  a = good;
  a.sm_scale = std::numeric_limits<float>::quiet_NaN();
  expect(a, StatusCode::kInvalidValue);
  a = good;
  float scores[64];
  a.scores = ScoreExport{scores, 8, 64};
  expect(a, StatusCode::kNotSupported);
  a.scores = ScoreExport{scores, 16, 3};  // 64 tokens need 4 blocks
  expect(a, StatusCode::kInvalidStride);
  a.scores = ScoreExport{scores, 16, 4, static_cast<DType>(7)};
  expect(a, StatusCode::kInvalidValue);
  CHECK(DenseDecode<half, 64>::can_implement(good) == StatusCode::kInvalidShape);
  a = good;
  a.kv.head_dim = 96;
  std::size_t bytes = 0;
  CHECK(dense_decode_workspace_size(a, &bytes) == StatusCode::kNotSupported);

  // A workspace smaller than asked for is refused (the plan splits 64 tokens into one chunk at
  // most, so use a long cache).
  PagedCache<half> longer(KvLayout::kNHD, 1, 2, 128, 64, 8192, {8192}, rng);
  a = good;
  a.kv = longer.device_view();
  REQUIRE(Op::workspace_size(a, &bytes).ok());
  REQUIRE(bytes > 0);
  CHECK(Op::run(a, nullptr, bytes - 1, nullptr) == StatusCode::kWorkspaceTooSmall);
}

TEST_CASE("dense decode is exact whether a row is one chunk or its chunks merge through the workspace") {
  std::mt19937 rng(17);
  struct Shape {
    int batch, heads, len;
  };
  bool seen[2] = {};  // one chunk, several chunks merged by MergeStates
  // Many short rows fill the device with one chunk each; one long row splits into many.
  for (const Shape shape : {Shape{64, 8, 300}, Shape{1, 2, 16384}}) {
    CAPTURE(shape.batch);
    CAPTURE(shape.len);
    PagedCache<__nv_bfloat16> cache(KvLayout::kNHD, shape.batch, shape.heads, 128, 64, shape.len,
                                    std::vector<std::int32_t>(shape.batch, shape.len - 5), rng);
    // plan() validates the whole argument set, so q and out must point somewhere (never read here).
    DeviceBuffer<__nv_bfloat16> q(static_cast<std::size_t>(shape.batch) * shape.heads * 4 * 128), out(q.count);
    DenseDecodeArguments<__nv_bfloat16> args;
    args.q = q.ptr;
    args.kv = cache.device_view();
    args.num_qo_heads = shape.heads * 4;
    args.sm_scale = 0.088f;
    args.out = out.ptr;
    detail::SplitPlan plan;
    DECODE_TEST_OK(DenseDecode<__nv_bfloat16, 128>::plan(args, &plan));
    const bool split = plan.num_splits > 1;
    seen[split] = true;
    CHECK((plan.workspace_bytes > 0) == split);
    expect_close<__nv_bfloat16>(check_dense(cache, 4, rng));
  }
  CHECK(seen[0]);
  CHECK(seen[1]);
}
