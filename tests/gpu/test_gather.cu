// GatherDecode against the fp64 host reference: token and block granularity, per-head and shared
// lists, -1 padding, lengths, ids past the sequence, duplicates, empty selections, both dtypes,
// head dims 64, 128, 256, non-power-of-two groups, shuffled block tables, repeated CUDA-graph
// replays of a split selection.
#include "gpu/test_decode_common.cuh"

#include <cstring>

#include "hylra/attention/gather.cuh"
#include "hylra/reference/attention.hpp"

using namespace hylra;
using namespace decode_test;

namespace {

// Index rows for `cache`: `k_max` entries per row, the first `fill` of them distinct random ids
// below the row's id limit (ids of blocks when block_size > 1), the rest -1.
std::vector<std::int32_t> random_ids(int rows_per_batch, int batch, int k_max, int fill, int id_limit, std::mt19937& rng) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(batch) * rows_per_batch * k_max, -1);
  std::vector<std::int32_t> pool(id_limit);
  for (int i = 0; i < id_limit; ++i) pool[i] = i;
  for (int r = 0; r < batch * rows_per_batch; ++r) {
    std::shuffle(pool.begin(), pool.end(), rng);
    for (int j = 0; j < std::min(fill, id_limit); ++j) ids[static_cast<std::size_t>(r) * k_max + j] = pool[j];
  }
  return ids;
}

struct GatherResult {
  double out_error, lse_error;
};

template <typename T>
GatherResult check_gather(const PagedCache<T>& cache, int group, const std::vector<std::int32_t>& ids,
                          const std::vector<std::int32_t>& lengths, int list_heads, int k_max, int block_size,
                          std::mt19937& rng) {
  const int hq = cache.heads * group;
  const auto q = random_values<T>(static_cast<std::size_t>(cache.batch) * hq * cache.dim, rng);
  const float sm_scale = 1.0f / std::sqrt(static_cast<float>(cache.dim));
  DeviceBuffer<T> d_q(q), d_out(q.size());
  DeviceBuffer<float> d_lse(static_cast<std::size_t>(cache.batch) * hq);
  DeviceBuffer<std::int32_t> d_ids(ids), d_lengths(lengths);
  d_out.poison();
  d_lse.poison();
  GatherDecodeArguments<T> args;
  args.q = d_q.ptr;
  args.kv = cache.device_view();
  args.indices = IndexList{d_ids.ptr, lengths.empty() ? nullptr : d_lengths.ptr, cache.batch, list_heads, k_max, block_size};
  args.num_qo_heads = hq;
  args.sm_scale = sm_scale;
  args.out = d_out.ptr;
  args.lse = d_lse.ptr;
  std::size_t bytes = 0;
  DECODE_TEST_OK(gather_decode_workspace_size(args, &bytes));
  DeviceBuffer<unsigned char> workspace(bytes);
  workspace.poison();
  DECODE_TEST_OK(gather_decode(args, workspace.ptr, bytes, nullptr));
  DECODE_TEST_CUDA(cudaDeviceSynchronize());

  const IndexList host_list{ids.data(), lengths.empty() ? nullptr : lengths.data(), cache.batch, list_heads, k_max, block_size};
  std::vector<float> ref(q.size()), ref_lse(d_lse.count);
  DECODE_TEST_OK(reference::gather_decode(q.data(), hq, cache.host_view(), host_list, sm_scale, ref.data(), ref_lse.data()));
  return {max_row_rel_error(d_out.to_host(), ref, cache.dim), max_lse_error(d_lse.to_host(), ref_lse)};
}

template <typename T>
void expect_close(const GatherResult& r) {
  CHECK(r.out_error <= kOutputTolerance<T>);
  CHECK(r.lse_error <= kLseTolerance);
}

}  // namespace

