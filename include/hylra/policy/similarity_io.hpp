// Similarity files: the solvers' inputs as the profiler writes them and the CLI reads them.
//
// JSON (schema in tools/hylra-policy/README.md):
//   {"format": "hylra.similarity", "version": 1, "num_layers": L,
//    "similarity": [[L numbers in [0, 1]] × L rows],
//    "sensitive": [L booleans] (optional), "rnmse": [L numbers >= 0] (optional),
//    "provenance": {...} (optional, carried through unread)}
// .npy: an L×L float32/float64 similarity matrix, or int32/int64 top-k index sets
// [L, rows, k] to build it from; a length-L uint8/int32/int64 mask (nonzero = sensitive) or
// float32/float64 RNMSE vector.
#pragma once

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "hylra/io/json.hpp"
#include "hylra/io/npy.hpp"
#include "hylra/policy/policy.hpp"
#include "hylra/policy/similarity.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

constexpr const char* kSimilarityFormat = "hylra.similarity";
constexpr int kSimilarityFormatVersion = 1;

struct SimilarityData {
  int num_layers = 0;
  std::vector<double> matrix;   // [num_layers][num_layers], row-major
  std::vector<char> sensitive;  // [num_layers] 0/1, or empty when not given
  std::vector<double> rnmse;    // [num_layers], or empty when not given
  io::JsonValue provenance;     // null when not given

  SimilarityView view() const { return SimilarityView{matrix.data(), num_layers}; }
  // The mask for PolicyInputs::sensitive (null when none was given).
  const bool* sensitive_mask() const { return sensitive.empty() ? nullptr : reinterpret_cast<const bool*>(sensitive.data()); }
};

// Reads a similarity document; errors name the field path and position (see policy_json.hpp).
inline Status similarity_from_json(const io::JsonValue& doc, SimilarityData* out, std::string* error) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "similarity output");
  const std::string root = "$";
  if (!doc.is_object()) return io::json_field_error(doc, root, "expected a similarity object", error, "json field has the wrong type");
  HYLRA_RETURN_IF_ERROR(io::json_only_keys(doc, root, {"format", "version", "num_layers", "similarity", "sensitive", "rnmse", "provenance"}, error));
  const io::JsonValue* v = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "format", io::JsonKind::kString, &v, error));
  if (v->as_string() != kSimilarityFormat)
    return io::json_field_error(*v, "$.format", "expected \"" + std::string(kSimilarityFormat) + "\", got \"" + v->as_string() + "\"", error,
                                "similarity json: not a similarity file");
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "version", io::JsonKind::kNumber, &v, error));
  std::int64_t n = 0;
  if (!v->as_int(kSimilarityFormatVersion, kSimilarityFormatVersion, &n)) {
    io::json_field_error(*v, "$.version", "this reader supports version " + std::to_string(kSimilarityFormatVersion), error);
    return Status(StatusCode::kNotSupported, "similarity json: format version");
  }
  SimilarityData data;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "num_layers", io::JsonKind::kNumber, &v, error));
  HYLRA_RETURN_IF_ERROR(io::json_integer(*v, "$.num_layers", 1, kMaxLayers, &n, error));
  data.num_layers = static_cast<int>(n);
  const std::size_t L = static_cast<std::size_t>(n);

  const io::JsonValue* rows = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "similarity", io::JsonKind::kArray, &rows, error));
  if (rows->size() != L)
    return io::json_field_error(*rows, "$.similarity", "has " + std::to_string(rows->size()) + " rows, num_layers is " + std::to_string(L), error,
                                "similarity json: shape disagrees with num_layers");
  data.matrix.resize(L * L);
  for (std::size_t i = 0; i < L; ++i) {
    const io::JsonValue& row = rows->items()[i];
    const std::string path = "$.similarity[" + std::to_string(i) + "]";
    if (!row.is_array() || row.size() != L)
      return io::json_field_error(row, path, "expected an array of " + std::to_string(L) + " numbers", error, "similarity json: shape disagrees with num_layers");
    for (std::size_t j = 0; j < L; ++j)
      HYLRA_RETURN_IF_ERROR(io::json_number(row.items()[j], path + "[" + std::to_string(j) + "]", 0.0, 1.0, &data.matrix[i * L + j], error));
  }

  auto per_layer = [&](const char* key, const io::JsonValue** arr) -> Status {
    HYLRA_RETURN_IF_ERROR(io::json_optional(doc, root, key, io::JsonKind::kArray, arr, error));
    if (*arr != nullptr && (*arr)->size() != L)
      return io::json_field_error(**arr, std::string("$.") + key, "has " + std::to_string((*arr)->size()) + " entries, num_layers is " + std::to_string(L),
                                  error, "similarity json: shape disagrees with num_layers");
    return Status::success();
  };
  const io::JsonValue* arr = nullptr;
  HYLRA_RETURN_IF_ERROR(per_layer("sensitive", &arr));
  if (arr != nullptr) {
    data.sensitive.resize(L);
    for (std::size_t i = 0; i < L; ++i) {
      const io::JsonValue& b = arr->items()[i];
      if (!b.is_bool())
        return io::json_field_error(b, "$.sensitive[" + std::to_string(i) + "]", std::string("expected a boolean, got ") + io::to_string(b.kind()), error,
                                    "json field has the wrong type");
      data.sensitive[i] = b.as_bool();
    }
  }
  HYLRA_RETURN_IF_ERROR(per_layer("rnmse", &arr));
  if (arr != nullptr) {
    data.rnmse.resize(L);
    for (std::size_t i = 0; i < L; ++i)
      HYLRA_RETURN_IF_ERROR(io::json_number(arr->items()[i], "$.rnmse[" + std::to_string(i) + "]", 0.0, std::numeric_limits<double>::max(), &data.rnmse[i], error));
  }
  HYLRA_RETURN_IF_ERROR(io::json_optional(doc, root, "provenance", io::JsonKind::kObject, &v, error));
  if (v != nullptr) data.provenance = *v;
  *out = std::move(data);
  return Status::success();
}

