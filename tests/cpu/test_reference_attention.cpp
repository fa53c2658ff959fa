// The host attention reference against hand-computed cases and against itself through independent
// routes (gather of every token = dense, blocks = their tokens, merge of halves = the whole).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "hylra/reference/attention.hpp"

using namespace hylra;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// A paged float cache with a shuffled block table and random contents.
struct Cache {
  int batch, heads, dim, page, max_pages;
  std::vector<float> k, v;
  std::vector<std::int32_t> table, lens;
  Cache(int batch_, int heads_, int dim_, int page_, int max_pages_, std::vector<std::int32_t> lens_, unsigned seed)
      : batch(batch_), heads(heads_), dim(dim_), page(page_), max_pages(max_pages_), lens(std::move(lens_)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    const std::size_t n = static_cast<std::size_t>(batch) * max_pages * page * heads * dim;
    for (std::size_t i = 0; i < n; ++i) k.push_back(normal(rng)), v.push_back(normal(rng));
    for (int p = 0; p < batch * max_pages; ++p) table.push_back(p);
    std::shuffle(table.begin(), table.end(), rng);
  }
  PagedKvCache<const float> view(KvLayout layout) const {
    return make_paged_kv_cache<const float>(layout, k.data(), v.data(), batch * max_pages, page, heads, dim,
                                            table.data(), max_pages, lens.data(), batch);
  }
};

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(n);
  for (float& e : x) e = normal(rng);
  return x;
}

}  // namespace

TEST_CASE("dense decode of two tokens matches the hand-computed softmax") {
  // One sequence, one head, head_dim 4 (a multiple of the 16-byte float vector), two tokens.
  std::vector<float> k = {1, 0, 0, 0, 0, 1, 0, 0}, v = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::int32_t> lens = {2};
  auto kv = make_contiguous_kv_cache<const float>(k.data(), v.data(), 1, 2, 1, 4, lens.data());
  const float q[4] = {2, 0, 0, 0};
  float out[4], lse;
  REQUIRE(reference::dense_decode(q, 1, kv, 0.5f, out, &lse).ok());
  // logits 1 and 0: p = (e, 1) / (e + 1).
  const double e = std::exp(1.0), p0 = e / (e + 1), p1 = 1 / (e + 1);
  for (int i = 0; i < 4; ++i) CHECK(out[i] == doctest::Approx(p0 * v[i] + p1 * v[4 + i]).epsilon(1e-6));
  CHECK(lse == doctest::Approx(std::log(e + 1)).epsilon(1e-6));
}

TEST_CASE("an empty sequence gives zeros and lse = -inf; lengths are clamped") {
  Cache cache(2, 1, 4, 16, 2, {0, 99}, 1);
  const auto q = random_vector(2 * 4, 2);
  std::vector<float> out(8, 7.0f), lse(2, 7.0f), full(8), full_lse(2);
  REQUIRE(reference::dense_decode(q.data(), 1, cache.view(KvLayout::kNHD), 1.0f, out.data(), lse.data()).ok());
  for (int i = 0; i < 4; ++i) CHECK(out[i] == 0.0f);
  CHECK(lse[0] == -kInf);
  cache.lens[1] = 32;  // 99 is clamped to max_seq_len = 32
  REQUIRE(reference::dense_decode(q.data(), 1, cache.view(KvLayout::kNHD), 1.0f, full.data(), full_lse.data()).ok());
  for (int i = 4; i < 8; ++i) CHECK(out[i] == full[i]);
  CHECK(lse[1] == full_lse[1]);
}

TEST_CASE("GQA maps query head hq to KV head hq / group, in NHD and HND alike") {
  const int group = 3, kv_heads = 2, dim = 8;
  Cache cache(2, kv_heads, dim, 16, 3, {37, 5}, 3);
  const auto q = random_vector(2 * group * kv_heads * dim, 4);
  std::vector<float> nhd(q.size()), hnd(q.size()), lse(2 * group * kv_heads);
  REQUIRE(reference::dense_decode(q.data(), group * kv_heads, cache.view(KvLayout::kNHD), 0.3f, nhd.data(), lse.data()).ok());
  REQUIRE(reference::dense_decode(q.data(), group * kv_heads, cache.view(KvLayout::kHND), 0.3f, hnd.data(), nullptr).ok());
  // Brute force for sequence 0, query head 4 (KV head 1) straight from the NHD pool.
  const auto kv = cache.view(KvLayout::kNHD);
  const float* qh = q.data() + 4 * dim;
  double m = -1e300, l = 0;
  std::vector<double> s(37), acc(dim, 0.0);
  for (int t = 0; t < 37; ++t) {
    const std::int64_t off = (static_cast<std::int64_t>(cache.table[t / 16]) * 16 + t % 16) * kv_heads * dim + dim;
    s[t] = 0;
    for (int i = 0; i < dim; ++i) s[t] += 0.3 * qh[i] * cache.k[off + i];
    m = std::max(m, s[t]);
    CHECK(kv.token_offset(0, t, 1) == off);
  }
  for (int t = 0; t < 37; ++t) {
    const std::int64_t off = (static_cast<std::int64_t>(cache.table[t / 16]) * 16 + t % 16) * kv_heads * dim + dim;
    l += std::exp(s[t] - m);
    for (int i = 0; i < dim; ++i) acc[i] += std::exp(s[t] - m) * cache.v[off + i];
  }
  for (int i = 0; i < dim; ++i) CHECK(nhd[4 * dim + i] == doctest::Approx(acc[i] / l).epsilon(1e-5));
  CHECK(lse[4] == doctest::Approx(m + std::log(l)).epsilon(1e-5));
  // HND holds different values at each address, so only compare the shape of the result: finite.
  for (float x : hnd) CHECK(std::isfinite(x));
}