TEST_CASE_TEMPLATE("token-level gather matches the reference over head dims, groups, lists and layouts", T, half,
                   __nv_bfloat16) {
  std::mt19937 rng(21);
  const int groups[] = {3, 1, 6, 16, 5, 7};
  int config = 0;
  double worst = 0.0;
  for (int dim : {64, 128, 256}) {
    for (int shared = 0; shared < 2; ++shared, ++config) {
      const int group = groups[config], batch = 3, heads = 2, k_max = 300;
      CAPTURE(dim);
      CAPTURE(group);
      CAPTURE(shared);
      PagedCache<T> cache(config % 2 ? KvLayout::kHND : KvLayout::kNHD, batch, heads, dim, 16 << (config % 4), 1500,
                          {1500, 700, 9}, rng);
      const int rows = shared ? 1 : heads;
      // Ids up to 1500 so that sequence 1 and 2 see ids past their end; 250 of 300 filled; lengths
      // cut some rows shorter (the entries past them hold valid ids that must be ignored).
      auto ids = random_ids(rows, batch, k_max, 250, 1500, rng);
      std::vector<std::int32_t> lengths(batch * rows);
      for (int r = 0; r < batch * rows; ++r) lengths[r] = r % 2 ? 300 : 1 + 37 * r;
      const GatherResult r = check_gather(cache, group, ids, lengths, rows, k_max, 1, rng);
      expect_close<T>(r);
      worst = std::max(worst, r.out_error);
    }
  }
  MESSAGE("gather: worst row relative error " << worst);
}

TEST_CASE_TEMPLATE("block-level gather: blocks of 16, 64, 128 tokens, the last one cut by the length", T, __nv_bfloat16,
                   half) {
  std::mt19937 rng(31);
  for (int block : {16, 64, 128}) {
    CAPTURE(block);
    const int batch = 2, heads = 2, max_len = 4000;
    PagedCache<T> cache(KvLayout::kNHD, batch, heads, 128, 64, max_len, {4000, 1000}, rng);
    const int id_limit = (max_len + block - 1) / block, k_max = 12;
    auto ids = random_ids(heads, batch, k_max, 10, id_limit, rng);
    ids[0] = id_limit - 1;  // the block holding token 3999 (partial when block does not divide 4000)
    expect_close<T>(check_gather(cache, 3, ids, {}, heads, k_max, block, rng));
  }
}

TEST_CASE("gather of k = 2048 tokens per head over a 32K cache") {
  std::mt19937 rng(41);
  PagedCache<__nv_bfloat16> cache(KvLayout::kNHD, 2, 2, 128, 64, 32768, {32768, 20000}, rng);
  auto ids = random_ids(2, 2, 2048, 2048, 32768, rng);
  const GatherResult r = check_gather(cache, 4, ids, {}, 2, 2048, 1, rng);
  expect_close<__nv_bfloat16>(r);
  MESSAGE("k=2048: row relative error " << r.out_error);
}

TEST_CASE("empty selections give zeros and lse = -inf; duplicates count once per occurrence") {
  std::mt19937 rng(51);
  PagedCache<__nv_bfloat16> cache(KvLayout::kHND, 2, 2, 64, 32, 300, {300, 0}, rng);
  // Row (0, 0): all -1. Row (0, 1): token 5 three times and 9 once. Rows of sequence 1 (length 0):
  // valid-looking ids, all past the end.
  const int k_max = 6;
  std::vector<std::int32_t> ids = {-1, -1, -1, -1, -1, -1, 5, 5, -1, 9, 5, -1, 0, 1, 2, 3, 4, 5, 7, 7, 7, 7, 7, 7};
  expect_close<__nv_bfloat16>(check_gather(cache, 3, ids, {}, 2, k_max, 1, rng));
  // Zero lengths: every row empty.
  expect_close<__nv_bfloat16>(check_gather(cache, 3, ids, {0, 0, 0, 0}, 2, k_max, 1, rng));
}

