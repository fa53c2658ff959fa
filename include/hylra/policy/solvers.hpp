// Policy solvers: from the similarity matrix M and the sensitivity mask to a per-layer policy.
//
// The policy space every solver searches (and the brute-force tests enumerate):
//   * a sensitive layer takes a kind from `sensitive_kinds` (Dense and/or DenseSelect), a tolerant
//     layer one from `tolerant_kinds` (HyLRA: Select or Reuse; the cost-aware solver may also
//     allow Dense and DenseSelect where they are cheaper);
//   * a Reuse layer reads the MOST RECENT producer before it (HyLRA's chain; Dense layers in between
//     do not break it); with no earlier producer a layer cannot be Reuse. Validation accepts any
//     earlier producer, but solving over "any earlier producer" makes the state the whole producer
//     set (exponential), so the solvers do not search it.
//   * a reuse edge of layer j is M[source][j]; producers are Select and DenseSelect layers (forced
//     DenseSelect layers count).
// Each solver is an exact dynamic program over (layer, most recent producer[, producers so far]);
// objectives are lexicographic and accumulate in layer order, as summarize() does. Primaries are
// exact (producer counts, minimum edges, integer cost units); edge sums are exact when the
// similarities are multiples of a power of two (overlaps out of k = 2^m), and otherwise differ
// from the exact optimum by rounding at most. Among equally good policies the one returned is
// fixed (the earliest predecessor wins ties) but not otherwise specified.
//
// Everything is constexpr: with a literal matrix a policy can be derived in a constant expression
// (any capacity with GCC or Clang, up to 32 layers with other compilers); at run time capacities
// above 32 layers use a heap workspace.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <memory>

#include "hylra/policy/policy.hpp"
#include "hylra/policy/similarity.hpp"
#include "hylra/policy/summary.hpp"

// GCC and Clang expose C++20's std::is_constant_evaluated() as a builtin in C++17 mode; with it a
// policy of any capacity can be derived at compile time, without it up to kStackWorkspaceLayers.
#if defined(__has_builtin) && !defined(__CUDACC__)
#if __has_builtin(__builtin_is_constant_evaluated)
#define HYLRA_POLICY_CONSTANT_EVALUATED() __builtin_is_constant_evaluated()
#endif
#endif

HYLRA_NAMESPACE_BEGIN
namespace policy {

struct PolicyInputs {
  SimilarityView similarity;         // M; only num_layers is read by jump_n
  const bool* sensitive = nullptr;   // [num_layers], or null when no layer is sensitive
  KindSet sensitive_kinds = KindSet().with(LayerKind::kDense);
  KindSet tolerant_kinds = KindSet().with(LayerKind::kSelect).with(LayerKind::kReuse);
  SelectionParams selection{};       // copied into the policy
};

namespace detail {

enum class Objective {
  kFewestProducersThenSum,  // maximise (-producers, sum of edges)
  kMaxMinEdge,              // maximise the smallest edge (+inf with no edges)
  kMaxSum,                  // maximise the sum of edges
  kMinCostThenSum,          // maximise (-cost, sum of edges)
};

struct Score {
  double primary = 0.0;
  double secondary = 0.0;
};

constexpr bool better(Score a, Score b) { return a.primary > b.primary || (a.primary == b.primary && a.secondary > b.secondary); }

constexpr double kInf = std::numeric_limits<double>::infinity();

// The objective is a template parameter so the DP's inner loops carry no dispatch.
template <Objective kObjective>
struct DpProblem {
  double theta = -kInf;      // a Reuse layer needs M[source][layer] >= theta
  int max_producers = -1;    // -1: no limit
  int exact_producers = -1;  // -1: any number
  KindCosts costs{};

  constexpr bool counts_producers() const { return max_producers >= 0 || exact_producers >= 0; }
  constexpr Score start() const { return kObjective == Objective::kMaxMinEdge ? Score{kInf, 0.0} : Score{}; }