TEST_CASE("gather of every token equals dense; -1 padding, lengths, out-of-range ids are skipped") {
  const int kv_heads = 2, group = 2, dim = 8;
  Cache cache(2, kv_heads, dim, 16, 4, {50, 17}, 5);
  const auto kv = cache.view(KvLayout::kNHD);
  const auto q = random_vector(2 * group * kv_heads * dim, 6);
  std::vector<float> dense(q.size()), dense_lse(8), gathered(q.size()), gathered_lse(8);
  REQUIRE(reference::dense_decode(q.data(), group * kv_heads, kv, 0.25f, dense.data(), dense_lse.data()).ok());
  // Shared list, reversed order, a -1 hole, ids past the end of sequence 1 (17 tokens), a tail
  // beyond lengths filled with an id that would change the result.
  const int k_max = 70;
  std::vector<std::int32_t> ids(2 * k_max, 3);
  for (int b = 0; b < 2; ++b) {
    for (int j = 0; j < 50; ++j) ids[b * k_max + j] = 49 - j;
    ids[b * k_max + 50] = -1;
  }
  std::vector<std::int32_t> lengths = {51, 51};
  IndexList list{ids.data(), lengths.data(), 2, 1, k_max, 1};
  REQUIRE(reference::gather_decode(q.data(), group * kv_heads, kv, list, 0.25f, gathered.data(), gathered_lse.data()).ok());
  for (std::size_t i = 0; i < q.size(); ++i) CHECK(gathered[i] == doctest::Approx(dense[i]).epsilon(1e-6));
  for (int i = 0; i < 8; ++i) CHECK(gathered_lse[i] == doctest::Approx(dense_lse[i]).epsilon(1e-6));
}

TEST_CASE("a block id stands for its tokens; an empty list gives zeros and -inf; duplicates count twice") {
  const int dim = 8;
  Cache cache(1, 2, dim, 32, 4, {100}, 7);
  const auto kv = cache.view(KvLayout::kHND);
  const auto q = random_vector(2 * dim, 8);
  // Per-head lists: head 0 block 3 (tokens 96..99, the partial last block) and block 0; head 1 empty.
  std::vector<std::int32_t> blocks = {3, 0, -1, -1, -1, -1};
  IndexList by_block{blocks.data(), nullptr, 1, 2, 3, 32};
  std::vector<std::int32_t> tokens(2 * 36, -1);
  for (int t = 0; t < 4; ++t) tokens[t] = 96 + t;
  for (int t = 0; t < 32; ++t) tokens[4 + t] = t;
  IndexList by_token{tokens.data(), nullptr, 1, 2, 36, 1};
  std::vector<float> a(2 * dim), b(2 * dim, 5.0f), lse_a(2), lse_b(2, 5.0f);
  REQUIRE(reference::gather_decode(q.data(), 2, kv, by_block, 1.0f, a.data(), lse_a.data()).ok());
  REQUIRE(reference::gather_decode(q.data(), 2, kv, by_token, 1.0f, b.data(), lse_b.data()).ok());
  for (int i = 0; i < dim; ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-6));
  for (int i = dim; i < 2 * dim; ++i) CHECK((a[i] == 0.0f && b[i] == 0.0f));
  CHECK(lse_a[1] == -kInf);
  CHECK(lse_b[1] == -kInf);

  // {t, t}: the softmax of two equal logits is the value itself, lse = logit + log 2.
  std::vector<std::int32_t> twice = {7, 7};
  IndexList dup{twice.data(), nullptr, 1, 1, 2, 1};
  REQUIRE(reference::gather_decode(q.data(), 2, kv, dup, 1.0f, a.data(), lse_a.data()).ok());
  const float* v7 = kv.v_data + kv.token_offset(0, 7, 0);
  const float* k7 = kv.k_data + kv.token_offset(0, 7, 0);
  double logit = 0;
  for (int i = 0; i < dim; ++i) logit += static_cast<double>(q[i]) * k7[i];
  for (int i = 0; i < dim; ++i) CHECK(a[i] == doctest::Approx(v7[i]).epsilon(1e-6));
  CHECK(lse_a[0] == doctest::Approx(logit + std::log(2.0)).epsilon(1e-6));
}