TEST_CASE("gather decode reports bad index lists") {
  std::mt19937 rng(61);
  PagedCache<half> cache(KvLayout::kNHD, 2, 2, 128, 16, 64, {64, 64}, rng);
  DeviceBuffer<half> q(2 * 4 * 128), out(q.count);
  DeviceBuffer<std::int32_t> ids(2 * 2 * 8);
  GatherDecodeArguments<half> good;
  good.q = q.ptr;
  good.kv = cache.device_view();
  good.indices = IndexList{ids.ptr, nullptr, 2, 2, 8, 1};
  good.num_qo_heads = 4;
  good.sm_scale = 0.1f;
  good.out = out.ptr;
  using Op = GatherDecode<half, 128>;
  REQUIRE(Op::can_implement(good).ok());
  auto expect = [&](const GatherDecodeArguments<half>& args, StatusCode code) {
    CHECK(Op::can_implement(args) == code);
    detail::SplitPlan plan;
    CHECK(Op::plan(args, &plan) == code);  // public, so it validates too
  };
  auto a = good;
  a.indices.indices = nullptr;
  expect(a, StatusCode::kNullPointer);
  a = good;
  a.indices.num_heads = 3;
  expect(a, StatusCode::kInvalidShape);
  a = good;
  a.indices.batch_size = 1;
  expect(a, StatusCode::kInvalidShape);
  a = good;
  a.indices.block_size = 8;
  expect(a, StatusCode::kNotSupported);
  a = good;
  a.indices.k_max = 1 << 24;
  a.indices.block_size = 128;
  expect(a, StatusCode::kNotSupported);
}

TEST_CASE("gather decode of a split selection replays from a CUDA graph with identical results") {
  std::mt19937 rng(71);
  // One sequence, k = 2048: each row splits into chunks that MergeStates merges from the workspace.
  PagedCache<__nv_bfloat16> cache(KvLayout::kNHD, 1, 2, 128, 64, 32768, {32768}, rng);
  const int hq = 2 * 4, k_max = 2048;
  const auto ids = random_ids(2, 1, k_max, k_max, 32768, rng);
  const auto q = random_values<__nv_bfloat16>(static_cast<std::size_t>(hq) * 128, rng);
  DeviceBuffer<__nv_bfloat16> d_q(q), d_out(q.size());
  DeviceBuffer<float> d_lse(hq);
  DeviceBuffer<std::int32_t> d_ids(ids);
  GatherDecodeArguments<__nv_bfloat16> args;
  args.q = d_q.ptr;
  args.kv = cache.device_view();
  args.indices = IndexList{d_ids.ptr, nullptr, 1, 2, k_max, 1};
  args.num_qo_heads = hq;
  args.sm_scale = 0.088f;
  args.out = d_out.ptr;
  args.lse = d_lse.ptr;
  detail::SplitPlan plan;
  DECODE_TEST_OK(GatherDecode<__nv_bfloat16, 128>::plan(args, &plan));
  CHECK(plan.num_splits > 1);
  std::size_t bytes = 0;
  DECODE_TEST_OK(gather_decode_workspace_size(args, &bytes));
  REQUIRE(bytes > 0);
  DeviceBuffer<unsigned char> workspace(bytes);
  workspace.poison();

  CapturedGraph graph([&](cudaStream_t stream) { return gather_decode(args, workspace.ptr, bytes, stream); });
  std::vector<__nv_bfloat16> first_out;
  std::vector<float> first_lse;
  for (int replay = 0; replay < 3; ++replay) {
    d_out.poison();
    d_lse.poison();
    graph.replay();
    const auto out = d_out.to_host();
    const auto lse = d_lse.to_host();
    if (replay == 0) {
      first_out = out;
      first_lse = lse;
      continue;
    }
    CHECK(std::memcmp(out.data(), first_out.data(), out.size() * sizeof(out[0])) == 0);
    CHECK(std::memcmp(lse.data(), first_lse.data(), lse.size() * sizeof(lse[0])) == 0);
  }
  const IndexList host_list{ids.data(), nullptr, 1, 2, k_max, 1};
  std::vector<float> ref(q.size()), ref_lse(hq);
  DECODE_TEST_OK(reference::gather_decode(q.data(), hq, cache.host_view(), host_list, 0.088f, ref.data(), ref_lse.data()));
  CHECK(max_row_rel_error(first_out, ref, 128) <= kOutputTolerance<__nv_bfloat16>);
  CHECK(max_lse_error(first_lse, ref_lse) <= kLseTolerance);
}
