// Policy: the per-layer plan of a HyLRA model (which layers stay dense, which select top-k indices,
// which reuse an earlier layer's), the selection parameters, and the rules that make it valid.
//
// Fixed capacity and no heap, so a policy can be built, checked and compared in constant
// expressions; Policy (256 layers) is the runtime type, small capacities suit compile-time use.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "hylra/core/status.hpp"
#include "hylra/policy/layer_kind.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

constexpr int kMaxLayers = 256;

enum class IndexScope : std::uint8_t {
  kPerKvHead,          // one index list per KV head: [batch, num_kv_heads, k]
  kSharedAcrossHeads,  // one list serves every head: [batch, 1, k]
};

constexpr const char* to_string(IndexScope scope) {
  return scope == IndexScope::kPerKvHead ? "per_kv_head" : scope == IndexScope::kSharedAcrossHeads ? "shared" : "unknown";
}

// How Select and DenseSelect layers choose indices (the IndexList contract of layout/index_list.hpp).
struct SelectionParams {
  int k = 0;           // ids kept per list: tokens, or blocks when block_size > 1
  int block_size = 1;  // tokens per id; kernels support 1, 16, 32, 64, 128 (they report the rest)
  IndexScope scope = IndexScope::kPerKvHead;

  constexpr bool operator==(const SelectionParams& o) const { return k == o.k && block_size == o.block_size && scope == o.scope; }
};

struct LayerPolicy {
  LayerKind kind = LayerKind::kDense;
  int source = -1;  // the producer a Reuse layer reads; -1 for every other kind

  constexpr bool operator==(const LayerPolicy& o) const { return kind == o.kind && source == o.source; }
  constexpr bool operator!=(const LayerPolicy& o) const { return !(*this == o); }
};

constexpr LayerPolicy dense() { return {LayerKind::kDense, -1}; }
constexpr LayerPolicy dense_select() { return {LayerKind::kDenseSelect, -1}; }
constexpr LayerPolicy select() { return {LayerKind::kSelect, -1}; }
constexpr LayerPolicy reuse(int source) { return {LayerKind::kReuse, source}; }

template <int MaxLayers = kMaxLayers>
struct BasicPolicy {
  static_assert(MaxLayers >= 1, "a policy holds at least one layer");
  static constexpr int kCapacity = MaxLayers;

  int num_layers = 0;
  SelectionParams selection{};
  std::array<LayerPolicy, MaxLayers> layers{};

  constexpr const LayerPolicy& operator[](int layer) const { return layers[layer]; }
  constexpr LayerPolicy& operator[](int layer) { return layers[layer]; }

  constexpr int count(LayerKind kind) const {
    int n = 0;
    for (int i = 0; i < num_layers; ++i) n += layers[i].kind == kind;
    return n;
  }
  constexpr int num_producers() const { return count(LayerKind::kDenseSelect) + count(LayerKind::kSelect); }

  // Same layers and selection; entries past num_layers are ignored.
  constexpr bool operator==(const BasicPolicy& o) const {
    if (num_layers != o.num_layers || !(selection == o.selection)) return false;
    for (int i = 0; i < num_layers; ++i)
      if (layers[i] != o.layers[i]) return false;
    return true;
  }
  constexpr bool operator!=(const BasicPolicy& o) const { return !(*this == o); }
};

using Policy = BasicPolicy<>;

// Checks the rules of DESIGN.md section 2 and returns the first broken one, with `*bad_layer` (if
// given) set to the offending layer, or -1 for a policy-wide field:
//   kInvalidShape   num_layers outside [1, capacity]
//   kInvalidValue   selection.k or selection.block_size not positive, unknown scope
//   kInvalidPolicy  unknown kind; a source on a non-Reuse layer; the first non-dense layer is not a
//                   producer; a Reuse source out of range, not earlier, or not a producer; a
//                   sensitive layer (sensitive[i], if the array is given) that is not Dense or
//                   DenseSelect.
// A Reuse layer may read any earlier producer; Dense layers in between do not matter. O(L).
template <int MaxLayers>
constexpr Status validate(const BasicPolicy<MaxLayers>& policy, const bool* sensitive = nullptr, int* bad_layer = nullptr) {
  auto fail = [&](int layer, StatusCode code, const char* what) {
    if (bad_layer != nullptr) *bad_layer = layer;
    return Status(code, what);
  };
  if (policy.num_layers < 1 || policy.num_layers > MaxLayers)
    return fail(-1, StatusCode::kInvalidShape, "num_layers must be in [1, policy capacity]");
  if (policy.selection.k <= 0) return fail(-1, StatusCode::kInvalidValue, "selection.k must be positive");
  if (policy.selection.block_size <= 0) return fail(-1, StatusCode::kInvalidValue, "selection.block_size must be positive");
  if (policy.selection.scope != IndexScope::kPerKvHead && policy.selection.scope != IndexScope::kSharedAcrossHeads)
    return fail(-1, StatusCode::kInvalidValue, "selection.scope is unknown");
  bool seen_producer = false;
  for (int i = 0; i < policy.num_layers; ++i) {
    const LayerPolicy& layer = policy.layers[i];
    if (!is_valid(layer.kind)) return fail(i, StatusCode::kInvalidPolicy, "unknown layer kind");
    if (layer.kind != LayerKind::kReuse && layer.source != -1)
      return fail(i, StatusCode::kInvalidPolicy, "only a Reuse layer names a source");
    if (layer.kind == LayerKind::kReuse) {
      if (layer.source < 0 || layer.source >= policy.num_layers)
        return fail(i, StatusCode::kInvalidPolicy, "reuse source is out of range");
      if (layer.source >= i) return fail(i, StatusCode::kInvalidPolicy, "reuse source is not an earlier layer");
      if (!seen_producer) return fail(i, StatusCode::kInvalidPolicy, "the first non-dense layer is not a producer");
      if (!is_producer(policy.layers[layer.source].kind))
        return fail(i, StatusCode::kInvalidPolicy, "reuse source is not a producer (Select or DenseSelect)");
    }
    if (sensitive != nullptr && sensitive[i] && layer.kind != LayerKind::kDense && layer.kind != LayerKind::kDenseSelect)
      return fail(i, StatusCode::kInvalidPolicy, "a sensitive layer is not Dense or DenseSelect");
    seen_producer = seen_producer || is_producer(layer.kind);
  }
  if (bad_layer != nullptr) *bad_layer = -1;
  return Status::success();
}

// The one-letter-per-layer index-sharing pattern engines use: 'C' computes indices (Select or
// DenseSelect), 'S' shares the indices of the most recent 'C' before it, 'D' is dense and touches
// no indices. The pattern cannot say "reuse an older producer", so such a policy gives
// kNotSupported; an invalid policy gives validate()'s status.
template <int MaxLayers>
Status to_share_pattern(const BasicPolicy<MaxLayers>& policy, std::string* pattern) {
  HYLRA_RETURN_IF_ERROR(validate(policy));
  pattern->clear();
  int last_producer = -1;
  for (int i = 0; i < policy.num_layers; ++i) {
    const LayerPolicy& layer = policy.layers[i];
    if (layer.kind == LayerKind::kReuse && layer.source != last_producer)
      return Status(StatusCode::kNotSupported, "share pattern: a Reuse layer reads an older producer than the most recent");
    if (is_producer(layer.kind)) last_producer = i;
    *pattern += layer.kind == LayerKind::kDense ? 'D' : is_producer(layer.kind) ? 'C' : 'S';
  }
  return Status::success();
}

}  // namespace policy
HYLRA_NAMESPACE_END
