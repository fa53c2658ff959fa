// Trace directories (write/read round trip, manifest errors) and the synthetic generator.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "hylra/trace/synthetic.hpp"
#include "hylra/trace/trace.hpp"

using namespace hylra;

namespace {

SyntheticTraceConfig small_config() {
  SyntheticTraceConfig c;
  c.num_layers = 4;
  c.num_qo_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.num_tokens = 512;
  c.num_queries = 4;
  c.num_heavy_hitters = 40;
  c.recent_window = 16;
  return c;
}

// Indices of the k largest logits of query `m`, head `qh` of `layer` over the causal prefix.
std::vector<int> top_logits(const Trace& t, int layer, int m, int qh, int k) {
  const TraceShape& s = t.shape;
  const int kv_head = qh / s.group_size(), n = s.query_position(m) + 1;
  std::vector<double> logit(n);
  const float* q = &t.layers[layer].q[(static_cast<std::size_t>(m) * s.num_qo_heads + qh) * s.head_dim];
  for (int j = 0; j < n; ++j) {
    const float* key = &t.layers[layer].k[(static_cast<std::size_t>(j) * s.num_kv_heads + kv_head) * s.head_dim];
    logit[j] = std::inner_product(q, q + s.head_dim, key, 0.0) * s.sm_scale;
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return logit[a] > logit[b]; });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

double overlap(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> common;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
  return static_cast<double>(common.size()) / a.size();
}

}  // namespace

TEST_CASE("synthetic traces are deterministic and seed-dependent") {
  Trace a, b, c;
  SyntheticTraceConfig config = small_config();
  REQUIRE(make_synthetic_trace(config, &a).ok());
  REQUIRE(make_synthetic_trace(config, &b).ok());
  config.seed = 2;
  REQUIRE(make_synthetic_trace(config, &c).ok());
  CHECK(a.layers[3].k == b.layers[3].k);
  CHECK(a.layers[3].q == b.layers[3].q);
  CHECK(a.layers[3].k != c.layers[3].k);
  CHECK(a.shape.sm_scale == doctest::Approx(0.125));
}

TEST_CASE("synthetic structure: sinks attract, drift controls cross-layer overlap, layer 0 is diffuse") {
  SyntheticTraceConfig config = small_config();
  const int k = 24;
  auto mean_overlap = [&](const Trace& t, int l0, int l1) {
    double sum = 0;
    int count = 0;
    for (int m = 0; m < t.shape.num_queries; ++m)
      for (int h = 0; h < t.shape.num_qo_heads; ++h, ++count) sum += overlap(top_logits(t, l0, m, h, k), top_logits(t, l1, m, h, k));
    return sum / count;
  };
  config.drift = 0.0;
  Trace stable;
  REQUIRE(make_synthetic_trace(config, &stable).ok());
  config.drift = 1.0;
  Trace drifting;
  REQUIRE(make_synthetic_trace(config, &drifting).ok());
  const double stable_overlap = mean_overlap(stable, 1, 2), drifting_overlap = mean_overlap(drifting, 1, 2);
  CHECK(stable_overlap > 0.7);
  CHECK(drifting_overlap < stable_overlap - 0.3);
  // Layer 0 is diffuse: its top set agrees with layer 1's far less than layers 1 and 2 agree.
  CHECK(mean_overlap(stable, 0, 1) < stable_overlap - 0.3);
  // Sinks are in every focused layer's top set.
  const std::vector<int> top = top_logits(stable, 2, 0, 0, k);
  for (int sink = 0; sink < config.num_sinks; ++sink) CHECK(std::binary_search(top.begin(), top.end(), sink));
}

TEST_CASE("synthetic config validation") {
  Trace t;
  SyntheticTraceConfig c = small_config();
  c.num_qo_heads = 5;
  CHECK(make_synthetic_trace(c, &t) == StatusCode::kInvalidShape);
  c = small_config();
  c.drift = 1.5;
  CHECK(make_synthetic_trace(c, &t) == StatusCode::kInvalidValue);
  c = small_config();
  c.diffuse_layers = {7};
  CHECK(make_synthetic_trace(c, &t) == StatusCode::kInvalidValue);
  c = small_config();
  c.num_queries = c.num_tokens + 1;
  CHECK(make_synthetic_trace(c, &t) == StatusCode::kInvalidShape);
}

TEST_CASE("trace directories round-trip and report bad manifests by field") {
  Trace written, read;
  REQUIRE(make_synthetic_trace(small_config(), &written).ok());
  const std::string dir = (std::filesystem::temp_directory_path() / "hylra_test_trace").string();
  std::filesystem::remove_all(dir);
  REQUIRE(write_trace(dir, written).ok());
  std::string error;
  REQUIRE_MESSAGE(read_trace(dir, &read, &error).ok(), error);
  CHECK(read.shape.num_tokens == written.shape.num_tokens);
  CHECK(read.shape.sm_scale == written.shape.sm_scale);
  CHECK(read.source == written.source);
  CHECK(read.layers[2].v == written.layers[2].v);

  auto rewrite_manifest = [&](const std::string& text) {
    std::ofstream(dir + "/trace.json") << text;
    error.clear();
    return read_trace(dir, &read, &error);
  };
  const std::string fields = R"("num_layers": 4, "num_qo_heads": 6, "num_kv_heads": 2, "head_dim": 64, "num_queries": 4, "sm_scale": 0.125)";
  CHECK(rewrite_manifest(R"({"format": "hylra-trace", "version": 1, "num_tokens": 512, )" + fields + "}").ok());
  CHECK(rewrite_manifest(R"({"format": "other", "version": 1})") == StatusCode::kParseError);
  CHECK(rewrite_manifest(R"({"format": "hylra-trace", "version": 2, "num_tokens": 512, )" + fields + "}") ==
        StatusCode::kNotSupported);
  CHECK(rewrite_manifest(R"({"format": "hylra-trace", "version": 1, "num_tokens": -3, )" + fields + "}") ==
        StatusCode::kParseError);
  CHECK(error.find("num_tokens") != std::string::npos);
  CHECK(error.find("line 1") != std::string::npos);
  CHECK(rewrite_manifest(R"({"format": "hylra-trace", "version": 1, "num_tokens": 511, )" + fields + "}") ==
        StatusCode::kInvalidShape);  // the .npy files hold 512 tokens
  CHECK(error.find("layer_000_k.npy") != std::string::npos);
  CHECK(rewrite_manifest(R"({"format": "hylra-trace", "version": 1, "num_tokens": 512, )") == StatusCode::kParseError);
  CHECK(read_trace(dir + "/missing", &read, &error) == StatusCode::kIoError);
  std::filesystem::remove_all(dir);
}
