// Policy files: the versioned JSON form of a Policy (schema in tools/hylra-policy/README.md).
//
//   {"format": "hylra.policy", "version": 1, "num_layers": 4,
//    "selection": {"k": 2048, "block_size": 1, "scope": "per_kv_head"},
//    "layers": [{"kind": "Dense"}, {"kind": "Select"}, {"kind": "Reuse", "source": 1}, ...],
//    "pattern": "DCS...", "provenance": {...}}
//
// "pattern" (the share pattern) is written when the policy has one and checked against the layers
// when read; "provenance" is any object (which solver, which inputs) carried through unread.
// Reading is strict: unknown fields, a wrong type, an out-of-range value or a policy that breaks
// a rule is an error whose message names the field path and its line and column.
#pragma once

#include <cstdio>
#include <string>

#include "hylra/io/json.hpp"
#include "hylra/policy/policy.hpp"

HYLRA_NAMESPACE_BEGIN
namespace policy {

constexpr const char* kPolicyFormat = "hylra.policy";
constexpr int kPolicyFormatVersion = 1;
// Bounds of the selection fields a file may hold (far above any model; they keep ids in int32).
constexpr int kMaxSelectionK = 1 << 24;
constexpr int kMaxBlockSize = 1 << 16;

// The JSON document of a valid policy; `provenance`, if given, must be an object.
template <int MaxLayers>
Status policy_to_json(const BasicPolicy<MaxLayers>& policy, io::JsonValue* doc, const io::JsonValue* provenance = nullptr) {
  if (doc == nullptr) return Status(StatusCode::kNullPointer, "policy json output");
  HYLRA_RETURN_IF_ERROR(validate(policy));
  if (provenance != nullptr && !provenance->is_object()) return Status(StatusCode::kInvalidValue, "policy json: provenance must be an object");
  io::JsonValue d = io::JsonValue::object();
  d.set("format", io::JsonValue::string(kPolicyFormat));
  d.set("version", io::JsonValue::integer(kPolicyFormatVersion));
  d.set("num_layers", io::JsonValue::integer(policy.num_layers));
  io::JsonValue selection = io::JsonValue::object();
  selection.set("k", io::JsonValue::integer(policy.selection.k));
  selection.set("block_size", io::JsonValue::integer(policy.selection.block_size));
  selection.set("scope", io::JsonValue::string(to_string(policy.selection.scope)));
  d.set("selection", std::move(selection));
  io::JsonValue layers = io::JsonValue::array();
  for (int i = 0; i < policy.num_layers; ++i) {
    io::JsonValue layer = io::JsonValue::object();
    layer.set("kind", io::JsonValue::string(to_string(policy.layers[i].kind)));
    if (policy.layers[i].kind == LayerKind::kReuse) layer.set("source", io::JsonValue::integer(policy.layers[i].source));
    layers.push_back(std::move(layer));
  }
  d.set("layers", std::move(layers));
  std::string pattern;
  if (to_share_pattern(policy, &pattern).ok()) d.set("pattern", io::JsonValue::string(pattern));
  if (provenance != nullptr) d.set("provenance", *provenance);
  *doc = std::move(d);
  return Status::success();
}

// Reads a policy document. On failure returns kParseError (malformed or out of range), kNotSupported
// (another format or version) or validate()'s kInvalidPolicy, with *error naming path and position.
// `provenance`, if given, receives the provenance object (null when absent).
template <int MaxLayers>
Status policy_from_json(const io::JsonValue& doc, BasicPolicy<MaxLayers>* out, std::string* error, io::JsonValue* provenance = nullptr) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "policy output");
  const std::string root = "$";
  if (!doc.is_object()) return io::json_field_error(doc, root, "expected a policy object", error, "json field has the wrong type");
  HYLRA_RETURN_IF_ERROR(io::json_only_keys(doc, root, {"format", "version", "num_layers", "selection", "layers", "pattern", "provenance"}, error));
  const io::JsonValue* v = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "format", io::JsonKind::kString, &v, error));
  if (v->as_string() != kPolicyFormat)
    return io::json_field_error(*v, "$.format", "expected \"" + std::string(kPolicyFormat) + "\", got \"" + v->as_string() + "\"", error, "policy json: not a policy file");
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "version", io::JsonKind::kNumber, &v, error));
  std::int64_t version = 0;
  if (!v->as_int(kPolicyFormatVersion, kPolicyFormatVersion, &version)) {
    io::json_field_error(*v, "$.version", "this reader supports version " + std::to_string(kPolicyFormatVersion), error);
    return Status(StatusCode::kNotSupported, "policy json: format version");
  }

  BasicPolicy<MaxLayers> policy;
  std::int64_t n = 0;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "num_layers", io::JsonKind::kNumber, &v, error));
  HYLRA_RETURN_IF_ERROR(io::json_integer(*v, "$.num_layers", 1, MaxLayers, &n, error));
  policy.num_layers = static_cast<int>(n);

  const io::JsonValue* sel = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "selection", io::JsonKind::kObject, &sel, error));
  HYLRA_RETURN_IF_ERROR(io::json_only_keys(*sel, "$.selection", {"k", "block_size", "scope"}, error));
  HYLRA_RETURN_IF_ERROR(io::json_require(*sel, "$.selection", "k", io::JsonKind::kNumber, &v, error));
  HYLRA_RETURN_IF_ERROR(io::json_integer(*v, "$.selection.k", 1, kMaxSelectionK, &n, error));
  policy.selection.k = static_cast<int>(n);
  HYLRA_RETURN_IF_ERROR(io::json_optional(*sel, "$.selection", "block_size", io::JsonKind::kNumber, &v, error));
  if (v != nullptr) {
    HYLRA_RETURN_IF_ERROR(io::json_integer(*v, "$.selection.block_size", 1, kMaxBlockSize, &n, error));
    policy.selection.block_size = static_cast<int>(n);
  }
  HYLRA_RETURN_IF_ERROR(io::json_optional(*sel, "$.selection", "scope", io::JsonKind::kString, &v, error));
  if (v != nullptr) {
    if (v->as_string() == to_string(IndexScope::kPerKvHead)) policy.selection.scope = IndexScope::kPerKvHead;
    else if (v->as_string() == to_string(IndexScope::kSharedAcrossHeads)) policy.selection.scope = IndexScope::kSharedAcrossHeads;
    else return io::json_field_error(*v, "$.selection.scope", "expected \"per_kv_head\" or \"shared\", got \"" + v->as_string() + "\"", error, "json field is out of range");
  }

  const io::JsonValue* layers = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_require(doc, root, "layers", io::JsonKind::kArray, &layers, error));
  if (layers->size() != static_cast<std::size_t>(policy.num_layers))
    return io::json_field_error(*layers, "$.layers", "has " + std::to_string(layers->size()) + " entries, num_layers is " + std::to_string(policy.num_layers),
                                error, "policy json: layers and num_layers disagree");
  for (int i = 0; i < policy.num_layers; ++i) {
    const io::JsonValue& layer = layers->items()[i];
    const std::string path = "$.layers[" + std::to_string(i) + "]";
    if (!layer.is_object()) return io::json_field_error(layer, path, std::string("expected an object, got ") + io::to_string(layer.kind()), error, "json field has the wrong type");
    HYLRA_RETURN_IF_ERROR(io::json_only_keys(layer, path, {"kind", "source"}, error));
    HYLRA_RETURN_IF_ERROR(io::json_require(layer, path, "kind", io::JsonKind::kString, &v, error));
    if (!parse_layer_kind(v->as_string(), &policy.layers[i].kind))
      return io::json_field_error(*v, path + ".kind", "unknown kind \"" + v->as_string() + "\" (Dense, DenseSelect, Select, Reuse)", error, "json field is out of range");
    HYLRA_RETURN_IF_ERROR(io::json_optional(layer, path, "source", io::JsonKind::kNumber, &v, error));
    if (policy.layers[i].kind == LayerKind::kReuse && v == nullptr)
      return io::json_field_error(layer, path, "a Reuse layer needs \"source\"", error, "json field is missing");
    if (policy.layers[i].kind != LayerKind::kReuse && v != nullptr)
      return io::json_field_error(*v, path + ".source", "only a Reuse layer has a source", error, "policy json: source on a non-Reuse layer");
    if (v != nullptr) {
      HYLRA_RETURN_IF_ERROR(io::json_integer(*v, path + ".source", 0, policy.num_layers - 1, &n, error));
      policy.layers[i].source = static_cast<int>(n);
    }
  }
  int bad_layer = -1;
  const Status valid = validate(policy, nullptr, &bad_layer);
  if (!valid.ok()) {
    const std::string path = bad_layer >= 0 ? "$.layers[" + std::to_string(bad_layer) + "]" : "$";
    io::json_field_error(bad_layer >= 0 ? layers->items()[bad_layer] : doc, path, valid.detail(), error);
    return valid;
  }
  HYLRA_RETURN_IF_ERROR(io::json_optional(doc, root, "pattern", io::JsonKind::kString, &v, error));
  if (v != nullptr) {
    std::string pattern;
    const Status s = to_share_pattern(policy, &pattern);
    if (!s.ok() || pattern != v->as_string())
      return io::json_field_error(*v, "$.pattern", "does not match the layers (" + (s.ok() ? "they give \"" + pattern + "\"" : std::string(s.detail())) + ")",
                                  error, "policy json: pattern disagrees with layers");
  }
  const io::JsonValue* prov = nullptr;
  HYLRA_RETURN_IF_ERROR(io::json_optional(doc, root, "provenance", io::JsonKind::kObject, &prov, error));
  if (provenance != nullptr) *provenance = prov != nullptr ? *prov : io::JsonValue();
  *out = policy;
  return Status::success();
}

template <int MaxLayers>
Status write_policy_file(const std::string& path, const BasicPolicy<MaxLayers>& policy, const io::JsonValue* provenance = nullptr) {
  io::JsonValue doc;
  HYLRA_RETURN_IF_ERROR(policy_to_json(policy, &doc, provenance));
  std::string text;
  HYLRA_RETURN_IF_ERROR(io::write_json(doc, &text));
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return Status(StatusCode::kIoError, "policy file: cannot create");
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const bool closed = std::fclose(file) == 0;
  return written && closed ? Status::success() : Status(StatusCode::kIoError, "policy file: write failed");
}

template <int MaxLayers>
Status read_policy_file(const std::string& path, BasicPolicy<MaxLayers>* out, std::string* error, io::JsonValue* provenance = nullptr) {
  io::JsonValue doc;
  HYLRA_RETURN_IF_ERROR(io::read_json_file(path, &doc, error));
  const Status s = policy_from_json(doc, out, error, provenance);
  if (!s.ok() && error) *error = path + ": " + *error;
  return s;
}

}  // namespace policy
HYLRA_NAMESPACE_END
