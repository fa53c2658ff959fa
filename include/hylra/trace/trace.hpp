// Trace: per-layer Q, K and V of one sequence, the input of profiling (similarity matrix,
// sensitivity) and of end-to-end accuracy checks. Synthetic traces (trace/synthetic.hpp) and
// traces captured from a real model (tools/real_model/) share one on-disk format:
//
//   <dir>/trace.json          {"format": "hylra-trace", "version": 1, "num_layers": L,
//                              "num_qo_heads": Hq, "num_kv_heads": Hkv, "head_dim": d,
//                              "num_tokens": N, "num_queries": M, "sm_scale": s, "source": "..."}
//   <dir>/layer_000_q.npy     [M, Hq, d]   queries of positions N-M ... N-1 (post-RoPE)
//   <dir>/layer_000_k.npy     [N, Hkv, d]  keys of positions 0 ... N-1 (post-RoPE)
//   <dir>/layer_000_v.npy     [N, Hkv, d]  values
//
// float32 on disk (f16 and f64 are read too). Query i sits at position N-M+i and attends causally
// to tokens 0 ... N-M+i.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "hylra/core/status.hpp"
#include "hylra/io/json.hpp"
#include "hylra/layout/kv_cache.hpp"
#include "hylra/io/npy.hpp"

HYLRA_NAMESPACE_BEGIN

struct TraceShape {
  int num_layers = 0;
  int num_qo_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int num_tokens = 0;   // N: keys and values per layer
  int num_queries = 0;  // M: the last M positions, whose queries are kept
  float sm_scale = 0.f;

  int group_size() const { return num_kv_heads > 0 ? num_qo_heads / num_kv_heads : 0; }
  // Position of query i; it attends to query_position(i) + 1 tokens.
  int query_position(int i) const { return num_tokens - num_queries + i; }
  std::int64_t q_elements() const { return static_cast<std::int64_t>(num_queries) * num_qo_heads * head_dim; }
  std::int64_t kv_elements() const { return static_cast<std::int64_t>(num_tokens) * num_kv_heads * head_dim; }
};

struct LayerTrace {
  std::vector<float> q;  // [num_queries, num_qo_heads, head_dim]
  std::vector<float> k;  // [num_tokens, num_kv_heads, head_dim]
  std::vector<float> v;  // [num_tokens, num_kv_heads, head_dim]
};

struct Trace {
  TraceShape shape;
  std::string source;  // where it came from: a generator's parameters, a model and text
  std::vector<LayerTrace> layers;
};

// One layer of a trace as a decode batch: sequence i is query i, and all sequences share the
// layer's K and V through one block table row repeated, with seq_lens[i] = query_position(i) + 1.
// Owns the table and lengths; the view points into them and into the trace, so it is neither
// copied nor outlives the trace.
struct TraceDecodeBatch {
  std::vector<std::int32_t> block_table;
  std::vector<std::int32_t> seq_lens;
  PagedKvCache<const float> kv;

  TraceDecodeBatch() = default;
  TraceDecodeBatch(const TraceDecodeBatch&) = delete;
  TraceDecodeBatch& operator=(const TraceDecodeBatch&) = delete;
};

inline Status validate(const TraceShape& s) {
  if (s.num_layers <= 0) return {StatusCode::kInvalidShape, "trace.num_layers must be positive"};
  if (s.num_qo_heads <= 0 || s.num_kv_heads <= 0) return {StatusCode::kInvalidShape, "trace heads must be positive"};
  if (s.num_qo_heads % s.num_kv_heads != 0)
    return {StatusCode::kInvalidShape, "trace.num_qo_heads must be a multiple of num_kv_heads"};
  if (s.head_dim <= 0) return {StatusCode::kInvalidShape, "trace.head_dim must be positive"};
  if (s.num_tokens <= 0) return {StatusCode::kInvalidShape, "trace.num_tokens must be positive"};
  if (s.num_queries <= 0 || s.num_queries > s.num_tokens)
    return {StatusCode::kInvalidShape, "trace.num_queries must be in [1, num_tokens]"};
  if (!(s.sm_scale > 0.f)) return {StatusCode::kInvalidValue, "trace.sm_scale must be positive"};
  return Status::success();
}

