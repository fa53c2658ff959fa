// The policy vocabulary (DESIGN.md section 2): what one layer does in a decode step.
#pragma once

#include <cstdint>
#include <string_view>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

enum class LayerKind : std::uint8_t {
  kDense,        // full attention; the index buffer is untouched
  kDenseSelect,  // full attention that also exports its top-k indices (HyLRA "reset")
  kSelect,       // scores, picks top-k and attends sparsely; writes its indices
  kReuse,        // attends sparsely over the indices an earlier producer wrote this step
};

constexpr int kNumLayerKinds = 4;

// Producers write an index slot that later Reuse layers read.
constexpr bool is_producer(LayerKind kind) { return kind == LayerKind::kDenseSelect || kind == LayerKind::kSelect; }

constexpr bool is_valid(LayerKind kind) { return static_cast<int>(kind) < kNumLayerKinds; }

// The names used in policy files and summaries.
constexpr const char* to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::kDense: return "Dense";
    case LayerKind::kDenseSelect: return "DenseSelect";
    case LayerKind::kSelect: return "Select";
    case LayerKind::kReuse: return "Reuse";
  }
  return "unknown";
}

// Inverse of to_string; false for any other text (case-sensitive).
constexpr bool parse_layer_kind(std::string_view name, LayerKind* kind) {
  for (int k = 0; k < kNumLayerKinds; ++k) {
    if (name == to_string(static_cast<LayerKind>(k))) {
      *kind = static_cast<LayerKind>(k);
      return true;
    }
  }
  return false;
}

// A set of layer kinds: which kinds a solver may give a sensitive or a tolerant layer.
class KindSet {
 public:
  constexpr KindSet() = default;
  static constexpr KindSet all() { return KindSet((1u << kNumLayerKinds) - 1); }

  constexpr KindSet with(LayerKind kind) const { return KindSet(bits_ | bit(kind)); }
  constexpr bool contains(LayerKind kind) const { return (bits_ & bit(kind)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool contains_all(KindSet other) const { return (other.bits_ & ~bits_) == 0; }
  constexpr bool operator==(KindSet other) const { return bits_ == other.bits_; }
  constexpr bool operator!=(KindSet other) const { return bits_ != other.bits_; }

 private:
  constexpr explicit KindSet(unsigned bits) : bits_(bits) {}
  static constexpr unsigned bit(LayerKind kind) { return 1u << static_cast<unsigned>(kind); }
  unsigned bits_ = 0;
};

}  // namespace policy
HYLRA_NAMESPACE_END