  // The score after one more layer of `kind` (edge: its similarity when kind is Reuse).
  constexpr Score apply(Score s, LayerKind kind, double edge) const {
    const bool reuse = kind == LayerKind::kReuse;
    if constexpr (kObjective == Objective::kFewestProducersThenSum) {
      s.primary -= is_producer(kind) ? 1.0 : 0.0;
      s.secondary += reuse ? edge : 0.0;
    } else if constexpr (kObjective == Objective::kMaxMinEdge) {
      if (reuse && edge < s.primary) s.primary = edge;
    } else if constexpr (kObjective == Objective::kMaxSum) {
      s.primary += reuse ? edge : 0.0;
    } else {
      s.primary -= costs.of(kind);
      s.secondary += reuse ? edge : 0.0;
    }
    return s;
  }
};

// The DP tables for up to MaxLayers layers: one state per (most recent producer + 1, producers).
template <int MaxLayers>
struct DpWorkspace {
  static constexpr int kSide = MaxLayers + 1;
  std::array<Score, kSide * kSide> score{};
  std::array<bool, kSide * kSide> reachable{};
  std::array<Score, kSide> producer_score{};
  std::array<bool, kSide> producer_reachable{};
  // [layer][producers]: most recent producer + 1 before `layer` on the best path making `layer` a producer.
  std::array<std::int16_t, MaxLayers * kSide> producer_from{};
};

// The better producer kind a layer may take (Select wins ties), or false if it may take none.
// Producing leaves the chain state the same whichever kind, so the choice is local.
template <typename Problem>
constexpr bool producer_kind(const Problem& d, KindSet allowed, LayerKind* kind) {
  bool found = false;
  for (LayerKind k : {LayerKind::kSelect, LayerKind::kDenseSelect}) {
    if (!allowed.contains(k)) continue;
    if (!found || better(d.apply(d.start(), k, 0.0), d.apply(d.start(), *kind, 0.0))) *kind = k;
    found = true;
  }
  return found;
}

// The better non-producing kind for `layer` with most recent producer `src` (-1: none): Dense, or
// Reuse when allowed and its edge meets theta (Dense wins ties). Local for the same reason.
template <typename Problem>
constexpr bool passive_kind(const Problem& d, const SimilarityView& m, KindSet allowed, int src, int layer, LayerKind* kind) {
  bool found = false;
  if (allowed.contains(LayerKind::kDense)) {
    *kind = LayerKind::kDense;
    found = true;
  }
  if (allowed.contains(LayerKind::kReuse) && src >= 0 && m(src, layer) >= d.theta) {
    const double e = m(src, layer);
    if (!found || better(d.apply(d.start(), LayerKind::kReuse, e), d.apply(d.start(), LayerKind::kDense, 0.0))) *kind = LayerKind::kReuse;
    found = true;
  }
  return found;
}

// Solves `d` over the policy space of `in` and writes the best policy to `out`, or returns false
// when no policy satisfies the constraints. O(L^2 · C) time with C = 1 + the producer limit when
// counted (else 1); O((L + 1)^2) space in `ws`.
template <int MaxLayers, typename Problem>
constexpr bool solve_dp(const PolicyInputs& in, const Problem& d, DpWorkspace<MaxLayers>& ws, BasicPolicy<MaxLayers>* out, Score* best_score) {
  constexpr int kSide = MaxLayers + 1;
  const SimilarityView& m = in.similarity;
  const int num_layers = m.num_layers;
  const int limit = d.exact_producers >= 0 ? d.exact_producers : d.max_producers;
  if (d.exact_producers > num_layers) return false;
  const int counts = d.counts_producers() ? (limit < num_layers ? limit : num_layers) + 1 : 1;
  auto at = [&](int src, int c) { return (src + 1) * kSide + c; };
  auto allowed_at = [&](int layer) { return in.sensitive != nullptr && in.sensitive[layer] ? in.sensitive_kinds : in.tolerant_kinds; };

  for (int c = 0; c < counts; ++c) ws.reachable[at(-1, c)] = false;
  ws.reachable[at(-1, 0)] = true;
  ws.score[at(-1, 0)] = d.start();
  for (int layer = 0; layer < num_layers; ++layer) {
    const KindSet allowed = allowed_at(layer);
    // At most layer + 1 producers so far: states beyond stay unreachable and are skipped.
    const int c_end = counts < layer + 2 ? counts : layer + 2;
    for (int c = 0; c < counts; ++c) ws.reachable[at(layer, c)] = false;
    // Layer as a producer: the best state before it, with one producer fewer when counted.
    LayerKind pk = LayerKind::kSelect;
    const bool can_produce = producer_kind(d, allowed, &pk);
    for (int c = 0; c < c_end; ++c) {
      ws.producer_reachable[c] = false;
      const int from_c = d.counts_producers() ? c - 1 : c;
      if (!can_produce || from_c < 0) continue;
      // A state (src, c) has c <= src + 1: at most one producer per layer up to src.
      for (int src = from_c - 1 > -1 ? from_c - 1 : -1; src < layer; ++src) {
        if (!ws.reachable[at(src, from_c)]) continue;
        const Score s = d.apply(ws.score[at(src, from_c)], pk, 0.0);
        if (!ws.producer_reachable[c] || better(s, ws.producer_score[c])) {
          ws.producer_score[c] = s;
          ws.producer_reachable[c] = true;
          ws.producer_from[layer * kSide + c] = static_cast<std::int16_t>(src + 1);
        }
      }
    }
    // Layer as Dense or Reuse: the chain state stays.
    for (int src = -1; src < layer; ++src) {
      LayerKind kind = LayerKind::kDense;
      const bool can_pass = passive_kind(d, m, allowed, src, layer, &kind);
      const double edge = kind == LayerKind::kReuse ? m(src, layer) : 0.0;
      const int c_src_end = c_end < src + 2 ? c_end : src + 2;
      for (int c = 0; c < c_src_end; ++c) {
        if (!ws.reachable[at(src, c)]) continue;
        if (can_pass) ws.score[at(src, c)] = d.apply(ws.score[at(src, c)], kind, edge);
        else ws.reachable[at(src, c)] = false;
      }
    }
    for (int c = 0; c < c_end; ++c) {
      ws.reachable[at(layer, c)] = ws.producer_reachable[c];
      ws.score[at(layer, c)] = ws.producer_score[c];
    }
  }

  int best_src = -2, best_c = 0;
  for (int src = -1; src < num_layers; ++src) {
    for (int c = 0; c < counts; ++c) {
      if (!ws.reachable[at(src, c)] || (d.exact_producers >= 0 && c != d.exact_producers)) continue;
      if (best_src == -2 || better(ws.score[at(src, c)], ws.score[at(best_src, best_c)])) {
        best_src = src;
        best_c = c;
      }
    }
  }
  if (best_src == -2) return false;
  *best_score = ws.score[at(best_src, best_c)];

  out->num_layers = num_layers;
  out->selection = in.selection;
  for (int layer = num_layers - 1, src = best_src, c = best_c; layer >= 0; --layer) {
    const KindSet allowed = allowed_at(layer);
    LayerKind kind = LayerKind::kDense;
    if (src == layer) {
      producer_kind(d, allowed, &kind);
      out->layers[layer] = {kind, -1};
      src = ws.producer_from[layer * kSide + c] - 1;
      c -= d.counts_producers() ? 1 : 0;
    } else {
      passive_kind(d, m, allowed, src, layer, &kind);
      out->layers[layer] = kind == LayerKind::kReuse ? reuse(src) : LayerPolicy{kind, -1};
    }
  }
  return true;
}

// Checks what every solver needs from its inputs.
template <int MaxLayers>
constexpr Status validate_inputs(const PolicyInputs& in, bool needs_similarity) {
  if (needs_similarity) {
    HYLRA_RETURN_IF_ERROR(validate(in.similarity, MaxLayers));
  } else if (in.similarity.num_layers < 1 || in.similarity.num_layers > MaxLayers) {
    return Status(StatusCode::kInvalidShape, "num_layers must be in [1, policy capacity]");
  }
  if (in.selection.k <= 0) return Status(StatusCode::kInvalidValue, "selection.k must be positive");
  if (in.selection.block_size <= 0) return Status(StatusCode::kInvalidValue, "selection.block_size must be positive");
  const KindSet dense_kinds = KindSet().with(LayerKind::kDense).with(LayerKind::kDenseSelect);
  if (in.sensitive_kinds.empty() || !dense_kinds.contains_all(in.sensitive_kinds))
    return Status(StatusCode::kInvalidValue, "sensitive_kinds must be a non-empty subset of {Dense, DenseSelect}");
  if (in.tolerant_kinds.empty()) return Status(StatusCode::kInvalidValue, "tolerant_kinds must not be empty");
  return Status::success();
}

// Not constexpr: C++17 allows no std::unique_ptr in a constexpr function, even on a path that
// constant evaluation never takes.
template <int MaxLayers, typename Problem>
bool solve_dp_on_heap(const PolicyInputs& in, const Problem& d, BasicPolicy<MaxLayers>* out, Score* best_score) {
  const auto ws = std::make_unique<DpWorkspace<MaxLayers>>();
  return solve_dp(in, d, *ws, out, best_score);
}

// Policies of up to this many layers keep the DP workspace on the stack (under 20 KiB).
constexpr int kStackWorkspaceLayers = 32;

// Runs the DP with a workspace on the stack for small capacities and on the heap otherwise (in
// constant evaluation always local), then validates the result against the rules as a
// post-condition.
template <int MaxLayers, typename Problem>
constexpr Status run_dp(const PolicyInputs& in, const Problem& d, const char* infeasible, BasicPolicy<MaxLayers>* out, Score* score) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "policy output");
  BasicPolicy<MaxLayers> policy;
  bool found = false;
  if constexpr (MaxLayers <= kStackWorkspaceLayers) {
    DpWorkspace<MaxLayers> ws;
    found = solve_dp(in, d, ws, &policy, score);
  } else {
#if defined(HYLRA_POLICY_CONSTANT_EVALUATED)
    // The compiler has no heap in C++17 constant evaluation; there any capacity uses a local.
    if (HYLRA_POLICY_CONSTANT_EVALUATED()) {
      DpWorkspace<MaxLayers> ws;
      found = solve_dp(in, d, ws, &policy, score);
    } else
#endif
    {
      found = solve_dp_on_heap(in, d, &policy, score);
    }
  }
  if (!found) return Status(StatusCode::kInfeasible, infeasible);
  HYLRA_RETURN_IF_ERROR(validate(policy, in.sensitive));
  *out = policy;
  return Status::success();
}

}  // namespace detail

