// io/json.hpp: strict parsing, positions and paths in errors, limits, and write -> read round trips.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "hylra/io/json.hpp"

using namespace hylra;
using namespace hylra::io;

namespace {

Status parse(const std::string& text, JsonValue* v, std::string* error, JsonLimits limits = {}) {
  return parse_json(text, v, error, limits);
}

// Parses text that must fail and returns the error message.
std::string error_of(const std::string& text, const char* expected_detail, JsonLimits limits = {}) {
  JsonValue v;
  std::string error;
  const Status s = parse(text, &v, &error, limits);
  CHECK_MESSAGE(s == StatusCode::kParseError, text);
  if (expected_detail != nullptr) CHECK_MESSAGE(std::string(s.detail()) == expected_detail, text, " -> ", s.detail());
  CHECK_MESSAGE(!error.empty(), text);
  return error;
}

bool same(const JsonValue& a, const JsonValue& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case JsonKind::kNull: return true;
    case JsonKind::kBool: return a.as_bool() == b.as_bool();
    case JsonKind::kNumber: return a.as_double() == b.as_double();
    case JsonKind::kString: return a.as_string() == b.as_string();
    case JsonKind::kArray:
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i)
        if (!same(a.items()[i], b.items()[i])) return false;
      return true;
    case JsonKind::kObject:
      if (a.members().size() != b.members().size()) return false;
      for (std::size_t i = 0; i < a.members().size(); ++i)
        if (a.members()[i].first != b.members()[i].first || !same(a.members()[i].second, b.members()[i].second)) return false;
      return true;
  }
  return false;
}

}  // namespace

TEST_CASE("json parses every value kind") {
  JsonValue v;
  std::string error;
  const std::string text = R"( {"a": [1, -2, 3.5, -0.25e2, 1E+2, 0], "b": {"c": "x\"y\\z\/\b\f\n\r\t\u00e9\ud83d\ude00"},
    "t": true, "f": false, "n": null, "big": 9007199254740993, "e": []  , "o": {}} )";
  REQUIRE(parse(text, &v, &error).ok());
  CHECK(error.empty());
  REQUIRE(v.is_object());
  const JsonValue* a = v.find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->size() == 6);
  CHECK(a->items()[0].as_double() == 1.0);
  CHECK(a->items()[1].as_double() == -2.0);
  CHECK(a->items()[2].as_double() == 3.5);
  CHECK(a->items()[3].as_double() == -25.0);
  CHECK(a->items()[4].as_double() == 100.0);
  std::int64_t i = 0;
  CHECK(a->items()[4].as_int(0, 1000, &i));  // 1E+2 is an exact integer
  CHECK(i == 100);
  CHECK_FALSE(a->items()[2].as_int(-10, 10, &i));  // 3.5 is not
  CHECK_FALSE(a->items()[1].as_int(0, 10, &i));    // -2 is out of range
  CHECK(v.find("b")->find("c")->as_string() == "x\"y\\z/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(v.find("t")->as_bool());
  CHECK(v.find("f")->is_bool());
  CHECK_FALSE(v.find("f")->as_bool());
  CHECK(v.find("n")->is_null());
  REQUIRE(v.find("big")->as_int(0, std::numeric_limits<std::int64_t>::max(), &i));
  CHECK(i == 9007199254740993LL);  // exact beyond 2^53
  CHECK(v.find("e")->is_array());
  CHECK(v.find("e")->size() == 0);
  CHECK(v.find("o")->is_object());
  CHECK(v.find("missing") == nullptr);
  // Members keep document order.
  CHECK(v.members()[0].first == "a");
  CHECK(v.members().back().first == "o");
}

TEST_CASE("json values remember where they start") {
  JsonValue v;
  REQUIRE(parse("{\n  \"k\": [10,\n   20]\n}", &v, nullptr).ok());
  const JsonValue& k = *v.find("k");
  CHECK(k.position().line == 2);
  CHECK(k.position().column == 8);
  CHECK(k.items()[1].position().line == 3);
  CHECK(k.items()[1].position().column == 4);
  CHECK(k.items()[1].position().offset == 17);
}

