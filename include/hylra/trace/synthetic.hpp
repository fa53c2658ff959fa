// Synthetic traces with the structure profiling is meant to find in real models:
//  * attention sinks: the first tokens draw attention in every layer;
//  * a recent window: the last tokens before each query draw moderate attention;
//  * heavy hitters: a per-(layer, KV head) set of tokens with large logits, which persists (with its
//    per-token weights) from one layer to the next except for a controllable fraction (drift)
//    replaced at each layer;
//  * layer concentration: each layer scales its heavy-hitter logits by a "focus"; diffuse layers
//    (low focus, by default layer 0) spread attention thin, as sensitive layers do.
//
// Construction, per (layer, KV head): a unit direction u; keys z + a_t u with z ~ N(0, noise^2)^d
// and a_t = focus * weight(t); queries of the group's heads sqrt(d) u + N(0, noise^2)^d. With the
// usual sm_scale = 1/sqrt(d) a query's logit for token t is about a_t plus noise of standard
// deviation about noise * sqrt(1 + noise^2).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hylra/trace/rng.hpp"
#include "hylra/trace/trace.hpp"

HYLRA_NAMESPACE_BEGIN

struct SyntheticTraceConfig {
  int num_layers = 12;
  int num_qo_heads = 6;
  int num_kv_heads = 2;
  int head_dim = 64;
  int num_tokens = 4096;
  int num_queries = 8;
  int num_sinks = 4;
  int recent_window = 64;
  int num_heavy_hitters = 96;  // per (layer, KV head)
  double drift = 0.15;         // fraction of heavy hitters replaced from one layer to the next
  double min_focus = 4.0;      // heavy-hitter logit boost, drawn per layer in [min_focus, max_focus]
  double max_focus = 9.0;
  std::vector<int> diffuse_layers = {0};  // layers given diffuse_focus instead
  double diffuse_focus = 0.75;
  double noise = 0.5;  // spread of keys and queries around the structure
  std::uint64_t seed = 1;
};

inline Status validate(const SyntheticTraceConfig& c) {
  TraceShape shape{c.num_layers, c.num_qo_heads, c.num_kv_heads, c.head_dim, c.num_tokens, c.num_queries, 1.f};
  HYLRA_RETURN_IF_ERROR(validate(shape));
  if (c.num_sinks < 0 || c.recent_window < 0 || c.num_heavy_hitters < 0)
    return {StatusCode::kInvalidValue, "synthetic: sinks, window and heavy hitters must be non-negative"};
  if (c.num_heavy_hitters > c.num_tokens) return {StatusCode::kInvalidValue, "synthetic: more heavy hitters than tokens"};
  if (!(c.drift >= 0.0 && c.drift <= 1.0)) return {StatusCode::kInvalidValue, "synthetic: drift must be in [0, 1]"};
  if (!(c.noise >= 0.0)) return {StatusCode::kInvalidValue, "synthetic: noise must be non-negative"};
  if (!(c.min_focus <= c.max_focus)) return {StatusCode::kInvalidValue, "synthetic: min_focus above max_focus"};
  for (int layer : c.diffuse_layers)
    if (layer < 0 || layer >= c.num_layers) return {StatusCode::kInvalidValue, "synthetic: diffuse layer out of range"};
  return Status::success();
}