// HyLRA threshold solver: the fewest producers such that every Reuse edge has M[source][j] >=
// theta; among those, the largest total edge similarity. Infeasible only when the allowed kinds
// leave a layer nothing to be (e.g. tolerant_kinds = {Reuse} with no producer before). O(L^2).
template <int MaxLayers>
constexpr Status solve_threshold(const PolicyInputs& in, double theta, BasicPolicy<MaxLayers>* out) {
  HYLRA_RETURN_IF_ERROR(detail::validate_inputs<MaxLayers>(in, true));
  if (theta != theta) return Status(StatusCode::kInvalidValue, "theta is NaN");
  detail::DpProblem<detail::Objective::kFewestProducersThenSum> d;
  d.theta = theta;
  detail::Score score;
  return detail::run_dp(in, d, "threshold: the allowed kinds admit no policy", out, &score);
}

// Switch budget (the HyLRA authors' tool): at most `max_producers` producers; maximise the smallest
// Reuse edge (+inf when there is none), then the total. Two exact passes: the bottleneck B by a
// max-min DP, then the largest sum with every edge >= B (no policy has a smallest edge above B, so
// this is the lexicographic optimum). O(L^2 · C).
template <int MaxLayers>
constexpr Status solve_switch_budget(const PolicyInputs& in, int max_producers, BasicPolicy<MaxLayers>* out) {
  HYLRA_RETURN_IF_ERROR(detail::validate_inputs<MaxLayers>(in, true));
  if (max_producers < 0) return Status(StatusCode::kInvalidValue, "max_producers must be non-negative");
  const char* infeasible = "switch budget: no policy has at most max_producers producers";
  detail::DpProblem<detail::Objective::kMaxMinEdge> worst_edge;
  worst_edge.max_producers = max_producers;
  detail::Score bottleneck;
  HYLRA_RETURN_IF_ERROR(detail::run_dp(in, worst_edge, infeasible, out, &bottleneck));
  detail::DpProblem<detail::Objective::kMaxSum> sum_edges;
  sum_edges.max_producers = max_producers;
  sum_edges.theta = bottleneck.primary;
  detail::Score sum;
  return detail::run_dp(in, sum_edges, infeasible, out, &sum);
}