TEST_CASE("json errors name the problem, the position and the path") {
  std::string e = error_of("{\"layers\": [{\"kind\": \"Dense\"}, {\"kind\": Dense}]}", "json syntax error");
  CHECK(e.find("line 1, column 41 (byte 40)") != std::string::npos);
  CHECK(e.find("$.layers[1].kind") != std::string::npos);
  e = error_of("{\"a\": 1,\n \"b\": [1, 2,]\n}", "json syntax error");
  CHECK(e.find("line 2, column 13") != std::string::npos);
  CHECK(e.find("$.b[2]") != std::string::npos);
  e = error_of("{\"a\": 1, \"a\": 2}", "json has a duplicate key");
  CHECK(e.find("duplicate key \"a\"") != std::string::npos);
  // Large objects check keys by sorting; the error still names the key and the later position.
  std::string big = "{";
  for (int i = 0; i < 100; ++i) big += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ",\n";
  e = error_of(big + "\"k42\": 0}", "json has a duplicate key");
  CHECK(e.find("line 101, column 8") != std::string::npos);
  CHECK(e.find("duplicate key \"k42\"") != std::string::npos);
  JsonValue many;
  REQUIRE(parse(big + "\"last\": 0}", &many, nullptr).ok());
  CHECK(many.members().size() == 101);
  error_of("[1, 2", "json is truncated");
  error_of("{\"a\": ", "json is truncated");
  error_of("{\"a\"", "json is truncated");
  error_of("\"abc", "json is truncated");
  error_of("tru", "json is truncated");
  error_of("", "json is truncated");
  error_of("   ", "json is truncated");
  error_of("[1] [2]", "json has trailing content");
  error_of("{} x", "json has trailing content");
  error_of("[1,]", "json syntax error");
  error_of("[,1]", "json syntax error");
  error_of("{,}", "json syntax error");
  error_of("{\"a\" 1}", "json syntax error");
  error_of("{1: 2}", "json syntax error");
  error_of("// comment\n1", "json syntax error");
  error_of("NaN", "json syntax error");
  error_of("[Infinity]", "json syntax error");
  error_of("trUe", "json syntax error");
  error_of("'a'", "json syntax error");
  error_of("\xEF\xBB\xBF{}", "json starts with a byte-order mark");
}

