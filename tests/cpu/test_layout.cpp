// KV cache view and index-list contract: addressing and every validation error.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hylra/layout/index_list.hpp"
#include "hylra/layout/kv_cache.hpp"

using namespace hylra;

namespace {

struct Pool {
  int num_pages = 6, page_size = 16, heads = 3, dim = 64, batch = 2, max_pages = 3;
  std::vector<float> k = std::vector<float>(static_cast<std::size_t>(num_pages) * page_size * heads * dim);
  std::vector<float> v = k;
  std::vector<std::int32_t> table = {5, 0, 3, 1, 4, 2};
  std::vector<std::int32_t> lens = {40, 17};
  PagedKvCache<float> view(KvLayout layout) {
    return make_paged_kv_cache(layout, k.data(), v.data(), num_pages, page_size, heads, dim, table.data(),
                               max_pages, lens.data(), batch);
  }
};

std::string detail(Status s) { return s.detail(); }

}  // namespace

TEST_CASE("NHD and HND views address the documented element") {
  Pool pool;
  const auto nhd = pool.view(KvLayout::kNHD);
  const auto hnd = pool.view(KvLayout::kHND);
  REQUIRE(validate(nhd).ok());
  REQUIRE(validate(hnd).ok());
  // Sequence 1, token 20 -> logical page 1 -> physical page table[1 * 3 + 1] = 4, slot 4.
  CHECK(nhd.physical_page(1, 1) == 4);
  CHECK(nhd.token_offset(1, 20, 2) == ((4 * 16 + 4) * 3 + 2) * 64);
  CHECK(hnd.token_offset(1, 20, 2) == ((4 * 3 + 2) * 16 + 4) * 64);
  CHECK(nhd.max_seq_len() == 48);
}

TEST_CASE("a page id outside the pool gives offset -1 and fails validate_contents") {
  Pool pool;
  pool.table[2] = 6;  // sequence 0, logical page 2 (tokens 32..47): used, since seq_lens[0] = 40
  auto kv = pool.view(KvLayout::kNHD);
  CHECK(kv.token_offset(0, 33, 0) == -1);
  CHECK(validate(kv).ok());
  CHECK(validate_contents(kv) == StatusCode::kInvalidValue);
  pool.lens[0] = 32;  // page 2 no longer used
  CHECK(validate_contents(pool.view(KvLayout::kNHD)).ok());
  pool.lens[1] = 49;  // longer than the block-table row holds
  CHECK(validate_contents(pool.view(KvLayout::kNHD)) == StatusCode::kInvalidValue);
  pool.lens[1] = -1;
  CHECK(validate_contents(pool.view(KvLayout::kNHD)) == StatusCode::kInvalidValue);
}

TEST_CASE("a contiguous cache is a view with an identity table") {
  const int batch = 2, len = 96, heads = 2, dim = 64;
  std::vector<float> k(static_cast<std::size_t>(batch) * len * heads * dim), v = k;
  std::vector<std::int32_t> lens = {96, 5};
  auto kv = make_contiguous_kv_cache(k.data(), v.data(), batch, len, heads, dim, lens.data());
  REQUIRE(validate(kv).ok());
  CHECK(kv.page_size == 32);  // the largest supported size dividing 96
  CHECK(kv.block_table == nullptr);
  for (int b = 0; b < batch; ++b)
    for (int t : {0, 31, 32, 95})
      CHECK(kv.token_offset(b, t, 1) == ((static_cast<std::int64_t>(b) * len + t) * heads + 1) * dim);
  // A length no supported page size divides falls back to pages of one token.
  auto odd = make_contiguous_kv_cache(k.data(), v.data(), 1, 97, heads, dim, lens.data());
  CHECK(odd.page_size == 1);
  CHECK(odd.token_offset(0, 96, 1) == (96 * heads + 1) * dim);
}