TEST_CASE("merging the states of two halves gives the state of the whole") {
  const int dim = 8;
  Cache cache(1, 1, dim, 16, 4, {64}, 9);
  const auto kv = cache.view(KvLayout::kNHD);
  const auto q = random_vector(dim, 10);
  std::vector<std::int32_t> ids(64);
  for (int t = 0; t < 64; ++t) ids[t] = t;
  std::vector<std::int32_t> first = {40}, second = {24};
  IndexList head{ids.data(), first.data(), 1, 1, 64, 1}, tail{ids.data() + 40, second.data(), 1, 1, 24, 1};
  // States [row 0: (head), (tail), (empty)] plus a fully empty row 1.
  std::vector<float> states(2 * 3 * dim, 0.0f), lse(6, -kInf), whole(dim), whole_lse(1);
  REQUIRE(reference::gather_decode(q.data(), 1, kv, head, 0.5f, states.data(), lse.data()).ok());
  REQUIRE(reference::gather_decode(q.data(), 1, kv, tail, 0.5f, states.data() + dim, lse.data() + 1).ok());
  REQUIRE(reference::dense_decode(q.data(), 1, kv, 0.5f, whole.data(), whole_lse.data()).ok());
  std::vector<float> merged(2 * dim, 3.0f), merged_lse(2, 3.0f);
  REQUIRE(reference::merge_states(states.data(), lse.data(), 2, 3, dim, merged.data(), merged_lse.data()).ok());
  for (int i = 0; i < dim; ++i) CHECK(merged[i] == doctest::Approx(whole[i]).epsilon(1e-5));
  CHECK(merged_lse[0] == doctest::Approx(whole_lse[0]).epsilon(1e-6));
  for (int i = dim; i < 2 * dim; ++i) CHECK(merged[i] == 0.0f);
  CHECK(merged_lse[1] == -kInf);
}

TEST_CASE("exported scores: max over the group of the logits, max-pooled per block, -inf past the end") {
  const int group = 3, dim = 8;
  Cache cache(1, 1, dim, 16, 3, {37}, 11);
  const auto kv = cache.view(KvLayout::kNHD);
  const auto q = random_vector(group * dim, 12);
  std::vector<float> tokens(48, 1.0f), blocks(3, 1.0f);
  REQUIRE(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{tokens.data(), 1, 48}).ok());
  REQUIRE(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{blocks.data(), 16, 3}).ok());
  std::vector<float> pooled(3, -kInf);
  for (int t = 0; t < 37; ++t) {
    const float* k = kv.k_data + kv.token_offset(0, t, 0);
    double best = -1e300;
    for (int g = 0; g < group; ++g) {
      double s = 0;
      for (int i = 0; i < dim; ++i) s += 0.7 * q[g * dim + i] * k[i];
      best = std::max(best, s);
    }
    CHECK(tokens[t] == doctest::Approx(best).epsilon(1e-6));
    pooled[t / 16] = std::max(pooled[t / 16], tokens[t]);
  }
  for (int t = 37; t < 48; ++t) CHECK(tokens[t] == -kInf);
  for (int j = 0; j < 3; ++j) CHECK(blocks[j] == pooled[j]);
  CHECK(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{blocks.data(), 16, 2}) == StatusCode::kInvalidStride);

  // 16-bit exports are the fp32 scores rounded to nearest, -inf included.
  std::vector<__nv_bfloat16> tokens_bf16(48);
  std::vector<half> tokens_fp16(48);
  REQUIRE(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{tokens_bf16.data(), 1, 48, DType::kBFloat16}).ok());
  REQUIRE(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{tokens_fp16.data(), 1, 48, DType::kFloat16}).ok());
  for (int t = 0; t < 48; ++t) {
    CHECK(to_float(tokens_bf16[t]) == to_float(from_float<__nv_bfloat16>(tokens[t])));
    CHECK(to_float(tokens_fp16[t]) == to_float(from_float<half>(tokens[t])));
  }
  CHECK(reference::dense_scores(q.data(), group, kv, 0.7f, ScoreExport{tokens.data(), 1, 48, static_cast<DType>(5)}) ==
        StatusCode::kInvalidValue);
  CHECK(reference::dense_decode(q.data(), 0, kv, 1.0f, tokens.data(), nullptr) == StatusCode::kInvalidShape);
  CHECK(reference::dense_decode<float>(nullptr, 1, kv, 1.0f, tokens.data(), nullptr) == StatusCode::kNullPointer);
}
