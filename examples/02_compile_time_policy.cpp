// An engine that fixes its HyLRA policy at compile time.
//
// The model's 8-layer similarity matrix and sensitivity were profiled offline and pasted in as
// literals; the threshold solver runs in the compiler, static_asserts pin the result, and each
// layer's kind becomes a template argument, so the decode loop carries no policy lookups and a
// changed profile that breaks an assumption fails the build instead of a deployment.
#include <cstdio>
#include <utility>

#include "hylra/policy/solvers.hpp"

namespace pol = hylra::policy;

namespace {

constexpr int kLayers = 8;

// M[i][j]: overlap of layer j's top-k tokens with layer i's (i < j), from the profiler.
constexpr double kSimilarity[kLayers * kLayers] = {
    1, .30, .30, .30, .30, .30, .30, .30,  //
    0, 1, .90, .85, .50, .40, .40, .40,    //
    0, 0, 1, .95, .55, .45, .45, .45,      //
    0, 0, 0, 1, .60, .50, .50, .50,        //
    0, 0, 0, 0, 1, .90, .88, .86,          //
    0, 0, 0, 0, 0, 1, .92, .90,            //
    0, 0, 0, 0, 0, 0, 1, .93,              //
    0, 0, 0, 0, 0, 0, 0, 1,                //
};
// Layer 0 loses accuracy under top-k attention: it stays dense.
constexpr bool kSensitive[kLayers] = {true, false, false, false, false, false, false, false};

constexpr pol::BasicPolicy<kLayers> derive_policy(double theta) {
  pol::PolicyInputs in;
  in.similarity = pol::SimilarityView{kSimilarity, kLayers};
  in.sensitive = kSensitive;
  in.selection.k = 2048;
  pol::BasicPolicy<kLayers> policy;
  // A failed solve leaves num_layers = 0, which the static_asserts below reject.
  if (!pol::solve_threshold(in, theta, &policy).ok()) return {};
  return policy;
}

constexpr auto kPolicy = derive_policy(0.8);
static_assert(kPolicy.num_layers == kLayers, "the solver found a policy");
static_assert(pol::validate(kPolicy, kSensitive).ok(), "it obeys every rule");
static_assert(kPolicy.num_producers() == 2, "two index selections per decode step");
static_assert(kPolicy[0].kind == pol::LayerKind::kDense, "the sensitive layer stays dense");
static_assert(kPolicy[5].kind == pol::LayerKind::kReuse && kPolicy[5].source == 4, "layer 5 reuses layer 4");

// The engine's per-layer attention, chosen at compile time. A real engine calls hylra's dense,
// select (top-k + gather) and gather kernels here; this one only says what it would run.
template <pol::LayerKind Kind, int Source>
void attend(int layer) {
  if constexpr (Kind == pol::LayerKind::kDense) {
    std::printf("layer %d: dense attention\n", layer);
  } else if constexpr (Kind == pol::LayerKind::kDenseSelect) {
    std::printf("layer %d: dense attention, exporting top-%d indices\n", layer, kPolicy.selection.k);
  } else if constexpr (Kind == pol::LayerKind::kSelect) {
    std::printf("layer %d: select top-%d, sparse attention\n", layer, kPolicy.selection.k);
  } else {
    static_assert(Source >= 0, "a Reuse layer reads an earlier producer");
    std::printf("layer %d: sparse attention over layer %d's indices\n", layer, Source);
  }
}

template <int... Layers>
void decode_step(std::integer_sequence<int, Layers...>) {
  (attend<kPolicy[Layers].kind, kPolicy[Layers].source>(Layers), ...);
}

}  // namespace

int main() {
  decode_step(std::make_integer_sequence<int, kLayers>{});
  return 0;
}
