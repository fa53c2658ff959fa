// HybridAttention<T, kHeadDim>: runs a HyLRA policy (policy/policy.hpp) inside an engine's decode
// step, one call per layer, since each layer's query comes from the one before. By layer kind:
//   Dense        DenseDecode.
//   DenseSelect  DenseDecode exporting scores, then BatchedTopK writes the layer's index list.
//   Select       DenseScores (the same scores from K alone), BatchedTopK, then GatherDecode over
//                the list just chosen.
//   Reuse(src)   GatherDecode over the list layer src wrote earlier in this step.
// Scores are the max over each GQA group of the logits (scores.hpp), per token or per block of
// selection.block_size tokens, and for lists shared by all KV heads (IndexScope::kSharedAcrossHeads)
// the max of those over the heads. The first `sink_tokens` and last `recent_tokens` tokens of every
// sequence are always selected and count inside k; at block granularity that is the blocks holding
// the sinks, and one block more than recent_tokens / B rounded up at the end, since the last block
// may be partial. The index lists live in an IndexBuffer inside the workspace, so every step uses
// the same addresses and a captured CUDA graph replays a step.
//
//   HybridAttention<bf16, 128> attention;
//   HYLRA_RETURN_IF_ERROR(HybridAttention<bf16, 128>::plan(args, any_layer, &attention));
//   cudaMalloc(&workspace, attention.workspace_bytes());                   // once
//   for each layer l of a step:  attention.run_layer(l, layer_args[l], workspace, bytes, stream);
//
// Every layer's cache must have the shape of the one given to plan() (batch, heads, head dim,
// capacity); run_layer() checks it. The workspace carries index lists from a producer to its
// readers, so one step's layers run in order on one stream and the workspace is not shared with
// other work in between.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "hylra/attention/decode.cuh"
#include "hylra/attention/dense_scores.cuh"
#include "hylra/attention/gather.cuh"
#include "hylra/core/dispatch.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/policy/policy.hpp"
#include "hylra/reuse/index_buffer.hpp"
#include "hylra/topk/batched_topk.cuh"

HYLRA_NAMESPACE_BEGIN

namespace detail {

constexpr int kRuntimeKernelThreads = 256;

// Top-k row lengths of `heads` rows per sequence: the sequence's entries of `block` tokens.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    row_lengths_kernel(const std::int32_t* seq_lens, int batch, int heads, int max_seq_len, int block,
                       std::int32_t* lengths) {
  for (int row = blockIdx.x * blockDim.x + threadIdx.x; row < batch * heads; row += gridDim.x * blockDim.x) {
    const int len = min(max(seq_lens[row / heads], 0), max_seq_len);
    lengths[row] = (len + block - 1) / block;
  }
}

// Scores for index lists shared by all KV heads: out[b][c] = max over heads h of in[b][h][c].
template <typename ScoreT, int kThreads>
__global__ void __launch_bounds__(kThreads)
    max_over_heads_kernel(const ScoreT* in, int batch, int heads, int cols, ScoreT* out) {
  const std::int64_t n = static_cast<std::int64_t>(batch) * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t b = i / cols, c = i % cols;
    float m = -INFINITY;
    for (int h = 0; h < heads; ++h) m = fmaxf(m, to_float(in[(b * heads + h) * cols + c]));
    out[i] = from_float<ScoreT>(m);
  }
}

}  // namespace detail

template <typename T>
struct HybridAttentionArguments {
  policy::Policy policy;
  int num_qo_heads = 0;
  float sm_scale = 0.0f;
  int sink_tokens = 0;    // first tokens of a sequence always selected
  int recent_tokens = 0;  // last tokens of a sequence always selected
  DType score_dtype = DType::kBFloat16;  // scores as top-k reads them (scores.hpp)
};

// One layer's tensors: its query, its cache and where its output goes.
template <typename T>
struct HybridLayerArguments {
  const T* q = nullptr;  // [batch, num_qo_heads, head_dim]
  PagedKvCache<const T> kv;
  T* out = nullptr;      // [batch, num_qo_heads, head_dim]
  float* lse = nullptr;  // [batch, num_qo_heads], optional
};

