// C ABI over DenseDecode, DenseScores and GatherDecode for bench_attention.py (ctypes). Each entry returns the
// hylra StatusCode as an int; with `workspace_needed` non-null it only reports the workspace size.
#include <cstddef>
#include <cstdint>

#include "hylra/attention/decode.cuh"
#include "hylra/attention/dense_scores.cuh"
#include "hylra/attention/gather.cuh"
#include "hylra/core/dispatch.hpp"

namespace {

template <typename T>
hylra::PagedKvCache<const T> make_view(const void* k, const void* v, int num_pages, int page_size, int num_kv_heads,
                                       int head_dim, int layout, const std::int32_t* block_table, int max_pages,
                                       const std::int32_t* seq_lens, int batch) {
  return hylra::make_paged_kv_cache<const T>(static_cast<hylra::KvLayout>(layout), static_cast<const T*>(k),
                                             static_cast<const T*>(v), num_pages, page_size, num_kv_heads, head_dim,
                                             block_table, max_pages, seq_lens, batch);
}

// The fields every decode operation's arguments share.
template <typename T, typename Arguments>
void set_query_and_cache(Arguments& args, const void* q, const hylra::PagedKvCache<const T>& kv, int num_qo_heads,
                         float sm_scale) {
  args.q = static_cast<const T*>(q);
  args.kv = kv;
  args.num_qo_heads = num_qo_heads;
  args.sm_scale = sm_scale;
}

}  // namespace

extern "C" {

// dtype: 0 fp16, 1 bf16 (hylra::DType); layout: 0 NHD, 1 HND; scores null = no export, else
// score_dtype elements (hylra::DType: 0 fp16, 1 bf16, 2 fp32).
__attribute__((visibility("default"))) int hylra_dense_decode(
    int dtype, const void* q, const void* k, const void* v, int num_pages, int page_size, int num_kv_heads,
    int head_dim, int layout, const std::int32_t* block_table, int max_pages, const std::int32_t* seq_lens, int batch,
    int num_qo_heads, float sm_scale, void* out, float* lse, void* scores, int score_dtype, int score_block,
    long long score_stride,
    void* workspace, std::size_t workspace_bytes, std::size_t* workspace_needed, void* stream) {
  const hylra::Status status = hylra::dispatch_half_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    hylra::DenseDecodeArguments<T> args;
    set_query_and_cache<T>(args, q, make_view<T>(k, v, num_pages, page_size, num_kv_heads, head_dim, layout,
                                                 block_table, max_pages, seq_lens, batch),
                           num_qo_heads, sm_scale);
    args.out = static_cast<T*>(out);
    args.lse = lse;
    args.scores = hylra::ScoreExport{scores, score_block, score_stride, static_cast<hylra::DType>(score_dtype)};
    if (workspace_needed != nullptr) return hylra::dense_decode_workspace_size(args, workspace_needed);
    return hylra::dense_decode(args, workspace, workspace_bytes, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(status.code());
}

// The scores hylra_dense_decode exports, computed alone (K only).
__attribute__((visibility("default"))) int hylra_dense_scores(
    int dtype, const void* q, const void* k, const void* v, int num_pages, int page_size, int num_kv_heads,
    int head_dim, int layout, const std::int32_t* block_table, int max_pages, const std::int32_t* seq_lens, int batch,
    int num_qo_heads, float sm_scale, void* scores, int score_dtype, int score_block, long long score_stride,
    void* stream) {
  const hylra::Status status = hylra::dispatch_half_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    hylra::DenseScoresArguments<T> args;
    set_query_and_cache<T>(args, q, make_view<T>(k, v, num_pages, page_size, num_kv_heads, head_dim, layout,
                                                 block_table, max_pages, seq_lens, batch),
                           num_qo_heads, sm_scale);
    args.scores = hylra::ScoreExport{scores, score_block, score_stride, static_cast<hylra::DType>(score_dtype)};
    return hylra::dense_scores(args, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(status.code());
}

// indices: [batch, list_heads, k_max] int32 ids (tokens, or blocks of block_size tokens), -1 padded.
__attribute__((visibility("default"))) int hylra_gather_decode(
    int dtype, const void* q, const void* k, const void* v, int num_pages, int page_size, int num_kv_heads,
    int head_dim, int layout, const std::int32_t* block_table, int max_pages, const std::int32_t* seq_lens, int batch,
    int num_qo_heads, float sm_scale, const std::int32_t* indices, int list_heads, int k_max, int block_size,
    void* out, float* lse, void* workspace, std::size_t workspace_bytes, std::size_t* workspace_needed,
    void* stream) {
  const hylra::Status status = hylra::dispatch_half_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    hylra::GatherDecodeArguments<T> args;
    set_query_and_cache<T>(args, q, make_view<T>(k, v, num_pages, page_size, num_kv_heads, head_dim, layout,
                                                 block_table, max_pages, seq_lens, batch),
                           num_qo_heads, sm_scale);
    args.indices = hylra::IndexList{indices, nullptr, batch, list_heads, k_max, block_size};
    args.out = static_cast<T*>(out);
    args.lse = lse;
    if (workspace_needed != nullptr) return hylra::gather_decode_workspace_size(args, workspace_needed);
    return hylra::gather_decode(args, workspace, workspace_bytes, static_cast<cudaStream_t>(stream));
  });
  return static_cast<int>(status.code());
}
}