TEST_CASE("json numbers follow the grammar exactly") {
  for (const char* bad : {"01", "-", "-a", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.e3", "--1", "1..2"}) {
    JsonValue v;
    std::string error;
    CHECK_MESSAGE(parse(bad, &v, &error) == StatusCode::kParseError, bad);
  }
  error_of("1e400", "json number is out of range");
  error_of("[-1e999]", "json number is out of range");
  JsonValue v;
  REQUIRE(parse("1e-400", &v, nullptr).ok());  // underflow reads as zero
  CHECK(v.as_double() == 0.0);
  REQUIRE(parse("-0", &v, nullptr).ok());
  CHECK(v.as_double() == 0.0);
  REQUIRE(parse("123456789012345678901234567890", &v, nullptr).ok());  // too long for int64: a double
  CHECK(v.as_double() == doctest::Approx(1.2345678901234568e29));
  std::int64_t i = 0;
  CHECK_FALSE(v.as_int(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(), &i));
}

TEST_CASE("json strings are valid UTF-8 with valid escapes") {
  error_of("\"a\x01\"", "json string is malformed");            // raw control character
  error_of("\"\\x\"", "json string is malformed");               // unknown escape
  error_of("\"\\u12G4\"", "json string is malformed");           // bad hex
  error_of("\"\\u12", "json is truncated");
  error_of("\"\\udc00\"", "json string is malformed");           // lone low surrogate
  error_of("\"\\ud800\"", "json string is malformed");           // lone high surrogate
  error_of("\"\\ud800\\u0041\"", "json string is malformed");    // high + non-low
  error_of("\"\xC0\xAF\"", "json string is malformed");          // overlong '/'
  error_of("\"\xED\xA0\x80\"", "json string is malformed");      // encoded surrogate
  error_of("\"\xF4\x90\x80\x80\"", "json string is malformed");  // above U+10FFFF
  error_of("\"\xE2\x82\"", "json string is malformed");          // cut sequence
  error_of("\"\xFF\"", "json string is malformed");
  JsonValue v;
  REQUIRE(parse("\"\xE2\x82\xAC \xF0\x9F\x98\x80\"", &v, nullptr).ok());
  CHECK(v.as_string() == "\xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST_CASE("json limits reject deep nesting and large documents without recursion blow-up") {
  JsonLimits limits;
  limits.max_depth = 8;
  CHECK(parse("[[[[[[[[1]]]]]]]]", nullptr, nullptr) == StatusCode::kNullPointer);
  JsonValue v;
  CHECK(parse("[[[[[[[[1]]]]]]]]", &v, nullptr, limits).ok());
  error_of("[[[[[[[[[1]]]]]]]]]", "json nesting exceeds the depth limit", limits);
  // A million open brackets with the default limit: rejected at depth 64, no stack overflow.
  const std::string deep(1 << 20, '[');
  const std::string e = error_of(deep, "json nesting exceeds the depth limit");
  CHECK(e.find("byte 64") != std::string::npos);
  error_of(std::string(1 << 20, '{'), nullptr);
  limits = JsonLimits();
  limits.max_bytes = 10;
  error_of("[1,2,3,4,5,6]", "json document exceeds the size limit", limits);
  CHECK(parse("[1,2,3,4]", &v, nullptr, limits).ok());
}

TEST_CASE("json writes what it reads") {
  JsonValue doc = JsonValue::object();
  doc.set("version", JsonValue::integer(1));
  doc.set("name", JsonValue::string("quote\" back\\ nl\n ctl\x01 utf8 \xC3\xA9"));
  JsonValue row = JsonValue::array();
  for (double x : {0.1, 1.0 / 3.0, -2.5e-300, 1e300, 0.0, 12345678.875})
    row.push_back(JsonValue::number(x));
  JsonValue rows = JsonValue::array();
  rows.push_back(row);
  rows.push_back(JsonValue::array());
  doc.set("rows", rows);
  doc.set("flags", [] {
    JsonValue a = JsonValue::array();
    a.push_back(JsonValue::boolean(true));
    a.push_back(JsonValue::null());
    return a;
  }());
  doc.set("empty", JsonValue::object());
  doc.set("big", JsonValue::integer(std::numeric_limits<std::int64_t>::min()));
  for (int indent : {0, 2}) {
    std::string text;
    REQUIRE(write_json(doc, &text, indent).ok());
    JsonValue back;
    std::string error;
    REQUIRE_MESSAGE(parse(text, &back, &error).ok(), error);
    CHECK(same(doc, back));  // doubles round-trip bit-exactly
    std::int64_t i = 0;
    REQUIRE(back.find("big")->as_int(std::numeric_limits<std::int64_t>::min(), 0, &i));
    CHECK(i == std::numeric_limits<std::int64_t>::min());
  }
  std::string text;
  REQUIRE(write_json(doc, &text, 2).ok());
  CHECK(text.find("[0.1, 0.3333333333333333, ") != std::string::npos);  // matrix rows on one line
  JsonValue nan = JsonValue::array();
  nan.push_back(JsonValue::number(std::nan("")));
  CHECK(write_json(nan, &text) == StatusCode::kInvalidValue);
  nan = JsonValue::number(std::numeric_limits<double>::infinity());
  CHECK(write_json(nan, &text) == StatusCode::kInvalidValue);
}

TEST_CASE("json files: missing, oversized and malformed files report the path") {
  JsonValue v;
  std::string error;
  CHECK(read_json_file("/nonexistent/hylra.json", &v, &error) == StatusCode::kIoError);
  CHECK(error.find("/nonexistent/hylra.json") != std::string::npos);
  const std::string path = "test_json_tmp.json";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  std::fputs("{\"a\": [1, 2}\n", f);
  std::fclose(f);
  CHECK(read_json_file(path, &v, &error) == StatusCode::kParseError);
  CHECK(error.find(path + ": line 1, column 12") != std::string::npos);
  JsonLimits limits;
  limits.max_bytes = 4;
  CHECK(read_json_file(path, &v, &error, limits) == StatusCode::kParseError);
  CHECK(error.find("size limit") != std::string::npos);
  std::remove(path.c_str());
}