template <typename T, int kHeadDim>
class HybridAttention {
 public:
  using Arguments = HybridAttentionArguments<T>;
  using LayerArguments = HybridLayerArguments<T>;

  // Checks the policy and the shapes, and lays out the workspace for layers shaped like `layer`.
  static Status plan(const Arguments& args, const LayerArguments& layer, HybridAttention* out) {
    HYLRA_RETURN_IF_ERROR(policy::validate(args.policy));
    if (args.sink_tokens < 0 || args.recent_tokens < 0)
      return {StatusCode::kInvalidValue, "sink_tokens and recent_tokens must be >= 0"};
    HybridAttention h;
    h.args_ = args;
    h.shape_ = layer.kv;
    const PagedKvCache<const T>& kv = layer.kv;
    HYLRA_RETURN_IF_ERROR((detail::check_decode_args<T, kHeadDim>(layer.q, args.num_qo_heads, kv, layer.out,
                                                                   args.sm_scale)));
    HYLRA_RETURN_IF_ERROR(IndexBuffer::plan(args.policy, kv.batch_size, kv.num_kv_heads, &h.lists_));
    const int block = args.policy.selection.block_size;
    h.score_cols_ = (kv.max_seq_len() + block - 1) / block;
    const std::size_t rows = static_cast<std::size_t>(kv.batch_size) * kv.num_kv_heads;

    // Workspace: index lists, scores, their max over the heads when lists are shared by all heads,
    // top-k row lengths, then the scratch every call shares.
    auto aligned = [](std::size_t bytes) { return (bytes + 255) / 256 * 256; };
    const std::size_t topk_rows = static_cast<std::size_t>(kv.batch_size) * h.lists_.list_heads();
    const bool pooled = h.lists_.list_heads() == 1 && kv.num_kv_heads > 1;
    const std::size_t score_bytes = aligned(rows * h.score_cols_ * size_of(args.score_dtype));
    const std::size_t pooled_bytes = pooled ? aligned(topk_rows * h.score_cols_ * size_of(args.score_dtype)) : 0;
    h.scores_offset_ = aligned(h.lists_.bytes());
    h.pooled_offset_ = pooled ? h.scores_offset_ + score_bytes : h.scores_offset_;
    h.lengths_offset_ = h.scores_offset_ + score_bytes + pooled_bytes;
    h.scratch_offset_ = h.lengths_offset_ + aligned(topk_rows * sizeof(std::int32_t));
    // Scratch sizes depend on shapes only: query them with placeholder addresses.
    unsigned char* const fake = reinterpret_cast<unsigned char*>(std::uintptr_t{256});
    std::size_t scratch = 0, need = 0;
    // Dense layers with and without the export: DenseDecode may plan them differently.
    DenseDecodeArguments<T> dense = h.dense_args(layer, fake);
    HYLRA_RETURN_IF_ERROR((DenseDecode<T, kHeadDim>::workspace_size(dense, &need)));
    scratch = need > scratch ? need : scratch;
    dense.scores = ScoreExport{};
    HYLRA_RETURN_IF_ERROR((DenseDecode<T, kHeadDim>::workspace_size(dense, &need)));
    scratch = need > scratch ? need : scratch;
    HYLRA_RETURN_IF_ERROR((GatherDecode<T, kHeadDim>::workspace_size(
        h.gather_args(layer, IndexList{reinterpret_cast<const std::int32_t*>(fake), nullptr, kv.batch_size,
                                       h.lists_.list_heads(), args.policy.selection.k, block}),
        &need)));
    scratch = need > scratch ? need : scratch;
    HYLRA_RETURN_IF_ERROR(dispatch_dtype(args.score_dtype, [&](auto tag) {
      using ScoreT = typename decltype(tag)::type;
      auto* const ids = reinterpret_cast<std::int32_t*>(fake);
      const auto topk = h.topk_args<ScoreT>(fake, ids, ids);
      HYLRA_RETURN_IF_ERROR(BatchedTopK<ScoreT>::can_implement(topk));
      need = BatchedTopK<ScoreT>::workspace_size(topk);
      return Status::success();
    }));
    scratch = need > scratch ? need : scratch;
    h.workspace_bytes_ = h.scratch_offset_ + aligned(scratch);
    *out = h;
    return Status::success();
  }

