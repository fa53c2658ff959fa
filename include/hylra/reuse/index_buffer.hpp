// IndexBuffer: where one decode step's index lists live. In a HyLRA policy (policy/policy.hpp) the
// producer layers (Select, DenseSelect) write an index list and later Reuse layers read it. The
// buffer gives every producer a slot at a fixed offset inside one allocation the engine makes once,
// so the same addresses serve every step and a captured CUDA graph replays them.
//
// A list is live from its producer to the last layer that reads it (its own layer for a Select,
// which attends over the list it just chose). Producers take slots in layer order, each the lowest
// slot whose list is dead by then; for intervals this greedy order needs the fewest slots, the
// most lists live at once (one for the usual chain of producers each followed by its readers).
//
//   IndexBuffer buffer;
//   HYLRA_RETURN_IF_ERROR(IndexBuffer::plan(policy, batch, num_kv_heads, &buffer));
//   cudaMalloc(&base, buffer.bytes());  // once
//   MutableIndexList out;  buffer.writer(layer, base, &out);  // BatchedTopK writes out.indices
//   IndexList in;          buffer.reader(layer, base, &in);   // GatherDecode reads in
//
// Host code only; O(L^2) planning for L layers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "hylra/core/status.hpp"
#include "hylra/layout/index_list.hpp"
#include "hylra/policy/policy.hpp"

HYLRA_NAMESPACE_BEGIN

class IndexBuffer {
 public:
  static constexpr int kMaxLayers = policy::kMaxLayers;

  // Assigns the slots of a valid policy for `batch_size` sequences of `num_kv_heads` KV heads.
  template <int MaxLayers>
  static Status plan(const policy::BasicPolicy<MaxLayers>& pol, int batch_size, int num_kv_heads, IndexBuffer* out) {
    static_assert(MaxLayers <= kMaxLayers, "the policy holds more layers than an IndexBuffer");
    HYLRA_RETURN_IF_ERROR(policy::validate(pol));
    if (batch_size <= 0 || num_kv_heads <= 0)
      return {StatusCode::kInvalidShape, "batch_size and num_kv_heads must be positive"};
    IndexBuffer b;
    b.num_layers_ = pol.num_layers;
    b.batch_size_ = batch_size;
    b.list_heads_ = pol.selection.scope == policy::IndexScope::kPerKvHead ? num_kv_heads : 1;
    b.k_ = pol.selection.k;
    b.block_size_ = pol.selection.block_size;
    std::array<int, kMaxLayers> live_until{};  // per slot: the last layer reading its list
    for (int i = 0; i < pol.num_layers; ++i) {
      const policy::LayerPolicy& layer = pol[i];
      b.kind_[i] = layer.kind;
      if (layer.kind == policy::LayerKind::kReuse) {
        b.slot_[i] = b.slot_[layer.source];
        continue;
      }
      if (!policy::is_producer(layer.kind)) continue;
      int last_reader = i;
      for (int j = i + 1; j < pol.num_layers; ++j)
        if (pol[j].kind == policy::LayerKind::kReuse && pol[j].source == i) last_reader = j;
      int slot = 0;
      while (slot < b.num_slots_ && live_until[slot] >= i) ++slot;
      if (slot == b.num_slots_) ++b.num_slots_;
      live_until[slot] = last_reader;
      b.slot_[i] = static_cast<std::int16_t>(slot);
    }
    *out = b;
    return Status::success();
  }

  int num_slots() const { return num_slots_; }
  int list_heads() const { return list_heads_; }  // num_kv_heads, or 1 for lists shared by all heads
  // Entries of one list: batch_size x list_heads rows of k ids.
  std::size_t list_elements() const {
    return static_cast<std::size_t>(batch_size_) * static_cast<std::size_t>(list_heads_) * static_cast<std::size_t>(k_);
  }
  std::size_t bytes() const { return static_cast<std::size_t>(num_slots_) * list_elements() * sizeof(std::int32_t); }
  // The slot a layer writes (a producer) or reads (a Reuse layer); -1 for a Dense layer.
  int slot_of(int layer) const { return layer >= 0 && layer < num_layers_ ? slot_[layer] : -1; }

  // The list a producer writes, inside the buffer at `base` (bytes() bytes).
  Status writer(int layer, std::int32_t* base, MutableIndexList* list) const {
    if (base == nullptr) return {StatusCode::kNullPointer, "index buffer base"};
    if (layer < 0 || layer >= num_layers_ || !policy::is_producer(kind_[layer]))
      return {StatusCode::kInvalidValue, "the layer writes no index list (not Select or DenseSelect)"};
    *list = MutableIndexList{base + slot_[layer] * list_elements(), nullptr, batch_size_, list_heads_, k_, block_size_};
    return Status::success();
  }

  // The list a layer attends over: a Select layer's own, a Reuse layer's source's.
  Status reader(int layer, const std::int32_t* base, IndexList* list) const {
    if (base == nullptr) return {StatusCode::kNullPointer, "index buffer base"};
    if (layer < 0 || layer >= num_layers_ ||
        (kind_[layer] != policy::LayerKind::kSelect && kind_[layer] != policy::LayerKind::kReuse))
      return {StatusCode::kInvalidValue, "the layer attends over no index list (not Select or Reuse)"};
    *list = IndexList{base + slot_[layer] * list_elements(), nullptr, batch_size_, list_heads_, k_, block_size_};
    return Status::success();
  }

 private:
  int num_layers_ = 0, num_slots_ = 0;
  int batch_size_ = 0, list_heads_ = 0, k_ = 0, block_size_ = 1;
  std::array<std::int16_t, kMaxLayers> slot_ = filled(-1);
  std::array<policy::LayerKind, kMaxLayers> kind_{};

  static constexpr std::array<std::int16_t, kMaxLayers> filled(std::int16_t value) {
    std::array<std::int16_t, kMaxLayers> a{};
    for (auto& x : a) x = value;
    return a;
  }
};

HYLRA_NAMESPACE_END
