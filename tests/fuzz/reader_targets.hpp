// The readers under fuzzing (JSON, policy files, similarity files, .npy) and the properties every
// input must keep: no crash, no hang, a clear error on rejection, and on acceptance a result
// that writes back and reads again unchanged. Shared by the randomized CPU test and the libFuzzer
// target, so both check the same things.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "hylra/io/json.hpp"
#include "hylra/io/npy.hpp"
#include "hylra/policy/policy_json.hpp"
#include "hylra/policy/similarity_io.hpp"

namespace hylra_fuzz {

using namespace hylra;

enum class Target : std::uint8_t { kJson, kPolicy, kSimilarity, kNpy };
constexpr int kNumTargets = 4;

inline bool same_json(const io::JsonValue& a, const io::JsonValue& b) {
  std::string ta, tb;
  return io::write_json(a, &ta, 0).ok() && io::write_json(b, &tb, 0).ok() && ta == tb;
}

// Runs one input through `target`; returns null when every property held, else what broke.
inline const char* check_reader_input(Target target, const std::uint8_t* data, std::size_t size) {
  if (target == Target::kNpy) {
    io::NpyArray a;
    const Status s = io::parse_npy(data, size, &a);
    if (!s.ok()) return s.detail()[0] != '\0' ? nullptr : "npy error without a detail";
    // NpyArray::num_elements() overflows on an accepted shape such as (0, 2^40, 2^40) (empty, so
    // parse_npy takes it); count with a zero check first.
    bool empty = false;
    for (std::int64_t extent : a.shape) empty = empty || extent == 0;
    std::size_t count = 1;
    for (std::int64_t extent : a.shape) {
      if (empty) break;
      if (extent < 0 || static_cast<std::uint64_t>(extent) > a.bytes.size()) return "npy accepted an extent larger than its data";
      count *= static_cast<std::size_t>(extent);
      if (count > a.bytes.size()) return "npy accepted a shape larger than its data";
    }
    if (a.bytes.size() != (empty ? 0 : count) * static_cast<std::size_t>(io::npy_item_size(a.type))) return "npy size disagrees with its shape";
    return nullptr;
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  io::JsonValue doc;
  std::string error;
  const Status parsed = io::parse_json(text, &doc, &error);
  if (!parsed.ok()) {
    if (parsed != StatusCode::kParseError) return "json rejected with a code other than kParseError";
    return error.find("line ") == 0 ? nullptr : "json error message lacks the position";
  }
  std::string written;
  if (!io::write_json(doc, &written).ok()) return "accepted json does not write";
  io::JsonValue again;
  if (!io::parse_json(written, &again, &error).ok() || !same_json(doc, again)) return "json write/read round trip changed the document";
  switch (target) {
    case Target::kJson: return nullptr;
    case Target::kPolicy: {
      policy::Policy p;
      const Status s = policy::policy_from_json(doc, &p, &error);
      if (!s.ok()) return error.empty() ? "policy error without a message" : nullptr;
      if (!policy::validate(p).ok()) return "accepted policy breaks a rule";
      io::JsonValue out;
      policy::Policy back;
      if (!policy::policy_to_json(p, &out).ok() || !policy::policy_from_json(out, &back, &error).ok() || !(back == p))
        return "policy write/read round trip changed the policy";
      return nullptr;
    }
    case Target::kSimilarity: {
      policy::SimilarityData d;
      const Status s = policy::similarity_from_json(doc, &d, &error);
      if (!s.ok()) return error.empty() ? "similarity error without a message" : nullptr;
      if (!policy::validate(d.view(), policy::kMaxLayers).ok()) return "accepted similarity fails validation";
      return nullptr;
    }
    case Target::kNpy: break;
  }
  return nullptr;
}

}  // namespace hylra_fuzz