  std::size_t workspace_bytes() const { return workspace_bytes_; }
  const IndexBuffer& index_buffer() const { return lists_; }

  // For inspection (run_layer() is all an engine needs): the scores the last producer layer wrote
  // and the index list a layer wrote or attended over, inside `workspace`.
  ScoreExport scores_in(void* workspace) const { return score_export(static_cast<unsigned char*>(workspace)); }
  Status list_in(int layer, void* workspace, IndexList* list) const {
    MutableIndexList written;
    if (!lists_.writer(layer, static_cast<std::int32_t*>(workspace), &written).ok())
      return lists_.reader(layer, static_cast<const std::int32_t*>(workspace), list);
    *list = IndexList{written.indices, written.lengths, written.batch_size, written.num_heads, written.k_max,
                      written.block_size};
    return Status::success();
  }

  // Runs layer `layer` of the policy on `stream`: graph-capturable, no allocation or host sync.
  // `workspace`: workspace_bytes() bytes, 256-byte aligned, the same for every layer of a step.
  Status run_layer(int layer, const LayerArguments& la, void* workspace, std::size_t workspace_bytes,
                   cudaStream_t stream) const {
    if (layer < 0 || layer >= args_.policy.num_layers) return {StatusCode::kInvalidValue, "layer out of the policy"};
    if (workspace == nullptr) return {StatusCode::kNullPointer, "workspace"};
    if (workspace_bytes < workspace_bytes_) return {StatusCode::kWorkspaceTooSmall, "HybridAttention::workspace_bytes()"};
    if (reinterpret_cast<std::uintptr_t>(workspace) % 256 != 0)
      return {StatusCode::kMisaligned, "workspace must be 256-byte aligned"};
    if (la.kv.batch_size != shape_.batch_size || la.kv.num_kv_heads != shape_.num_kv_heads ||
        la.kv.head_dim != shape_.head_dim || la.kv.max_seq_len() != shape_.max_seq_len())
      return {StatusCode::kInvalidShape, "the layer's cache differs in shape from the one plan() saw"};
    unsigned char* const base = static_cast<unsigned char*>(workspace);
    std::int32_t* const lists = reinterpret_cast<std::int32_t*>(base);
    void* const scratch = base + scratch_offset_;
    const std::size_t scratch_bytes = workspace_bytes_ - scratch_offset_;
    const policy::LayerKind kind = args_.policy[layer].kind;

    if (kind == policy::LayerKind::kDense || kind == policy::LayerKind::kDenseSelect) {
      auto dense = dense_args(la, base);
      if (kind == policy::LayerKind::kDense) dense.scores = {};
      HYLRA_RETURN_IF_ERROR((DenseDecode<T, kHeadDim>::run(dense, scratch, scratch_bytes, stream)));
    }
    if (kind == policy::LayerKind::kSelect) {
      const DenseScoresArguments<T> scoring{la.q, la.kv, args_.num_qo_heads, args_.sm_scale, score_export(base)};
      HYLRA_RETURN_IF_ERROR((DenseScores<T, kHeadDim>::run(scoring, stream)));
    }
    if (policy::is_producer(kind)) {
      constexpr int kThreads = detail::kRuntimeKernelThreads;
      std::int32_t* const lengths = reinterpret_cast<std::int32_t*>(base + lengths_offset_);
      const int rows = la.kv.batch_size * lists_.list_heads();
      detail::row_lengths_kernel<kThreads><<<(rows + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          la.kv.seq_lens, la.kv.batch_size, lists_.list_heads(), la.kv.max_seq_len(), args_.policy.selection.block_size,
          lengths);
      HYLRA_RETURN_IF_ERROR(check_launch());
      MutableIndexList written;
      HYLRA_RETURN_IF_ERROR(lists_.writer(layer, lists, &written));
      HYLRA_RETURN_IF_ERROR(dispatch_dtype(args_.score_dtype, [&](auto tag) {
        using ScoreT = typename decltype(tag)::type;
        if (pooled_offset_ != scores_offset_) {
          const int blocks = static_cast<int>((static_cast<std::int64_t>(la.kv.batch_size) * score_cols_ + kThreads - 1) /
                                              kThreads);
          detail::max_over_heads_kernel<ScoreT, kThreads><<<blocks < 1024 ? blocks : 1024, kThreads, 0, stream>>>(
              reinterpret_cast<const ScoreT*>(base + scores_offset_), la.kv.batch_size, la.kv.num_kv_heads, score_cols_,
              reinterpret_cast<ScoreT*>(base + pooled_offset_));
          HYLRA_RETURN_IF_ERROR(check_launch());
        }
        return BatchedTopK<ScoreT>::run(topk_args<ScoreT>(base + pooled_offset_, lengths, written.indices), scratch,
                                        scratch_bytes, stream);
      }));
    }
    if (kind == policy::LayerKind::kSelect || kind == policy::LayerKind::kReuse) {
      IndexList read;
      HYLRA_RETURN_IF_ERROR(lists_.reader(layer, lists, &read));
      HYLRA_RETURN_IF_ERROR((GatherDecode<T, kHeadDim>::run(gather_args(la, read), scratch, scratch_bytes, stream)));
    }
    return Status::success();
  }