// Fills `batch` with the decode view of `layer` of `trace` (pages of one token, so any N works).
inline Status make_decode_batch(const Trace& trace, int layer, TraceDecodeBatch* batch) {
  const TraceShape& s = trace.shape;
  if (layer < 0 || layer >= static_cast<int>(trace.layers.size())) return {StatusCode::kInvalidValue, "trace layer out of range"};
  batch->block_table.resize(static_cast<std::size_t>(s.num_queries) * s.num_tokens);
  for (std::size_t i = 0; i < batch->block_table.size(); ++i) batch->block_table[i] = static_cast<std::int32_t>(i % s.num_tokens);
  batch->seq_lens.resize(s.num_queries);
  for (int i = 0; i < s.num_queries; ++i) batch->seq_lens[i] = s.query_position(i) + 1;
  const LayerTrace& l = trace.layers[layer];
  batch->kv = make_paged_kv_cache<const float>(KvLayout::kNHD, l.k.data(), l.v.data(), s.num_tokens, 1, s.num_kv_heads,
                                               s.head_dim, batch->block_table.data(), s.num_tokens,
                                               batch->seq_lens.data(), s.num_queries);
  return validate(batch->kv);
}

namespace detail {

inline std::string layer_file(const std::string& dir, int layer, const char* tensor) {
  char name[32];
  std::snprintf(name, sizeof name, "layer_%03d_%s.npy", layer, tensor);
  return (std::filesystem::path(dir) / name).string();
}

inline Status read_trace_tensor(const std::string& path, const std::vector<std::int64_t>& shape, std::vector<float>* out,
                                std::string* error) {
  io::NpyArray array;
  Status status = io::read_npy(path, &array);
  if (status.ok() && array.shape != shape) status = Status(StatusCode::kInvalidShape, "trace tensor shape differs from trace.json");
  if (status.ok()) status = io::to_float_vector(array, out);
  if (!status.ok() && error) *error = path + ": " + to_string(status);
  return status;
}

}  // namespace detail

// Reads a trace directory. On failure `error` (if given) names the file and, for trace.json, the
// field and position.
inline Status read_trace(const std::string& dir, Trace* trace, std::string* error = nullptr) {
  const std::string manifest_path = (std::filesystem::path(dir) / "trace.json").string();
  io::JsonValue manifest;
  std::string json_error;
  Status status = io::read_json_file(manifest_path, &manifest, &json_error);
  auto fail = [&](Status s, const std::string& what) {
    if (error) *error = manifest_path + ": " + what;
    return s;
  };
  if (!status.ok()) return fail(status, json_error);
  if (!manifest.is_object()) return fail({StatusCode::kParseError, "trace.json is not an object"}, "expected an object");
  const io::JsonValue* format = manifest.find("format");
  if (!format || !format->is_string() || format->as_string() != "hylra-trace")
    return fail({StatusCode::kParseError, "trace.json: format is not \"hylra-trace\""}, "\"format\" must be \"hylra-trace\"");

  Trace result;
  struct IntField {
    const char* name;
    int* value;
  };
  std::int64_t version = 0;
  const io::JsonValue* version_field = manifest.find("version");
  if (!version_field || !version_field->as_int(1, 1, &version))
    return fail({StatusCode::kNotSupported, "trace.json: version (supported: 1)"}, "\"version\" must be 1");
  for (IntField field : {IntField{"num_layers", &result.shape.num_layers}, IntField{"num_qo_heads", &result.shape.num_qo_heads},
                         IntField{"num_kv_heads", &result.shape.num_kv_heads}, IntField{"head_dim", &result.shape.head_dim},
                         IntField{"num_tokens", &result.shape.num_tokens}, IntField{"num_queries", &result.shape.num_queries}}) {
    const io::JsonValue* value = manifest.find(field.name);
    std::int64_t parsed = 0;
    if (!value || !value->as_int(1, 1 << 30, &parsed)) {
      const std::string where = value ? " at " + io::to_string(value->position()) : "";
      return fail({StatusCode::kParseError, "trace.json: a size field is missing or out of range"},
                  std::string("\"") + field.name + "\" must be an integer in [1, 2^30]" + where);
    }
    *field.value = static_cast<int>(parsed);
  }
  const io::JsonValue* scale = manifest.find("sm_scale");
  if (!scale || !scale->is_number())
    return fail({StatusCode::kParseError, "trace.json: sm_scale missing"}, "\"sm_scale\" must be a number");
  result.shape.sm_scale = static_cast<float>(scale->as_double());
  if (const io::JsonValue* source = manifest.find("source"); source && source->is_string()) result.source = source->as_string();
  status = validate(result.shape);
  if (!status.ok()) return fail(status, to_string(status));

  const TraceShape& s = result.shape;
  const std::vector<std::int64_t> q_shape = {s.num_queries, s.num_qo_heads, s.head_dim};
  const std::vector<std::int64_t> kv_shape = {s.num_tokens, s.num_kv_heads, s.head_dim};
  result.layers.resize(s.num_layers);
  for (int l = 0; l < s.num_layers; ++l) {
    LayerTrace& layer = result.layers[l];
    HYLRA_RETURN_IF_ERROR(detail::read_trace_tensor(detail::layer_file(dir, l, "q"), q_shape, &layer.q, error));
    HYLRA_RETURN_IF_ERROR(detail::read_trace_tensor(detail::layer_file(dir, l, "k"), kv_shape, &layer.k, error));
    HYLRA_RETURN_IF_ERROR(detail::read_trace_tensor(detail::layer_file(dir, l, "v"), kv_shape, &layer.v, error));
  }
  *trace = std::move(result);
  return Status::success();
}