TEST_CASE("KV validation names each problem") {
  Pool pool;
  auto expect = [](PagedKvCache<float> kv, StatusCode code, const char* what) {
    const Status s = validate(kv);
    CHECK(s == code);
    CHECK(detail(s).find(what) != std::string::npos);
  };
  auto base = [&] { return pool.view(KvLayout::kNHD); };
  auto kv = base(); kv.k_data = nullptr; expect(kv, StatusCode::kNullPointer, "k_data");
  kv = base(); kv.v_data = nullptr; expect(kv, StatusCode::kNullPointer, "v_data");
  kv = base(); kv.seq_lens = nullptr; expect(kv, StatusCode::kNullPointer, "seq_lens");
  kv = base(); kv.batch_size = 0; expect(kv, StatusCode::kInvalidShape, "batch_size");
  kv = base(); kv.num_pages = -1; expect(kv, StatusCode::kInvalidShape, "num_pages");
  kv = base(); kv.num_kv_heads = 0; expect(kv, StatusCode::kInvalidShape, "num_kv_heads");
  kv = base(); kv.head_dim = 0; expect(kv, StatusCode::kInvalidShape, "head_dim");
  kv = base(); kv.max_pages_per_seq = 0; expect(kv, StatusCode::kInvalidShape, "max_pages_per_seq");
  kv = base(); kv.page_size = 8; expect(kv, StatusCode::kNotSupported, "page_size");
  kv = base(); kv.page_size = 256; expect(kv, StatusCode::kNotSupported, "page_size");
  kv = base(); kv.block_table = nullptr; kv.num_pages = 5; expect(kv, StatusCode::kInvalidShape, "identity");
  kv = base(); kv.stride_head = 32; expect(kv, StatusCode::kInvalidStride, "stride_head");
  kv = base(); kv.stride_token = 64; expect(kv, StatusCode::kInvalidStride, "stride");
  kv = base(); kv.stride_page = kv.stride_page - 64; expect(kv, StatusCode::kInvalidStride, "stride_page");
  kv = base(); kv.k_data = pool.k.data() + 1; expect(kv, StatusCode::kMisaligned, "k_data");
  kv = base(); kv.stride_page += 2; expect(kv, StatusCode::kMisaligned, "strides");
  // Padding between rows is allowed: strides only need to clear the dimension below.
  kv = base(); kv.stride_token = 3 * 64 + 4; kv.stride_page = 16 * kv.stride_token;
  CHECK(validate(kv).ok());
}

TEST_CASE("index lists: row addressing, shared lists and clamped lengths") {
  std::vector<std::int32_t> ids = {3, 1, -1, 7, 0, 2, 5, -1, -1, 4, 4, 4};
  std::vector<std::int32_t> lens = {2, 3, 9, -2};
  IndexList list{ids.data(), lens.data(), 2, 2, 3, 1};
  CHECK(list.row(1, 0)[0] == 5);
  CHECK(list.row_length(0, 1) == 3);
  CHECK(list.row_length(1, 0) == 3);  // 9 clamped to k_max
  CHECK(list.row_length(1, 1) == 0);  // negative read as empty
  IndexList shared{ids.data(), nullptr, 2, 1, 3, 1};
  CHECK(shared.shared_across_heads());
  CHECK(shared.row(1, 5) == ids.data() + 3);
  CHECK(shared.row_length(0, 3) == 3);
}

TEST_CASE("index list validation names each problem") {
  std::vector<std::int32_t> ids(2 * 4 * 8, -1);
  IndexList ok{ids.data(), nullptr, 2, 4, 8, 16};
  CHECK(validate(ok, 4).ok());
  CHECK(validate(IndexList{ids.data(), nullptr, 2, 1, 8, 1}, 4).ok());
  auto expect = [](IndexList l, StatusCode code, const char* what) {
    const Status s = validate(l, 4);
    CHECK(s == code);
    CHECK(detail(s).find(what) != std::string::npos);
  };
  expect({nullptr, nullptr, 2, 4, 8, 1}, StatusCode::kNullPointer, "indices");
  expect({ids.data(), nullptr, 0, 4, 8, 1}, StatusCode::kInvalidShape, "batch_size");
  expect({ids.data(), nullptr, 2, 4, 0, 1}, StatusCode::kInvalidValue, "k_max");
  expect({ids.data(), nullptr, 2, 3, 8, 1}, StatusCode::kInvalidShape, "num_heads");
  expect({ids.data(), nullptr, 2, 4, 8, 24}, StatusCode::kNotSupported, "block_size");
}

TEST_CASE("index list contents: lengths within k_max, ids inside the sequence") {
  std::vector<std::int32_t> seq_lens = {10, 33};
  std::vector<std::int32_t> ids = {9, 0, -1, 1, 2, -1};  // block_size 16 for row 1: 33 tokens = 3 blocks
  std::vector<std::int32_t> lens = {3, 2};
  CHECK(validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 1}, seq_lens.data()).ok());
  ids[0] = 10;  // == seq_len of sequence 0
  CHECK(validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 1}, seq_lens.data()) == StatusCode::kInvalidValue);
  ids[0] = -2;
  CHECK(validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 1}, seq_lens.data()) == StatusCode::kInvalidValue);
  ids[0] = 0;
  lens[1] = 4;
  const Status s = validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 1}, seq_lens.data());
  CHECK(s == StatusCode::kInvalidValue);
  CHECK(detail(s).find("lengths") != std::string::npos);
  lens[1] = 3;
  ids[5] = 2;  // block 2 of 3 is valid at block granularity 16
  CHECK(validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 16}, seq_lens.data()).ok());
  ids[5] = 3;
  CHECK(validate_contents(IndexList{ids.data(), lens.data(), 2, 1, 3, 16}, seq_lens.data()) == StatusCode::kInvalidValue);
}
