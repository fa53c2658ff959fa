// What a policy costs and how faithful its reuse is: per-kind counts, reuse-edge similarities and
// the predicted decode cost. The solvers optimise these quantities; the CLI prints them.
#pragma once

#include <limits>

#include "hylra/policy/policy.hpp"
#include "hylra/policy/similarity.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

// Predicted cost of one layer of each kind (any unit: measured microseconds or a model).
struct KindCosts {
  double dense = 0.0;
  double dense_select = 0.0;
  double select = 0.0;
  double reuse = 0.0;

  constexpr double of(LayerKind kind) const {
    return kind == LayerKind::kDense ? dense : kind == LayerKind::kDenseSelect ? dense_select : kind == LayerKind::kSelect ? select : reuse;
  }
};

constexpr Status validate(const KindCosts& c) {
  for (double x : {c.dense, c.dense_select, c.select, c.reuse})
    if (!(x >= 0.0 && x <= std::numeric_limits<double>::max())) return Status(StatusCode::kInvalidValue, "costs must be finite and non-negative");
  return Status::success();
}

struct PolicyStats {
  int num_kind[kNumLayerKinds] = {};  // indexed by LayerKind
  int producers = 0;
  int reuse_edges = 0;
  // Smallest and total M[source][layer] over Reuse layers; +inf and 0 when there are none.
  double min_edge = std::numeric_limits<double>::infinity();
  double sum_edge = 0.0;
  double cost = 0.0;  // sum over layers of costs.of(kind)

  constexpr int count(LayerKind kind) const { return num_kind[static_cast<int>(kind)]; }
};

// Sums in layer order, as the solvers accumulate edge similarities, so a solver's edge sum and
// this one agree to the bit (cost is in the caller's units; the cost-aware solver compares
// cost_units). Expects a valid policy and a matrix covering its layers. O(L).
template <int MaxLayers>
constexpr PolicyStats summarize(const BasicPolicy<MaxLayers>& policy, const SimilarityView& m, const KindCosts& costs = {}) {
  PolicyStats s;
  for (int i = 0; i < policy.num_layers; ++i) {
    const LayerPolicy& layer = policy.layers[i];
    ++s.num_kind[static_cast<int>(layer.kind)];
    s.producers += is_producer(layer.kind);
    s.cost += costs.of(layer.kind);
    if (layer.kind == LayerKind::kReuse) {
      const double e = m(layer.source, i);
      ++s.reuse_edges;
      s.min_edge = e < s.min_edge ? e : s.min_edge;
      s.sum_edge += e;
    }
  }
  return s;
}

}  // namespace policy
HYLRA_NAMESPACE_END