// Writes `trace` into `dir` (created if missing) in the format above.
inline Status write_trace(const std::string& dir, const Trace& trace) {
  const TraceShape& s = trace.shape;
  HYLRA_RETURN_IF_ERROR(validate(s));
  if (static_cast<int>(trace.layers.size()) != s.num_layers)
    return {StatusCode::kInvalidShape, "trace.layers.size() differs from num_layers"};
  for (const LayerTrace& layer : trace.layers)
    if (static_cast<std::int64_t>(layer.q.size()) != s.q_elements() ||
        static_cast<std::int64_t>(layer.k.size()) != s.kv_elements() ||
        static_cast<std::int64_t>(layer.v.size()) != s.kv_elements())
      return {StatusCode::kInvalidShape, "trace layer tensor size differs from the shape"};

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return {StatusCode::kIoError, "trace: cannot create the directory"};
  io::JsonValue manifest = io::JsonValue::object();
  manifest.set("format", io::JsonValue::string("hylra-trace"));
  manifest.set("version", io::JsonValue::integer(1));
  manifest.set("num_layers", io::JsonValue::integer(s.num_layers));
  manifest.set("num_qo_heads", io::JsonValue::integer(s.num_qo_heads));
  manifest.set("num_kv_heads", io::JsonValue::integer(s.num_kv_heads));
  manifest.set("head_dim", io::JsonValue::integer(s.head_dim));
  manifest.set("num_tokens", io::JsonValue::integer(s.num_tokens));
  manifest.set("num_queries", io::JsonValue::integer(s.num_queries));
  manifest.set("sm_scale", io::JsonValue::number(s.sm_scale));
  manifest.set("source", io::JsonValue::string(trace.source));
  std::string text;
  HYLRA_RETURN_IF_ERROR(io::write_json(manifest, &text));
  std::FILE* file = std::fopen((std::filesystem::path(dir) / "trace.json").string().c_str(), "wb");
  if (!file) return {StatusCode::kIoError, "trace: cannot create trace.json"};
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  if (std::fclose(file) != 0 || !written) return {StatusCode::kIoError, "trace: write of trace.json failed"};

  const std::vector<std::int64_t> q_shape = {s.num_queries, s.num_qo_heads, s.head_dim};
  const std::vector<std::int64_t> kv_shape = {s.num_tokens, s.num_kv_heads, s.head_dim};
  for (int l = 0; l < s.num_layers; ++l) {
    const LayerTrace& layer = trace.layers[l];
    HYLRA_RETURN_IF_ERROR(io::write_npy(detail::layer_file(dir, l, "q"), io::NpyType::kFloat32, q_shape, layer.q.data()));
    HYLRA_RETURN_IF_ERROR(io::write_npy(detail::layer_file(dir, l, "k"), io::NpyType::kFloat32, kv_shape, layer.k.data()));
    HYLRA_RETURN_IF_ERROR(io::write_npy(detail::layer_file(dir, l, "v"), io::NpyType::kFloat32, kv_shape, layer.v.data()));
  }
  return Status::success();
}

HYLRA_NAMESPACE_END
