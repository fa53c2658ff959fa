// Policy and similarity files: round trips, and errors that name the field and its position.
#include <doctest/doctest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hylra/policy/policy_json.hpp"
#include "hylra/policy/similarity_io.hpp"
#include "hylra/policy/solvers.hpp"

using namespace hylra;
using namespace hylra::policy;

namespace {

Policy random_policy(std::mt19937& rng) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int L = uniform(1, 64);
  std::vector<double> m(L * L);
  for (double& x : m) x = uniform(0, 64) / 64.0;
  std::vector<char> sensitive(L);
  for (char& s : sensitive) s = uniform(0, 4) == 0;
  PolicyInputs in;
  in.similarity = SimilarityView{m.data(), L};
  in.sensitive = reinterpret_cast<const bool*>(sensitive.data());
  in.sensitive_kinds = uniform(0, 1) ? KindSet().with(LayerKind::kDense) : KindSet().with(LayerKind::kDenseSelect);
  in.selection = SelectionParams{uniform(1, 4096), uniform(0, 1) ? 1 : 64, uniform(0, 1) ? IndexScope::kPerKvHead : IndexScope::kSharedAcrossHeads};
  Policy p;
  REQUIRE(solve_threshold(in, uniform(0, 64) / 64.0, &p).ok());
  // Also a Reuse of an older producer, which has no share pattern.
  for (int i = 2; i < L; ++i) {
    if (p.layers[i].kind == LayerKind::kReuse && uniform(0, 3) == 0) {
      for (int s = 0; s < p.layers[i].source; ++s)
        if (is_producer(p.layers[s].kind)) p.layers[i].source = s;
      break;
    }
  }
  REQUIRE(validate(p).ok());
  return p;
}

std::string text_of(const Policy& p) {
  io::JsonValue doc;
  REQUIRE(policy_to_json(p, &doc).ok());
  std::string text;
  REQUIRE(io::write_json(doc, &text).ok());
  return text;
}

Status read_text(const std::string& text, Policy* p, std::string* error) {
  io::JsonValue doc;
  HYLRA_RETURN_IF_ERROR(io::parse_json(text, &doc, error));
  return policy_from_json(doc, p, error);
}

const char* kGood = R"({
  "format": "hylra.policy",
  "version": 1,
  "num_layers": 4,
  "selection": {"k": 2048, "block_size": 64, "scope": "shared"},
  "layers": [
    {"kind": "Dense"},
    {"kind": "Select"},
    {"kind": "Reuse", "source": 1},
    {"kind": "DenseSelect"}
  ],
  "pattern": "DCSC",
  "provenance": {"solver": "threshold", "theta": 0.8}
})";

// Replaces the first `from` in kGood by `to` and reads it; returns the error message.
std::string error_after(const std::string& from, const std::string& to, Status* status) {
  std::string text = kGood;
  const std::size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  Policy p;
  std::string error;
  *status = read_text(text, &p, &error);
  CHECK_FALSE(status->ok());
  return error;
}

}  // namespace

TEST_CASE("policy files round-trip") {
  Policy p;
  std::string error;
  io::JsonValue doc, provenance;
  REQUIRE(io::parse_json(kGood, &doc, &error).ok());
  REQUIRE_MESSAGE(policy_from_json(doc, &p, &error, &provenance).ok(), error);
  CHECK(p.num_layers == 4);
  CHECK(p.selection == SelectionParams{2048, 64, IndexScope::kSharedAcrossHeads});
  CHECK(p.layers[2] == reuse(1));
  CHECK(p.layers[3] == dense_select());
  CHECK(provenance.find("solver")->as_string() == "threshold");

  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const Policy original = random_policy(rng);
    Policy back;
    const std::string text = text_of(original);
    REQUIRE_MESSAGE(read_text(text, &back, &error).ok(), error);
    CHECK(back == original);
    CHECK(text_of(back) == text);  // a fixed point
    std::string pattern;
    CHECK((text.find("\"pattern\"") != std::string::npos) == to_share_pattern(original, &pattern).ok());
  }

  const std::string path = "test_policy_json_tmp.json";
  const Policy original = random_policy(rng);
  io::JsonValue prov = io::JsonValue::object();
  prov.set("solver", io::JsonValue::string("jump-n"));
  REQUIRE(write_policy_file(path, original, &prov).ok());
  Policy back;
  REQUIRE(read_policy_file(path, &back, &error, &provenance).ok());
  CHECK(back == original);
  CHECK(provenance.find("solver")->as_string() == "jump-n");
  std::remove(path.c_str());
  CHECK(read_policy_file(path, &back, &error) == StatusCode::kIoError);
  CHECK(write_policy_file("/nonexistent-dir/x.json", original) == StatusCode::kIoError);
  Policy invalid = original;
  invalid.selection.k = 0;
  CHECK(policy_to_json(invalid, &doc) == StatusCode::kInvalidValue);
}