inline Status similarity_to_json(const SimilarityData& data, io::JsonValue* doc) {
  if (doc == nullptr) return Status(StatusCode::kNullPointer, "similarity json output");
  const std::size_t L = static_cast<std::size_t>(data.num_layers);
  if (data.num_layers < 1 || data.num_layers > kMaxLayers || data.matrix.size() != L * L || (!data.sensitive.empty() && data.sensitive.size() != L) ||
      (!data.rnmse.empty() && data.rnmse.size() != L))
    return Status(StatusCode::kInvalidShape, "similarity data: sizes disagree with num_layers");
  io::JsonValue d = io::JsonValue::object();
  d.set("format", io::JsonValue::string(kSimilarityFormat));
  d.set("version", io::JsonValue::integer(kSimilarityFormatVersion));
  d.set("num_layers", io::JsonValue::integer(data.num_layers));
  io::JsonValue rows = io::JsonValue::array();
  for (std::size_t i = 0; i < L; ++i) {
    io::JsonValue row = io::JsonValue::array();
    for (std::size_t j = 0; j < L; ++j) row.push_back(io::JsonValue::number(data.matrix[i * L + j]));
    rows.push_back(std::move(row));
  }
  d.set("similarity", std::move(rows));
  if (!data.sensitive.empty()) {
    io::JsonValue s = io::JsonValue::array();
    for (char b : data.sensitive) s.push_back(io::JsonValue::boolean(b != 0));
    d.set("sensitive", std::move(s));
  }
  if (!data.rnmse.empty()) {
    io::JsonValue r = io::JsonValue::array();
    for (double x : data.rnmse) r.push_back(io::JsonValue::number(x));
    d.set("rnmse", std::move(r));
  }
  if (data.provenance.is_object()) d.set("provenance", data.provenance);
  *doc = std::move(d);
  return Status::success();
}