 private:
  ScoreExport score_export(unsigned char* base) const {
    return {base + scores_offset_, args_.policy.selection.block_size, score_cols_, args_.score_dtype};
  }

  DenseDecodeArguments<T> dense_args(const LayerArguments& la, unsigned char* base) const {
    DenseDecodeArguments<T> d;
    d.q = la.q;
    d.kv = la.kv;
    d.num_qo_heads = args_.num_qo_heads;
    d.sm_scale = args_.sm_scale;
    d.out = la.out;
    d.lse = la.lse;
    d.scores = score_export(base);
    return d;
  }

  GatherDecodeArguments<T> gather_args(const LayerArguments& la, const IndexList& indices) const {
    GatherDecodeArguments<T> g;
    g.q = la.q;
    g.kv = la.kv;
    g.indices = indices;
    g.num_qo_heads = args_.num_qo_heads;
    g.sm_scale = args_.sm_scale;
    g.out = la.out;
    g.lse = la.lse;
    return g;
  }

  // One top-k row per (sequence, KV head), or per sequence for shared lists; forced tokens in
  // whole entries.
  template <typename ScoreT>
  BatchedTopKArguments<ScoreT> topk_args(unsigned char* scores, const std::int32_t* lengths,
                                         std::int32_t* indices) const {
    const int block = args_.policy.selection.block_size;
    BatchedTopKArguments<ScoreT> t;
    t.scores = reinterpret_cast<const ScoreT*>(scores);
    t.row_stride = score_cols_;
    t.num_rows = shape_.batch_size * lists_.list_heads();
    t.num_cols = score_cols_;
    t.lengths = lengths;
    t.k = args_.policy.selection.k;
    t.indices = indices;
    t.sink_tokens = (args_.sink_tokens + block - 1) / block;
    t.recent_tokens = args_.recent_tokens == 0 || block == 1 ? args_.recent_tokens
                                                              : (args_.recent_tokens + block - 1) / block + 1;
    return t;
  }

  Arguments args_;
  PagedKvCache<const T> shape_;
  IndexBuffer lists_;
  int score_cols_ = 0;
  // Workspace offsets; pooled_offset_ == scores_offset_ when top-k reads the per-head scores.
  std::size_t scores_offset_ = 0, pooled_offset_ = 0, lengths_offset_ = 0, scratch_offset_ = 0, workspace_bytes_ = 0;
};

HYLRA_NAMESPACE_END