TEST_CASE("malformed and out-of-range policy files name the field and position") {
  Status s;
  std::string e = error_after("\"kind\": \"Select\"", "\"kind\": \"Selekt\"", &s);
  CHECK(s == StatusCode::kParseError);
  CHECK(e.find("line 8, column 14") != std::string::npos);
  CHECK(e.find("$.layers[1].kind") != std::string::npos);
  CHECK(e.find("unknown kind \"Selekt\"") != std::string::npos);

  e = error_after("\"k\": 2048", "\"k\": 0", &s);
  CHECK(std::string(s.detail()) == "json field is out of range");
  CHECK(e.find("$.selection.k: expected an integer in [1, 16777216], got 0") != std::string::npos);
  CHECK(e.find("line 5") != std::string::npos);

  e = error_after("\"source\": 1", "\"source\": 7", &s);
  CHECK(e.find("$.layers[2].source: expected an integer in [0, 3], got 7") != std::string::npos);
  e = error_after("\"source\": 1", "\"source\": 1.5", &s);
  CHECK(e.find("$.layers[2].source") != std::string::npos);
  e = error_after("\"source\": 1", "\"source\": \"1\"", &s);
  CHECK(std::string(s.detail()) == "json field has the wrong type");

  // Valid JSON, broken rules: validate()'s status, with the layer's path and position.
  e = error_after("{\"kind\": \"Select\"}", "{\"kind\": \"Dense\"}", &s);
  CHECK(s == StatusCode::kInvalidPolicy);
  CHECK(std::string(s.detail()) == "the first non-dense layer is not a producer");
  CHECK(e.find("line 9, column 5 (byte") != std::string::npos);
  CHECK(e.find("$.layers[2]") != std::string::npos);
  e = error_after("\"source\": 1", "\"source\": 2", &s);
  CHECK(std::string(s.detail()) == "reuse source is not an earlier layer");
  e = error_after("\"source\": 1", "\"source\": 0", &s);
  CHECK(std::string(s.detail()) == "reuse source is not a producer (Select or DenseSelect)");

  e = error_after("\"num_layers\": 4", "\"num_layers\": 5", &s);
  CHECK(e.find("$.layers: has 4 entries, num_layers is 5") != std::string::npos);
  e = error_after("\"num_layers\": 4", "\"num_layers\": 100000", &s);
  CHECK(e.find("$.num_layers: expected an integer in [1, 256]") != std::string::npos);
  e = error_after("\"num_layers\": 4,", "", &s);
  CHECK(e.find("missing required field \"num_layers\"") != std::string::npos);
  CHECK(e.find("line 1, column 1") != std::string::npos);
  e = error_after("\"scope\": \"shared\"", "\"scope\": \"global\"", &s);
  CHECK(e.find("$.selection.scope") != std::string::npos);
  e = error_after("\"block_size\": 64", "\"blocksize\": 64", &s);
  CHECK(e.find("$.selection.blocksize: unknown field") != std::string::npos);
  e = error_after("{\"kind\": \"Dense\"}", "{\"kind\": \"Dense\", \"source\": 0}", &s);
  CHECK(e.find("$.layers[0].source: only a Reuse layer has a source") != std::string::npos);
  e = error_after("\"kind\": \"Reuse\", \"source\": 1", "\"kind\": \"Reuse\"", &s);
  CHECK(e.find("a Reuse layer needs \"source\"") != std::string::npos);
  e = error_after("\"DCSC\"", "\"DCSS\"", &s);
  CHECK(e.find("$.pattern: does not match the layers (they give \"DCSC\")") != std::string::npos);
  e = error_after("\"hylra.policy\"", "\"hylra.similarity\"", &s);
  CHECK(e.find("$.format") != std::string::npos);
  e = error_after("\"version\": 1", "\"version\": 2", &s);
  CHECK(s == StatusCode::kNotSupported);
  CHECK(e.find("$.version: this reader supports version 1") != std::string::npos);
  e = error_after("\"provenance\": {", "\"provenance\": [{", &s);
  CHECK(s == StatusCode::kParseError);  // now malformed JSON: "]" expected
  e = error_after("{\"kind\": \"Dense\"}", "[\"Dense\"]", &s);
  CHECK(e.find("$.layers[0]: expected an object, got array") != std::string::npos);

  // Truncations at every length: an error, never a crash, and never success.
  const std::string good = kGood;
  Policy p;
  std::string error;
  for (std::size_t n = 0; n < good.size() - 1; ++n) {
    const Status t = read_text(good.substr(0, n), &p, &error);
    CHECK_MESSAGE(t == StatusCode::kParseError, n);
    CHECK(!error.empty());
  }
}

