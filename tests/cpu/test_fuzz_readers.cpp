// Randomized malformed input against every file reader (the CI-sized sibling of the libFuzzer
// target in tests/fuzz): mutations of valid JSON, policy, similarity and .npy files must give a
// clear error or a document that round-trips, never a crash or a hang.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "fuzz/reader_targets.hpp"

using namespace hylra;
using hylra_fuzz::Target;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes npy_seed(io::NpyType type, std::vector<std::int64_t> shape, const void* data) {
  const std::string path = "test_fuzz_readers_seed.npy";
  REQUIRE(io::write_npy(path, type, shape, data).ok());
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  Bytes out;
  int c;
  while ((c = std::fgetc(f)) != EOF) out.push_back(static_cast<std::uint8_t>(c));
  std::fclose(f);
  std::remove(path.c_str());
  return out;
}

std::vector<Bytes> seeds(Target target) {
  switch (target) {
    case Target::kJson:
      return {bytes_of(R"({"a": [1, -2.5e3, true, false, null], "b": {"c": "x\"\u00e9\ud83d\ude00"}, "d": []})"),
              bytes_of("[[[[[[1]]]]]]"), bytes_of("\"\\u0041\\n\""), bytes_of("-0.0e-0")};
    case Target::kPolicy:
      return {bytes_of(R"({"format": "hylra.policy", "version": 1, "num_layers": 5,
        "selection": {"k": 64, "block_size": 16, "scope": "shared"},
        "layers": [{"kind": "Dense"}, {"kind": "Select"}, {"kind": "Reuse", "source": 1},
                   {"kind": "DenseSelect"}, {"kind": "Reuse", "source": 1}],
        "provenance": {"solver": "threshold"}})"),
              bytes_of(R"({"format":"hylra.policy","version":1,"num_layers":2,"selection":{"k":8},"layers":[{"kind":"Select"},{"kind":"Reuse","source":0}],"pattern":"CS"})")};
    case Target::kSimilarity:
      return {bytes_of(R"({"format": "hylra.similarity", "version": 1, "num_layers": 3,
        "similarity": [[1, 0.5, 0.25], [0, 1, 0.75], [0, 0, 1]],
        "sensitive": [true, false, false], "rnmse": [0.3, 0.01, 0.02]})")};
    case Target::kNpy: {
      const double m[6] = {1, 0.5, 0.25, 0, 1, 0.75};
      const float f[4] = {1, 2, 3, 4};
      const std::int32_t i[3] = {7, -1, 3};
      const std::uint8_t u[5] = {0, 1, 0, 1, 1};
      return {npy_seed(io::NpyType::kFloat64, {2, 3}, m), npy_seed(io::NpyType::kFloat32, {4}, f), npy_seed(io::NpyType::kInt32, {3, 1}, i),
              npy_seed(io::NpyType::kUInt8, {5}, u)};
    }
  }
  return {};
}