// Generates a trace; the same config (seed included) gives the same trace everywhere.
inline Status make_synthetic_trace(const SyntheticTraceConfig& c, Trace* out) {
  HYLRA_RETURN_IF_ERROR(validate(c));
  Rng rng(c.seed);
  Trace trace;
  TraceShape& s = trace.shape;
  s = {c.num_layers, c.num_qo_heads, c.num_kv_heads, c.head_dim, c.num_tokens, c.num_queries,
       1.f / std::sqrt(static_cast<float>(c.head_dim))};
  trace.source = "synthetic: seed " + std::to_string(c.seed) + ", drift " + std::to_string(c.drift) + ", " +
                 std::to_string(c.num_heavy_hitters) + " heavy hitters per KV head";
  const int d = c.head_dim, group = s.group_size();

  // Heavy-hitter sets per KV head with their weights in [0.5, 1), carried from layer to layer.
  struct HeavyHitter {
    int token;
    double weight;
  };
  std::vector<std::vector<HeavyHitter>> heavy(c.num_kv_heads);
  std::vector<char> is_heavy(static_cast<std::size_t>(c.num_tokens));
  auto draw_new = [&](std::vector<HeavyHitter>& set, int count) {
    std::fill(is_heavy.begin(), is_heavy.end(), 0);
    for (const HeavyHitter& hh : set) is_heavy[hh.token] = 1;
    while (count-- > 0) {
      int t;
      do t = static_cast<int>(rng.below(c.num_tokens)); while (is_heavy[t]);
      is_heavy[t] = 1;
      set.push_back({t, 0.5 + 0.5 * rng.uniform()});
    }
  };
  for (auto& set : heavy) draw_new(set, c.num_heavy_hitters);

  trace.layers.resize(c.num_layers);
  std::vector<double> u(d), weight(static_cast<std::size_t>(c.num_tokens));
  for (int l = 0; l < c.num_layers; ++l) {
    const bool diffuse = std::find(c.diffuse_layers.begin(), c.diffuse_layers.end(), l) != c.diffuse_layers.end();
    const double focus = diffuse ? c.diffuse_focus : c.min_focus + (c.max_focus - c.min_focus) * rng.uniform();
    LayerTrace& layer = trace.layers[l];
    layer.q.resize(s.q_elements());
    layer.k.resize(s.kv_elements());
    layer.v.resize(s.kv_elements());
    for (int h = 0; h < c.num_kv_heads; ++h) {
      if (l > 0) {  // drift: replace a fraction of the previous layer's heavy hitters
        std::vector<HeavyHitter>& set = heavy[h];
        const int replace = static_cast<int>(std::lround(c.drift * set.size()));
        for (int r = 0; r < replace; ++r) std::swap(set[r], set[r + rng.below(set.size() - r)]);
        set.erase(set.begin(), set.begin() + replace);
        draw_new(set, replace);
      }
      double norm = 0.0;
      for (double& x : u) {
        x = rng.normal();
        norm += x * x;
      }
      for (double& x : u) x /= std::sqrt(norm);

      std::fill(weight.begin(), weight.end(), 0.0);
      for (const HeavyHitter& hh : heavy[h]) weight[hh.token] = hh.weight;
      for (int t = 0; t < std::min(c.num_sinks, c.num_tokens); ++t) weight[t] = 1.5;
      for (int t = std::max(0, c.num_tokens - c.recent_window); t < c.num_tokens; ++t) weight[t] = std::max(weight[t], 0.6);

      for (int t = 0; t < c.num_tokens; ++t) {
        const double a = focus * weight[t];
        float* key = &layer.k[(static_cast<std::size_t>(t) * c.num_kv_heads + h) * d];
        float* value = &layer.v[(static_cast<std::size_t>(t) * c.num_kv_heads + h) * d];
        for (int i = 0; i < d; ++i) {
          key[i] = static_cast<float>(c.noise * rng.normal() + a * u[i]);
          value[i] = static_cast<float>(rng.normal());  // values carry no structure
        }
      }
      for (int m = 0; m < c.num_queries; ++m)
        for (int g = 0; g < group; ++g) {
          float* query = &layer.q[(static_cast<std::size_t>(m) * c.num_qo_heads + h * group + g) * d];
          for (int i = 0; i < d; ++i) query[i] = static_cast<float>(std::sqrt(static_cast<double>(d)) * u[i] + c.noise * rng.normal());
        }
    }
  }
  *out = std::move(trace);
  return Status::success();
}

HYLRA_NAMESPACE_END