TEST_CASE("similarity files: JSON round trip, .npy input, and errors") {
  SimilarityData data;
  data.num_layers = 3;
  data.matrix = {1, 0.75, 0.5, 0, 1, 0.9375, 0, 0, 1};
  data.sensitive = {1, 0, 0};
  data.rnmse = {0.25, 0.0125, 0.03};
  io::JsonValue doc;
  REQUIRE(similarity_to_json(data, &doc).ok());
  std::string text, error;
  REQUIRE(io::write_json(doc, &text).ok());
  REQUIRE(io::parse_json(text, &doc, &error).ok());
  SimilarityData back;
  REQUIRE_MESSAGE(similarity_from_json(doc, &back, &error).ok(), error);
  CHECK(back.num_layers == 3);
  CHECK(back.matrix == data.matrix);
  CHECK(back.sensitive == data.sensitive);
  CHECK(back.rnmse == data.rnmse);
  CHECK(back.sensitive_mask()[0]);
  CHECK(back.view()(1, 2) == 0.9375);

  auto fails = [&](const std::string& bad_text, const char* needle) {
    io::JsonValue d;
    std::string err;
    Status s = io::parse_json(bad_text, &d, &err);
    if (s.ok()) s = similarity_from_json(d, &back, &err);
    CHECK_MESSAGE(!s.ok(), bad_text);
    CHECK_MESSAGE(err.find(needle) != std::string::npos, err);
  };
  const std::string head = R"({"format": "hylra.similarity", "version": 1, "num_layers": 2, )";
  fails(head + R"("similarity": [[1, 1.5], [0, 1]]})", "$.similarity[0][1]: expected a number in [0, 1], got 1.5");
  fails(head + R"("similarity": [[1, 0.5]]})", "$.similarity: has 1 rows, num_layers is 2");
  fails(head + R"("similarity": [[1, 0.5], [0]]})", "$.similarity[1]: expected an array of 2 numbers");
  fails(head + R"("similarity": [[1, 0.5], [0, 1]], "sensitive": [true]})", "$.sensitive: has 1 entries");
  fails(head + R"("similarity": [[1, 0.5], [0, 1]], "sensitive": [true, 1]})", "$.sensitive[1]: expected a boolean, got number");
  fails(head + R"("similarity": [[1, 0.5], [0, 1]], "rnmse": [0.1, -1]})", "$.rnmse[1]");
  fails(head + R"("similarity": [[1, 0.5], [0, 1]], "extra": 1})", "$.extra: unknown field");
  fails(R"({"format": "hylra.similarity", "version": 1, "num_layers": 0, "similarity": []})", "$.num_layers");

  // .npy: a float64 matrix and per-layer vectors.
  const std::string m_path = "test_policy_json_m.npy", v_path = "test_policy_json_v.npy";
  REQUIRE(io::write_npy(m_path, io::NpyType::kFloat64, {3, 3}, data.matrix.data()).ok());
  REQUIRE(read_similarity_file(m_path, &back, &error).ok());
  CHECK(back.matrix == data.matrix);
  CHECK(back.sensitive.empty());
  const float bad_m[4] = {1, 2, 0, 1};
  REQUIRE(io::write_npy(m_path, io::NpyType::kFloat32, {2, 2}, bad_m).ok());
  CHECK(read_similarity_file(m_path, &back, &error) == StatusCode::kInvalidValue);
  CHECK(error.find("element [0][1] is not in [0, 1]") != std::string::npos);
  REQUIRE(io::write_npy(m_path, io::NpyType::kFloat32, {4}, bad_m).ok());
  CHECK(read_similarity_file(m_path, &back, &error) == StatusCode::kInvalidShape);
  const std::int32_t ints[4] = {0, 1, 0, 1};
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt32, {2, 2}, ints).ok());
  CHECK(read_similarity_file(m_path, &back, &error) == StatusCode::kNotSupported);

  const double r[3] = {0.5, 0.01, 0.02};
  // Top-k index sets [layers, rows, k] -> the same matrix build_similarity() gives.
  const std::int32_t topk[3][2][4] = {{{1, 2, 3, 4}, {5, 6, 7, 8}}, {{1, 2, 9, -1}, {5, 6, 7, 8}}, {{4, 3, 2, 1}, {-1, -1, -1, 5}}};
  std::vector<double> expected;
  REQUIRE(build_similarity(&topk[0][0][0], 3, 2, 4, &expected).ok());
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt32, {3, 2, 4}, topk).ok());
  REQUIRE_MESSAGE(read_topk_similarity_npy(m_path, &back, &error).ok(), error);
  CHECK(back.num_layers == 3);
  CHECK(back.matrix == expected);
  CHECK(back.view()(0, 1) == 0.75);
  const std::int64_t wide[2] = {3, std::int64_t(1) << 40};
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt64, {1, 1, 2}, wide).ok());
  CHECK(read_topk_similarity_npy(m_path, &back, &error) == StatusCode::kInvalidValue);
  CHECK(error.find("above int32") != std::string::npos);
  const std::int32_t below[2] = {3, -2};
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt32, {1, 1, 2}, below).ok());
  CHECK(read_topk_similarity_npy(m_path, &back, &error) == StatusCode::kInvalidValue);
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt32, {2, 1}, below).ok());
  CHECK(read_topk_similarity_npy(m_path, &back, &error) == StatusCode::kInvalidShape);
  REQUIRE(io::write_npy(m_path, io::NpyType::kInt32, {1, 0, 2}, below).ok());
  CHECK(read_topk_similarity_npy(m_path, &back, &error) == StatusCode::kInvalidShape);
  REQUIRE(io::write_npy(m_path, io::NpyType::kFloat64, {1, 1, 2}, r).ok());
  CHECK(read_topk_similarity_npy(m_path, &back, &error) == StatusCode::kNotSupported);

  std::vector<char> mask;
  std::vector<double> rnmse;
  const unsigned char u8[3] = {0, 1, 0};
  REQUIRE(io::write_npy(v_path, io::NpyType::kUInt8, {3}, u8).ok());
  REQUIRE(read_layer_vector_npy(v_path, 3, &mask, &rnmse, &error).ok());
  CHECK(mask == std::vector<char>{0, 1, 0});
  CHECK(read_layer_vector_npy(v_path, 4, &mask, &rnmse, &error) == StatusCode::kInvalidShape);
  REQUIRE(io::write_npy(v_path, io::NpyType::kFloat64, {3}, r).ok());
  REQUIRE(read_layer_vector_npy(v_path, 3, &mask, &rnmse, &error).ok());
  CHECK(rnmse == std::vector<double>{0.5, 0.01, 0.02});
  CHECK(mask.empty());
  std::remove(m_path.c_str());
  std::remove(v_path.c_str());
  CHECK(read_similarity_file(m_path, &back, &error) == StatusCode::kIoError);
  CHECK(read_similarity_file("missing.json", &back, &error) == StatusCode::kIoError);
}