// One random edit: flip a bit, overwrite with a structural byte, delete, duplicate or insert a
// hostile token, or truncate.
void mutate(Bytes* b, std::mt19937& rng) {
  static const char* const kTokens[] = {"{", "}", "[", "]", "\"", ":", ",", "\\", "\\u", "\\ud800", "1e999", "-", "0", "null", "true",
                                        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "\xC0", "\xFF", std::string(1, '\0').c_str(),
                                        "\"source\": 0", "\"kind\": \"Reuse\"", "99999999999999999999", "'shape': (", "'descr': '<f8'", ")"};
  auto pos = [&](std::size_t n) { return n == 0 ? std::size_t(0) : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  const int op = std::uniform_int_distribution<int>(0, 5)(rng);
  const std::size_t n = b->size();
  switch (op) {
    case 0:
      if (n) (*b)[pos(n)] ^= static_cast<std::uint8_t>(1u << pos(8));
      break;
    case 1:
      if (n) (*b)[pos(n)] = static_cast<std::uint8_t>("{}[]\",:\\0-.eE \n\x7f\x80"[pos(16)]);
      break;
    case 2:
      if (n) {
        const std::size_t at = pos(n);
        b->erase(b->begin() + at, b->begin() + std::min(n, at + 1 + pos(8)));
      }
      break;
    case 3:
      if (n) {
        const std::size_t at = pos(n), len = std::min(n - at, 1 + pos(16));
        const Bytes piece(b->begin() + at, b->begin() + at + len);
        b->insert(b->begin() + pos(n + 1), piece.begin(), piece.end());
      }
      break;
    case 4: {
      const std::string t = kTokens[pos(sizeof(kTokens) / sizeof(kTokens[0]))];
      b->insert(b->begin() + pos(n + 1), t.begin(), t.end());
      break;
    }
    case 5: b->resize(pos(n + 1)); break;
  }
}

const char* name(Target t) {
  return t == Target::kJson ? "json" : t == Target::kPolicy ? "policy" : t == Target::kSimilarity ? "similarity" : "npy";
}

}  // namespace

TEST_CASE("readers survive randomized malformed input") {
  std::mt19937 rng(424242);
  for (Target target : {Target::kJson, Target::kPolicy, Target::kSimilarity, Target::kNpy}) {
    const std::vector<Bytes> corpus = seeds(target);
    for (const Bytes& seed : corpus) REQUIRE(hylra_fuzz::check_reader_input(target, seed.data(), seed.size()) == nullptr);
    int inputs = 0, violations = 0;
    double slowest_ms = 0.0;
    const auto start = std::chrono::steady_clock::now();
    for (int iter = 0; iter < 20000; ++iter) {
      Bytes b = corpus[iter % corpus.size()];
      const int edits = 1 + std::uniform_int_distribution<int>(0, 7)(rng);
      for (int e = 0; e < edits; ++e) mutate(&b, rng);
      const auto t0 = std::chrono::steady_clock::now();
      const char* broken = hylra_fuzz::check_reader_input(target, b.data(), b.size());
      slowest_ms = std::max(slowest_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      ++inputs;
      if (broken != nullptr) {
        ++violations;
        if (violations <= 5) MESSAGE(std::string(name(target)), ": ", broken, " on ", std::string(b.begin(), b.end()));
      }
    }
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MESSAGE(std::string(name(target)), ": ", inputs, " mutated inputs in ", total_s, " s, slowest ", slowest_ms, " ms");
    CHECK(violations == 0);
    CHECK(slowest_ms < 1000.0);  // a hang would show here; the bound is generous on a shared machine
  }
}

TEST_CASE("regression: libFuzzer's empty .npy with huge extents") {
  // (0, 2^40, 2^40): empty, so parse_npy accepts it; the product of its extents overflows int64.
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1099511627776, 1099511627776), }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string file = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) + static_cast<char>(header.size() >> 8) + header;
  CHECK(hylra_fuzz::check_reader_input(Target::kNpy, reinterpret_cast<const std::uint8_t*>(file.data()), file.size()) == nullptr);
}

TEST_CASE("pathological sizes are bounded") {
  // Deep nesting, a long string, a long number and many members: rejected or accepted quickly.
  const std::string inputs[] = {std::string(1 << 22, '['), "\"" + std::string(1 << 22, 'a'), std::string(1 << 20, '1'),
                                "{" + [] {
                                  std::string s;
                                  for (int i = 0; i < 5000; ++i) s += "\"k" + std::to_string(i) + "\":0,";
                                  return s;
                                }() + "\"k\":0}"};
  for (const std::string& text : inputs) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < hylra_fuzz::kNumTargets - 1; ++t)
      CHECK(hylra_fuzz::check_reader_input(static_cast<Target>(t), reinterpret_cast<const std::uint8_t*>(text.data()), text.size()) == nullptr);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(text.size(), " bytes: ", ms, " ms");
    CHECK(ms < 5000.0);
  }
}
