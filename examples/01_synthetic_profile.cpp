// HyLRA's offline half on a synthetic trace, through the host reference (fp64, no GPU needed):
// per layer, how much error top-k attention adds (sensitivity), how much of its top-k set the
// previous layer already found (inter-layer similarity) and the error of reusing that set; then
// the threshold solver turns the profile into a per-layer policy.
//
//   ./01_synthetic_profile [k] [seed] [theta]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hylra/layout/index_list.hpp"
#include "hylra/policy/similarity.hpp"
#include "hylra/policy/solvers.hpp"
#include "hylra/reference/attention.hpp"
#include "hylra/reference/metrics.hpp"
#include "hylra/reference/topk.hpp"
#include "hylra/trace/synthetic.hpp"

using namespace hylra;

namespace {

constexpr int kSinks = 4, kRecent = 64;
constexpr double kMaxTolerableRnmse = 0.1;  // layers whose own top-k error exceeds this stay dense

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
  const double theta = argc > 3 ? std::atof(argv[3]) : 0.55;
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
  std::vector<std::int32_t> all_topk;  // [layer][row][k], for the similarity matrix
  std::vector<double> own_errors;
  for (int l = 0; l < s.num_layers; ++l) {
    status = profile_layer(trace, l, k, &current);
    std::vector<float> sparse_out;
    if (status.ok()) status = attend(trace, l, current.topk, k, &sparse_out);
    if (!status.ok()) {
      std::fprintf(stderr, "error in layer %d: %s\n", l, to_string(status).c_str());
      return 1;
    }
    const double own_error = reference::rnmse(sparse_out.data(), current.dense_out.data(), s.q_elements());
    own_errors.push_back(own_error);
    all_topk.insert(all_topk.end(), current.topk.begin(), current.topk.end());
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

  // The policy: sensitive layers dense, then the fewest producers with every reuse edge >= theta.
  const int rows = s.num_queries * s.num_kv_heads;
  std::vector<double> similarity;
  bool sensitive[policy::kMaxLayers] = {};
  status = policy::build_similarity(all_topk.data(), s.num_layers, rows, k, &similarity);
  if (status.ok()) status = policy::sensitivity_from_rnmse(own_errors.data(), s.num_layers, kMaxTolerableRnmse, sensitive);
  policy::PolicyInputs inputs;
  inputs.similarity = policy::SimilarityView{similarity.data(), s.num_layers};
  inputs.sensitive = sensitive;
  inputs.selection.k = k;
  policy::Policy derived;
  if (status.ok()) status = policy::solve_threshold(inputs, theta, &derived);
  std::string pattern;
  if (status.ok()) status = policy::to_share_pattern(derived, &pattern);
  if (!status.ok()) {
    std::fprintf(stderr, "policy (theta = %.2f): %s\n", theta, to_string(status).c_str());
    return 1;
  }
  std::printf("\nPolicy for theta = %.2f (layers with top-k error above %.2g stay dense): %s\n"
              "  D = dense, C = selects its own top-k, S = reuses the last selecting layer's indices;\n"
              "  %d of %d layers select, %d reuse.\n",
              theta, kMaxTolerableRnmse, pattern.c_str(), derived.num_producers(), s.num_layers,
              static_cast<int>(std::count(pattern.begin(), pattern.end(), 'S')));
  return 0;
}
