// The HyLRA idea on a synthetic trace, through the host reference (fp64, no GPU needed):
// per layer, how much error top-k attention adds (sensitivity), how much of its top-k set the
// previous layer already found (inter-layer similarity), and the error of reusing that set.
//
//   ./01_synthetic_profile [k] [seed]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "hylra/layout/index_list.hpp"
#include "hylra/reference/attention.hpp"
#include "hylra/reference/metrics.hpp"
#include "hylra/reference/topk.hpp"
#include "hylra/trace/synthetic.hpp"

using namespace hylra;

namespace {

constexpr int kSinks = 4, kRecent = 64;

struct LayerResult {
  std::vector<float> dense_out;
  std::vector<std::int32_t> topk;  // [num_queries, num_kv_heads, k]
};

Status attend(const Trace& trace, int layer, const std::vector<std::int32_t>& ids, int k, std::vector<float>* out) {
  const TraceShape& s = trace.shape;
  TraceDecodeBatch batch;
  HYLRA_RETURN_IF_ERROR(make_decode_batch(trace, layer, &batch));
  const IndexList list{ids.data(), nullptr, s.num_queries, s.num_kv_heads, k, 1};
  out->resize(static_cast<std::size_t>(s.q_elements()));
  return reference::gather_decode(trace.layers[layer].q.data(), s.num_qo_heads, batch.kv, list, s.sm_scale, out->data(),
                                  nullptr);
}

Status profile_layer(const Trace& trace, int layer, int k, LayerResult* result) {
  const TraceShape& s = trace.shape;
  TraceDecodeBatch batch;
  HYLRA_RETURN_IF_ERROR(make_decode_batch(trace, layer, &batch));
  const float* q = trace.layers[layer].q.data();
  result->dense_out.resize(static_cast<std::size_t>(s.q_elements()));
  HYLRA_RETURN_IF_ERROR(
      reference::dense_decode(q, s.num_qo_heads, batch.kv, s.sm_scale, result->dense_out.data(), nullptr));
  std::vector<float> scores(static_cast<std::size_t>(s.num_queries) * s.num_kv_heads * s.num_tokens);
  ScoreExport to{scores.data(), 1, s.num_tokens};
  HYLRA_RETURN_IF_ERROR(reference::dense_scores(q, s.num_qo_heads, batch.kv, s.sm_scale, to));
  result->topk.clear();
  for (int m = 0; m < s.num_queries; ++m)
    for (int h = 0; h < s.num_kv_heads; ++h) {
      const float* row = &scores[(static_cast<std::size_t>(m) * s.num_kv_heads + h) * s.num_tokens];
      const auto ids = reference::topk_row(row, batch.seq_lens[m], k, true, kSinks, kRecent);
      result->topk.insert(result->topk.end(), ids.begin(), ids.end());
    }
  return Status::success();
}

}  // namespace

int main(int argc, char** argv) {
  const int k = argc > 1 ? std::atoi(argv[1]) : 256;
  SyntheticTraceConfig config;
  config.seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  Trace trace;
  Status status = make_synthetic_trace(config, &trace);
  if (!status.ok() || k <= 0) {
    std::fprintf(stderr, "error: %s\n", k <= 0 ? "k must be positive" : to_string(status).c_str());
    return 1;
  }
  const TraceShape& s = trace.shape;
  std::printf("hylra demo (host reference, fp64): synthetic trace, %d layers, %d query / %d KV heads, d=%d,\n"
              "N=%d tokens, %d decode steps; top-k = %d tokens (%.1f%% of the cache), %d sinks + %d recent forced\n\n",
              s.num_layers, s.num_qo_heads, s.num_kv_heads, s.head_dim, s.num_tokens, s.num_queries, k,
              100.0 * k / s.num_tokens, kSinks, kRecent);
  std::printf("layer | top-k error (RNMSE) | overlap with layer-1 | error reusing layer-1's set\n");
  std::printf("------+---------------------+----------------------+----------------------------\n");
  LayerResult previous, current;
  for (int l = 0; l < s.num_layers; ++l) {
    status = profile_layer(trace, l, k, &current);
    std::vector<float> sparse_out;
    if (status.ok()) status = attend(trace, l, current.topk, k, &sparse_out);
    if (!status.ok()) {
      std::fprintf(stderr, "error in layer %d: %s\n", l, to_string(status).c_str());
      return 1;
    }
    const double own_error = reference::rnmse(sparse_out.data(), current.dense_out.data(), s.q_elements());
    if (l == 0) {
      std::printf("%5d | %19.2e | %20s | %26s\n", l, own_error, "-", "-");
    } else {
      double overlap = 0.0;
      const int rows = s.num_queries * s.num_kv_heads;
      for (int r = 0; r < rows; ++r) overlap += reference::topk_overlap(&previous.topk[r * k], &current.topk[r * k], k);
      std::vector<float> reuse_out;
      status = attend(trace, l, previous.topk, k, &reuse_out);
      if (!status.ok()) {
        std::fprintf(stderr, "error in layer %d: %s\n", l, to_string(status).c_str());
        return 1;
      }
      std::printf("%5d | %19.2e | %20.3f | %26.2e\n", l, own_error, overlap / rows,
                  reference::rnmse(reuse_out.data(), current.dense_out.data(), s.q_elements()));
    }
    std::swap(previous, current);
  }
  std::printf("\nA diffuse layer (layer 0 here) loses accuracy under top-k: keep it dense. Where consecutive\n"
              "layers overlap strongly, reusing the earlier layer's indices costs little extra error and\n"
              "saves the later layer its scoring pass and top-k: the policy solvers decide where.\n");
  return 0;
}
