// The solvers' inputs: the layer-to-layer similarity matrix M and the per-layer sensitivity mask,
// and how to build them on the host from per-layer top-k index sets and output errors.
//
// M[i][j] (i < j) is the overlap of layer j's top-k set with layer i's, |S_i ∩ S_j| / k, averaged
// over the profiled rows (decode steps × heads); it is how well layer j does when it reuses the
// indices layer i selected. Entries with i >= j are never read.
#pragma once

#include <cstdint>
#include <vector>

#include "hylra/core/status.hpp"
#include "hylra/reference/metrics.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

// A read-only view of a row-major L×L matrix with row stride `stride` (>= num_layers; 0 means
// num_layers). Usable in constant expressions when `data` points to a constexpr array.
struct SimilarityView {
  const double* data = nullptr;
  int num_layers = 0;
  int stride = 0;

  constexpr int row_stride() const { return stride == 0 ? num_layers : stride; }
  constexpr double operator()(int src, int dst) const { return data[static_cast<std::int64_t>(src) * row_stride() + dst]; }
};

// Checks shape and the entries solvers read: every M[i][j] with i < j must be a number in [0, 1]
// (NaN fails). `max_layers` is the capacity of the policy the caller fills. O(L^2).
constexpr Status validate(const SimilarityView& m, int max_layers) {
  if (m.num_layers < 1 || m.num_layers > max_layers) return Status(StatusCode::kInvalidShape, "similarity: num_layers must be in [1, policy capacity]");
  if (m.data == nullptr) return Status(StatusCode::kNullPointer, "similarity");
  if (m.stride != 0 && m.stride < m.num_layers) return Status(StatusCode::kInvalidStride, "similarity: stride is smaller than num_layers");
  for (int i = 0; i < m.num_layers; ++i)
    for (int j = i + 1; j < m.num_layers; ++j)
      if (!(m(i, j) >= 0.0 && m(i, j) <= 1.0)) return Status(StatusCode::kInvalidValue, "similarity: entries above the diagonal must be in [0, 1]");
  return Status::success();
}

// Builds M from per-layer top-k sets: `indices` holds, for each layer, `num_rows` lists of `k` ids
// ([num_layers][num_rows][k], -1 padding allowed; a row is one decode step of one head). M[i][j]
// is the mean over rows of reference::topk_overlap(layer i's row, layer j's row). The result is a
// dense L×L matrix with 1 on the diagonal and 0 below it. O(L^2 · rows · k).
inline Status build_similarity(const std::int32_t* indices, int num_layers, int num_rows, int k, std::vector<double>* m) {
  if (indices == nullptr || m == nullptr) return Status(StatusCode::kNullPointer, "similarity: indices");
  if (num_layers < 1 || num_rows < 1) return Status(StatusCode::kInvalidShape, "similarity: num_layers and num_rows must be positive");
  if (k < 1) return Status(StatusCode::kInvalidValue, "similarity: k must be positive");
  const std::int64_t layer_stride = static_cast<std::int64_t>(num_rows) * k;
  m->assign(static_cast<std::size_t>(num_layers) * num_layers, 0.0);
  for (int i = 0; i < num_layers; ++i) {
    (*m)[static_cast<std::size_t>(i) * num_layers + i] = 1.0;
    for (int j = i + 1; j < num_layers; ++j) {
      double sum = 0.0;
      for (int r = 0; r < num_rows; ++r)
        sum += reference::topk_overlap(indices + i * layer_stride + static_cast<std::int64_t>(r) * k,
                                       indices + j * layer_stride + static_cast<std::int64_t>(r) * k, k);
      (*m)[static_cast<std::size_t>(i) * num_layers + j] = sum / num_rows;
    }
  }
  return Status::success();
}

// A layer is sensitive when its sparse-attention output error (RNMSE against dense, from
// reference::rnmse) exceeds `max_rnmse`; NaN errors count as sensitive. O(L).
inline Status sensitivity_from_rnmse(const double* rnmse, int num_layers, double max_rnmse, bool* sensitive) {
  if (rnmse == nullptr || sensitive == nullptr) return Status(StatusCode::kNullPointer, "sensitivity: rnmse");
  if (num_layers < 1) return Status(StatusCode::kInvalidShape, "sensitivity: num_layers must be positive");
  if (!(max_rnmse >= 0.0)) return Status(StatusCode::kInvalidValue, "sensitivity: max_rnmse must be a non-negative number");
  for (int i = 0; i < num_layers; ++i) sensitive[i] = !(rnmse[i] <= max_rnmse);
  return Status::success();
}

}  // namespace policy
HYLRA_NAMESPACE_END