namespace detail {

inline bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// The elements of a float32/float64 array as doubles (exact for both).
inline bool npy_as_doubles(const io::NpyArray& a, std::vector<double>* out) {
  const std::size_t n = static_cast<std::size_t>(a.num_elements());
  out->resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (a.type == io::NpyType::kFloat64) {
      std::memcpy(&(*out)[i], a.bytes.data() + 8 * i, 8);
    } else if (a.type == io::NpyType::kFloat32) {
      float f;
      std::memcpy(&f, a.bytes.data() + 4 * i, 4);
      (*out)[i] = f;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace detail

// Reads a similarity matrix: a .json similarity file (with its optional sensitivity), or an L×L
// float32/float64 .npy. Values are checked as in the JSON schema.
inline Status read_similarity_file(const std::string& path, SimilarityData* out, std::string* error) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "similarity output");
  if (!detail::ends_with(path, ".npy")) {
    io::JsonValue doc;
    HYLRA_RETURN_IF_ERROR(io::read_json_file(path, &doc, error));
    const Status s = similarity_from_json(doc, out, error);
    if (!s.ok() && error) *error = path + ": " + *error;
    return s;
  }
  io::NpyArray a;
  const Status s = io::read_npy(path, &a);
  if (!s.ok()) {
    if (error) *error = path + ": " + to_string(s);
    return s;
  }
  auto fail = [&](const std::string& what, StatusCode code, const char* detail) {
    if (error) *error = path + ": " + what;
    return Status(code, detail);
  };
  if (a.shape.size() != 2 || a.shape[0] != a.shape[1] || a.shape[0] < 1 || a.shape[0] > kMaxLayers)
    return fail("expected an L x L matrix with 1 <= L <= " + std::to_string(kMaxLayers), StatusCode::kInvalidShape, "similarity npy: shape");
  SimilarityData data;
  data.num_layers = static_cast<int>(a.shape[0]);
  if (!detail::npy_as_doubles(a, &data.matrix)) return fail("expected float32 or float64 elements", StatusCode::kNotSupported, "similarity npy: dtype");
  for (std::size_t i = 0; i < data.matrix.size(); ++i)
    if (!(data.matrix[i] >= 0.0 && data.matrix[i] <= 1.0))
      return fail("element [" + std::to_string(i / data.num_layers) + "][" + std::to_string(i % data.num_layers) + "] is not in [0, 1]", StatusCode::kInvalidValue,
                  "similarity npy: value out of [0, 1]");
  *out = std::move(data);
  return Status::success();
}

// Builds the similarity from per-layer top-k index sets in .npy: an int32 or int64 array
// [num_layers, rows, k] (a row is one decode step of one head; -1 pads), through
// build_similarity(). Ids must fit int32.
inline Status read_topk_similarity_npy(const std::string& path, SimilarityData* out, std::string* error) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "similarity output");
  io::NpyArray a;
  const Status s = io::read_npy(path, &a);
  auto fail = [&](const std::string& what, StatusCode code, const char* detail) {
    if (error) *error = path + ": " + what;
    return Status(code, detail);
  };
  if (!s.ok()) return fail(to_string(s), s.code(), s.detail());
  if (a.shape.size() != 3 || a.shape[0] < 1 || a.shape[0] > kMaxLayers || a.shape[1] < 1 || a.shape[2] < 1)
    return fail("expected top-k indices of shape [num_layers <= " + std::to_string(kMaxLayers) + ", rows, k], all positive", StatusCode::kInvalidShape,
                "top-k npy: shape");
  if (a.type != io::NpyType::kInt32 && a.type != io::NpyType::kInt64) return fail("expected int32 or int64 indices", StatusCode::kNotSupported, "top-k npy: dtype");
  // Non-empty and fully present in memory, so the product of the extents cannot overflow.
  const std::size_t count = a.bytes.size() / static_cast<std::size_t>(io::npy_item_size(a.type));
  std::vector<std::int32_t> ids(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::int64_t id = 0;
    if (a.type == io::NpyType::kInt32) {
      std::int32_t v;
      std::memcpy(&v, a.bytes.data() + 4 * i, 4);
      id = v;
    } else {
      std::memcpy(&id, a.bytes.data() + 8 * i, 8);
    }
    if (id < -1 || id > std::numeric_limits<std::int32_t>::max())
      return fail("index " + std::to_string(id) + " at flat position " + std::to_string(i) + " is below -1 or above int32", StatusCode::kInvalidValue,
                  "top-k npy: index out of range");
    ids[i] = static_cast<std::int32_t>(id);
  }
  if (a.shape[1] > std::numeric_limits<int>::max() || a.shape[2] > std::numeric_limits<int>::max())
    return fail("rows and k must fit int", StatusCode::kInvalidShape, "top-k npy: shape");
  SimilarityData data;
  data.num_layers = static_cast<int>(a.shape[0]);
  HYLRA_RETURN_IF_ERROR(build_similarity(ids.data(), data.num_layers, static_cast<int>(a.shape[1]), static_cast<int>(a.shape[2]), &data.matrix));
  *out = std::move(data);
  return Status::success();
}

// Reads a per-layer vector of `num_layers` entries from .npy: integer arrays as a sensitivity mask
// into `mask` (nonzero = sensitive), float arrays as RNMSE values into `rnmse` (each >= 0).
inline Status read_layer_vector_npy(const std::string& path, int num_layers, std::vector<char>* mask, std::vector<double>* rnmse, std::string* error) {
  io::NpyArray a;
  const Status s = io::read_npy(path, &a);
  auto fail = [&](const std::string& what, StatusCode code, const char* detail) {
    if (error) *error = path + ": " + what;
    return Status(code, detail);
  };
  if (!s.ok()) return fail(to_string(s), s.code(), s.detail());
  if (a.shape.size() != 1 || a.shape[0] != num_layers)
    return fail("expected a vector of " + std::to_string(num_layers) + " entries", StatusCode::kInvalidShape, "layer vector npy: shape");
  const std::size_t L = static_cast<std::size_t>(num_layers);
  if (a.type == io::NpyType::kUInt8 || a.type == io::NpyType::kInt32 || a.type == io::NpyType::kInt64) {
    const std::size_t item = static_cast<std::size_t>(io::npy_item_size(a.type));
    mask->assign(L, 0);
    for (std::size_t i = 0; i < L; ++i)
      for (std::size_t b = 0; b < item; ++b) (*mask)[i] = (*mask)[i] || a.bytes[i * item + b] != 0;
    rnmse->clear();
    return Status::success();
  }
  if (!detail::npy_as_doubles(a, rnmse)) return fail("expected an integer mask or float RNMSE values", StatusCode::kNotSupported, "layer vector npy: dtype");
  for (std::size_t i = 0; i < L; ++i)
    if (!((*rnmse)[i] >= 0.0)) return fail("entry " + std::to_string(i) + " is negative or NaN", StatusCode::kInvalidValue, "layer vector npy: rnmse out of range");
  mask->clear();
  return Status::success();
}

}  // namespace policy
HYLRA_NAMESPACE_END