// K anchors (Kascade-style): exactly `num_anchors` producers, placed to maximise the total
// similarity of the Reuse layers they serve. O(L^2 · K).
template <int MaxLayers>
constexpr Status solve_anchors(const PolicyInputs& in, int num_anchors, BasicPolicy<MaxLayers>* out) {
  HYLRA_RETURN_IF_ERROR(detail::validate_inputs<MaxLayers>(in, true));
  if (num_anchors < 0) return Status(StatusCode::kInvalidValue, "num_anchors must be non-negative");
  detail::DpProblem<detail::Objective::kMaxSum> d;
  d.exact_producers = num_anchors;
  detail::Score score;
  return detail::run_dp(in, d, "anchors: no policy has exactly num_anchors producers", out, &score);
}

// The costs the cost-aware solver compares: each kind's cost in integer units of 2^-40 of the
// largest (held in doubles, exact: 256 layers × 2^40 < 2^53). Summing real costs in floating point
// would let two orders of the same layers round apart by an ulp and decide which policy wins on
// noise; in units every sum is exact and costs closer than 1e-12 (relative) count as equal.
constexpr KindCosts cost_units(const KindCosts& costs) {
  double top = costs.dense;
  for (double c : {costs.dense_select, costs.select, costs.reuse}) top = c > top ? c : top;
  auto units = [top](double c) { return top > 0.0 ? static_cast<double>(static_cast<std::int64_t>(c / top * 1099511627776.0 + 0.5)) : 0.0; };
  return KindCosts{units(costs.dense), units(costs.dense_select), units(costs.select), units(costs.reuse)};
}

// Cost-aware (ours): the policy of least predicted cost sum(costs.of(kind)) (compared in
// cost_units) such that every Reuse edge has M >= theta and, if max_producers >= 0, at most that
// many producers; ties go to the larger total edge similarity. Allow Dense/DenseSelect in tolerant_kinds to let the solver keep
// layers dense where sparse attention does not pay (short contexts). O(L^2), O(L^2 · C) with a cap.
template <int MaxLayers>
constexpr Status solve_cost_aware(const PolicyInputs& in, double theta, const KindCosts& costs, int max_producers,
                                  BasicPolicy<MaxLayers>* out) {
  HYLRA_RETURN_IF_ERROR(detail::validate_inputs<MaxLayers>(in, true));
  if (theta != theta) return Status(StatusCode::kInvalidValue, "theta is NaN");
  HYLRA_RETURN_IF_ERROR(validate(costs));
  detail::DpProblem<detail::Objective::kMinCostThenSum> d;
  d.theta = theta;
  d.max_producers = max_producers < 0 ? -1 : max_producers;
  d.costs = cost_units(costs);
  detail::Score score;
  return detail::run_dp(in, d, "cost-aware: no policy meets theta within max_producers", out, &score);
}

// Jump-n, the static baseline: tolerant layer j is a producer (Select) when j % n == 0 or when no
// producer precedes it, else it reuses the most recent producer. Sensitive layers are Dense when
// allowed, else DenseSelect (which then restarts the chain). Needs Select and Reuse among the
// tolerant kinds; reads no similarity. O(L).
template <int MaxLayers>
constexpr Status jump_n(const PolicyInputs& in, int n, BasicPolicy<MaxLayers>* out) {
  HYLRA_RETURN_IF_ERROR(detail::validate_inputs<MaxLayers>(in, false));
  if (n < 1) return Status(StatusCode::kInvalidValue, "jump n must be positive");
  if (!in.tolerant_kinds.contains(LayerKind::kSelect) || !in.tolerant_kinds.contains(LayerKind::kReuse))
    return Status(StatusCode::kInvalidValue, "jump_n needs Select and Reuse among tolerant_kinds");
  if (out == nullptr) return Status(StatusCode::kNullPointer, "policy output");
  BasicPolicy<MaxLayers> policy;
  policy.num_layers = in.similarity.num_layers;
  policy.selection = in.selection;
  int last_producer = -1;
  for (int layer = 0; layer < policy.num_layers; ++layer) {
    if (in.sensitive != nullptr && in.sensitive[layer]) {
      policy.layers[layer] = in.sensitive_kinds.contains(LayerKind::kDense) ? dense() : dense_select();
    } else if (layer % n == 0 || last_producer < 0) {
      policy.layers[layer] = select();
    } else {
      policy.layers[layer] = reuse(last_producer);
    }
    if (is_producer(policy.layers[layer].kind)) last_producer = layer;
  }
  HYLRA_RETURN_IF_ERROR(validate(policy, in.sensitive));
  *out = policy;
  return Status::success();
}

}  // namespace policy
HYLRA_NAMESPACE_END
