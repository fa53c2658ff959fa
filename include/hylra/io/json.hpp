// A small, strict JSON reader and writer (RFC 8259) for hylra's own files: policies, similarity
// matrices, trace manifests.
//
// Strict means: one value per document, no comments, no trailing commas, no duplicate object keys,
// no NaN/Infinity literals, no leading zeros, no unescaped control characters, valid UTF-8 only,
// and every \u escape a valid code point (surrogates only in pairs). Reading is bounded: input
// above JsonLimits::max_bytes or nested deeper than JsonLimits::max_depth is rejected before any
// work that could exhaust memory or the stack, so no input crashes or hangs the reader.
//
// Errors come back as a Status (code kParseError, or kIoError for files) whose static detail says
// what kind of problem it is, plus a std::string message owned by the caller that says where:
// "line 3, column 17 (byte 41) at $.layers[2].kind: expected a string". Every JsonValue remembers
// where it started, so schema readers built on top report positions the same way.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "hylra/core/config.hpp"
#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN
namespace io {

struct JsonLimits {
  std::size_t max_bytes = std::size_t(256) << 20;  // whole document
  int max_depth = 64;                              // nested arrays/objects
};

// Where a value (or an error) starts in the source text; line and column count from 1, columns in
// bytes.
struct JsonPosition {
  std::size_t offset = 0;
  int line = 1;
  int column = 1;
};

// "line 3, column 17 (byte 41)"
inline std::string to_string(const JsonPosition& pos) {
  return "line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column) + " (byte " +
         std::to_string(pos.offset) + ")";
}

enum class JsonKind { kNull, kBool, kNumber, kString, kArray, kObject };

constexpr const char* to_string(JsonKind kind) {
  switch (kind) {
    case JsonKind::kNull: return "null";
    case JsonKind::kBool: return "boolean";
    case JsonKind::kNumber: return "number";
    case JsonKind::kString: return "string";
    case JsonKind::kArray: return "array";
    case JsonKind::kObject: return "object";
  }
  return "unknown";
}

class JsonValue {
 public:
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;
  static JsonValue null() { return JsonValue(); }
  static JsonValue boolean(bool b) { JsonValue v; v.kind_ = JsonKind::kBool; v.bool_ = b; return v; }
  static JsonValue number(double d) { JsonValue v; v.kind_ = JsonKind::kNumber; v.number_ = d; return v; }
  // An integer written without a fraction; kept exactly even beyond 2^53.
  static JsonValue integer(std::int64_t i) {
    JsonValue v = number(static_cast<double>(i));
    v.integer_ = i;
    v.is_integer_ = true;
    return v;
  }
  static JsonValue string(std::string s) { JsonValue v; v.kind_ = JsonKind::kString; v.string_ = std::move(s); return v; }
  static JsonValue array() { JsonValue v; v.kind_ = JsonKind::kArray; return v; }
  static JsonValue object() { JsonValue v; v.kind_ = JsonKind::kObject; return v; }

  JsonKind kind() const { return kind_; }
  bool is_null() const { return kind_ == JsonKind::kNull; }
  bool is_bool() const { return kind_ == JsonKind::kBool; }
  bool is_number() const { return kind_ == JsonKind::kNumber; }
  bool is_string() const { return kind_ == JsonKind::kString; }
  bool is_array() const { return kind_ == JsonKind::kArray; }
  bool is_object() const { return kind_ == JsonKind::kObject; }
  // Where the value starts in the text it was parsed from (offset 0 for values built in code).
  const JsonPosition& position() const { return position_; }

  // Accessors return a neutral value (false, 0, empty) when the kind does not match.
  bool as_bool() const { return kind_ == JsonKind::kBool && bool_; }
  double as_double() const { return kind_ == JsonKind::kNumber ? number_ : 0.0; }
  const std::string& as_string() const { return string_; }
  // True when the number is an integer in [lo, hi]; stores it in *out. 3.0 and 3e0 count as 3.
  bool as_int(std::int64_t lo, std::int64_t hi, std::int64_t* out) const {
    if (kind_ != JsonKind::kNumber) return false;
    std::int64_t value = integer_;
    if (!is_integer_) {
      // Exact integers written with a fraction or exponent; the bound keeps the cast defined.
      if (!(std::fabs(number_) < 9.0e15) || std::floor(number_) != number_) return false;
      value = static_cast<std::int64_t>(number_);
    }
    if (value < lo || value > hi) return false;
    *out = value;
    return true;
  }

  // Arrays.
  std::size_t size() const { return kind_ == JsonKind::kArray ? items_.size() : kind_ == JsonKind::kObject ? members_.size() : 0; }
  const std::vector<JsonValue>& items() const { return items_; }
  std::vector<JsonValue>& items() { return items_; }
  void push_back(JsonValue v) { items_.push_back(std::move(v)); }

  // Objects keep their members in document order.
  const std::vector<Member>& members() const { return members_; }
  // The member named `key`, or null when absent (or when this is not an object). Linear: hylra's
  // documents have a handful of keys per object.
  const JsonValue* find(std::string_view key) const {
    for (const Member& m : members_)
      if (m.first == key) return &m.second;
    return nullptr;
  }
  // Appends a member; the caller keeps keys unique (the writer does not check).
  void set(std::string key, JsonValue v) { members_.emplace_back(std::move(key), std::move(v)); }

 private:
  friend class JsonParser;

  JsonKind kind_ = JsonKind::kNull;
  bool bool_ = false;
  bool is_integer_ = false;
  double number_ = 0.0;
  std::int64_t integer_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<Member> members_;
  JsonPosition position_;
};

// Recursive-descent parser; one instance parses one document. Use parse_json() below.
class JsonParser {
 public:
  JsonParser(std::string_view text, JsonLimits limits) : text_(text), limits_(limits) {}

  Status parse(JsonValue* out, std::string* error) {
    if (text_.size() > limits_.max_bytes) return fail(error, "json document exceeds the size limit", "document too large");
    // A UTF-8 byte-order mark is not JSON text; saying so beats a confusing "unexpected byte".
    if (text_.size() >= 3 && text_.substr(0, 3) == "\xEF\xBB\xBF") return fail(error, "json starts with a byte-order mark", "byte-order mark not allowed");
    skip_whitespace();
    std::string path = "$";
    if (!parse_value(out, 0, &path)) return fail_at(error);
    skip_whitespace();
    if (pos_ != text_.size()) {
      set_error("json has trailing content", "unexpected content after the document", "$");
      return fail_at(error);
    }
    return Status::success();
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }

  JsonPosition here() const {
    JsonPosition p;
    p.offset = pos_;
    if (pos_ < line_scan_) line_scan_ = line_start_ = 0, line_ = 1;  // moved back: rescan
    // Lines are counted on demand (only for value starts and errors) from the last known line.
    for (std::size_t i = line_scan_; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line_;
        line_start_ = i + 1;
      }
    }
    line_scan_ = pos_ > line_scan_ ? pos_ : line_scan_;
    p.line = line_;
    p.column = static_cast<int>(pos_ - line_start_) + 1;
    return p;
  }

  void set_error(const char* status_detail, const char* what, const std::string& path) {
    if (error_detail_ != nullptr) return;  // keep the first (innermost) error
    error_detail_ = status_detail;
    error_message_ = to_string(here()) + " at " + path + ": " + what;
  }

  Status fail_at(std::string* error) const {
    if (error) *error = error_message_;
    return Status(StatusCode::kParseError, error_detail_ ? error_detail_ : "json syntax error");
  }
  Status fail(std::string* error, const char* status_detail, const char* what) {
    set_error(status_detail, what, "$");
    return fail_at(error);
  }

  void skip_whitespace() {
    while (!at_end()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool parse_value(JsonValue* out, int depth, std::string* path) {
    if (at_end()) {
      set_error("json is truncated", "unexpected end of input, expected a value", *path);
      return false;
    }
    out->position_ = here();
    const char c = text_[pos_];
    switch (c) {
      case '{': return parse_object(out, depth, path);
      case '[': return parse_array(out, depth, path);
      case '"': out->kind_ = JsonKind::kString; return parse_string(&out->string_, *path);
      case 't': out->kind_ = JsonKind::kBool; out->bool_ = true; return parse_literal("true", *path);
      case 'f': out->kind_ = JsonKind::kBool; return parse_literal("false", *path);
      case 'n': return parse_literal("null", *path);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(out, *path);
        set_error("json syntax error", "unexpected character, expected a value", *path);
        return false;
    }
  }

  bool parse_literal(std::string_view word, const std::string& path) {
    if (text_.substr(pos_, word.size()) != word) {
      const bool truncated = pos_ + word.size() > text_.size() && word.substr(0, text_.size() - pos_) == text_.substr(pos_);
      set_error(truncated ? "json is truncated" : "json syntax error", "invalid literal", path);
      return false;
    }
    pos_ += word.size();
    return true;
  }

  bool enter(int depth, const std::string& path) {
    if (depth + 1 > limits_.max_depth) {
      set_error("json nesting exceeds the depth limit", "nesting deeper than the depth limit", path);
      return false;
    }
    return true;
  }

  bool parse_array(JsonValue* out, int depth, std::string* path) {
    if (!enter(depth, *path)) return false;
    out->kind_ = JsonKind::kArray;
    ++pos_;  // '['
    skip_whitespace();
    if (!at_end() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    const std::size_t path_len = path->size();
    for (;;) {
      path->resize(path_len);
      *path += '[' + std::to_string(out->items_.size()) + ']';
      out->items_.emplace_back();
      if (!parse_value(&out->items_.back(), depth + 1, path)) return false;
      path->resize(path_len);
      skip_whitespace();
      if (at_end()) {
        set_error("json is truncated", "unexpected end of input inside an array", *path);
        return false;
      }
      const char c = text_[pos_++];
      if (c == ']') return true;
      if (c != ',') {
        --pos_;
        set_error("json syntax error", "expected ',' or ']' in an array", *path);
        return false;
      }
      skip_whitespace();
    }
  }

  bool parse_object(JsonValue* out, int depth, std::string* path) {
    if (!enter(depth, *path)) return false;
    out->kind_ = JsonKind::kObject;
    ++pos_;  // '{'
    skip_whitespace();
    if (!at_end() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    const std::size_t path_len = path->size();
    for (;;) {
      if (at_end()) {
        set_error("json is truncated", "unexpected end of input, expected a member name", *path);
        return false;
      }
      if (text_[pos_] != '"') {
        set_error("json syntax error", "expected a string member name", *path);
        return false;
      }
      std::string key;
      if (!parse_string(&key, *path)) return false;
      // Small objects check duplicates as they go; large ones sort once at the end, so a document
      // of many keys stays O(n log n).
      if (out->members_.size() < kLinearKeyCheck) {
        for (const JsonValue::Member& m : out->members_) {
          if (m.first == key) {
            set_error("json has a duplicate key", ("duplicate key \"" + key + "\"").c_str(), *path);
            return false;
          }
        }
      }
      skip_whitespace();
      if (at_end()) {
        set_error("json is truncated", "unexpected end of input, expected ':'", *path);
        return false;
      }
      if (text_[pos_] != ':') {
        set_error("json syntax error", "expected ':' after a member name", *path);
        return false;
      }
      ++pos_;
      skip_whitespace();
      *path += '.';
      *path += key;
      out->members_.emplace_back(std::move(key), JsonValue());
      if (!parse_value(&out->members_.back().second, depth + 1, path)) return false;
      path->resize(path_len);
      skip_whitespace();
      if (at_end()) {
        set_error("json is truncated", "unexpected end of input inside an object", *path);
        return false;
      }
      const char c = text_[pos_++];
      if (c == '}') return check_duplicate_keys(*out, *path);
      if (c != ',') {
        --pos_;
        set_error("json syntax error", "expected ',' or '}' in an object", *path);
        return false;
      }
      skip_whitespace();
    }
  }

  static constexpr std::size_t kLinearKeyCheck = 16;

  bool check_duplicate_keys(const JsonValue& object, const std::string& path) {
    const std::vector<JsonValue::Member>& members = object.members_;
    if (members.size() <= kLinearKeyCheck) return true;
    std::vector<std::size_t> order(members.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return members[a].first < members[b].first || (members[a].first == members[b].first && a < b);
    });
    for (std::size_t i = 1; i < order.size(); ++i) {
      if (members[order[i]].first != members[order[i - 1]].first) continue;
      // Report the later occurrence, at its value (the parser has moved past it).
      const std::size_t later = order[i];
      pos_ = members[later].second.position_.offset;
      set_error("json has a duplicate key", ("duplicate key \"" + members[later].first + "\"").c_str(), path);
      return false;
    }
    return true;
  }

  bool parse_number(JsonValue* out, const std::string& path) {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    auto bad = [&](const char* what) {
      set_error(at_end() ? "json is truncated" : "json number is malformed", what, path);
      return false;
    };
    if (text_[pos_] == '-') ++pos_;
    if (at_end() || !(text_[pos_] >= '0' && text_[pos_] <= '9')) return bad("a number needs digits");
    if (text_[pos_] == '0') {
      ++pos_;
      if (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') return bad("a number has a leading zero");
    } else {
      digits();
    }
    bool integral = true;
    if (!at_end() && text_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) return bad("a number needs digits after '.'");
    }
    if (!at_end() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (!at_end() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (digits() == 0) return bad("a number needs digits in its exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    out->kind_ = JsonKind::kNumber;
    if (integral) {
      std::int64_t i = 0;
      const auto r = std::from_chars(first, last, i);
      if (r.ec == std::errc() && r.ptr == last) {
        out->integer_ = i;
        out->is_integer_ = true;
        out->number_ = static_cast<double>(i);
        return true;
      }
    }
    double d = 0.0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Underflow to zero is harmless; overflow to infinity has no double. strtod tells them apart
      // (it runs only on this rare path; JSON numbers never contain a locale's decimal comma).
      const double probe = std::strtod(std::string(first, last).c_str(), nullptr);
      if (std::fabs(probe) != HUGE_VAL) {
        out->number_ = probe;
        return true;
      }
      set_error("json number is out of range", "number out of the range of a double", path);
      return false;
    }
    if (r.ec != std::errc() || r.ptr != last) return bad("malformed number");
    out->number_ = d;
    return true;
  }
  bool parse_hex4(unsigned* out) {
    if (text_.size() - pos_ < 4) {
      pos_ = text_.size();
      return false;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else return false;
      ++pos_;
    }
    *out = v;
    return true;
  }

  static void append_utf8(std::string* s, unsigned cp) {
    if (cp < 0x80) {
      *s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *s += static_cast<char>(0xC0 | (cp >> 6));
      *s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *s += static_cast<char>(0xE0 | (cp >> 12));
      *s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *s += static_cast<char>(0xF0 | (cp >> 18));
      *s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Length of the valid UTF-8 sequence starting at pos_ (2..4 bytes), or 0 (overlong forms,
  // surrogates and code points above U+10FFFF are invalid).
  std::size_t utf8_sequence_length() const {
    const unsigned char c0 = peek();
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
    else if (c0 >= 0xE0 && c0 <= 0xEF) { n = 3; if (c0 == 0xE0) lo = 0xA0; if (c0 == 0xED) hi = 0x9F; }
    else if (c0 >= 0xF0 && c0 <= 0xF4) { n = 4; if (c0 == 0xF0) lo = 0x90; if (c0 == 0xF4) hi = 0x8F; }
    else return 0;
    if (text_.size() - pos_ < n) return 0;
    for (std::size_t i = 1; i < n; ++i) {
      const unsigned c = static_cast<unsigned char>(text_[pos_ + i]);
      if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) return 0;
    }
    return n;
  }

  bool parse_string(std::string* out, const std::string& path) {
    ++pos_;  // opening quote
    for (;;) {
      if (at_end()) {
        set_error("json is truncated", "unterminated string", path);
        return false;
      }
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) {
        set_error("json string is malformed", "unescaped control character in a string", path);
        return false;
      }
      if (c == '\\') {
        ++pos_;
        if (at_end()) {
          set_error("json is truncated", "unterminated escape", path);
          return false;
        }
        const char e = text_[pos_++];
        switch (e) {
          case '"': *out += '"'; break;
          case '\\': *out += '\\'; break;
          case '/': *out += '/'; break;
          case 'b': *out += '\b'; break;
          case 'f': *out += '\f'; break;
          case 'n': *out += '\n'; break;
          case 'r': *out += '\r'; break;
          case 't': *out += '\t'; break;
          case 'u': {
            unsigned cp = 0;
            if (!parse_hex4(&cp)) {
              set_error(at_end() ? "json is truncated" : "json string is malformed", "\\u needs four hex digits", path);
              return false;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
              set_error("json string is malformed", "unpaired low surrogate in \\u escape", path);
              return false;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              unsigned low = 0;
              if (text_.substr(pos_, 2) != "\\u" || (pos_ += 2, !parse_hex4(&low)) || low < 0xDC00 || low > 0xDFFF) {
                set_error(at_end() ? "json is truncated" : "json string is malformed", "high surrogate not followed by a low surrogate", path);
                return false;
              }
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            --pos_;
            set_error("json string is malformed", "invalid escape character", path);
            return false;
        }
        continue;
      }
      if (c < 0x80) {
        *out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      const std::size_t n = utf8_sequence_length();
      if (n == 0) {
        set_error("json string is malformed", "invalid UTF-8 in a string", path);
        return false;
      }
      out->append(text_.data() + pos_, n);
      pos_ += n;
    }
  }

  std::string_view text_;
  JsonLimits limits_;
  std::size_t pos_ = 0;
  // Incremental line counting for here(); positions only move forward.
  mutable std::size_t line_scan_ = 0;
  mutable std::size_t line_start_ = 0;
  mutable int line_ = 1;
  const char* error_detail_ = nullptr;
  std::string error_message_;
};

// Parses one JSON document. On failure returns kParseError (the detail names the kind of problem)
// and, if `error` is given, a message naming the position and path. Linear in the input size.
inline Status parse_json(std::string_view text, JsonValue* out, std::string* error = nullptr, JsonLimits limits = {}) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "json output value");
  *out = JsonValue();
  return JsonParser(text, limits).parse(out, error);
}

// Reads a whole file (refusing files above the size limit before reading them) and parses it.
inline Status read_json_file(const std::string& path, JsonValue* out, std::string* error = nullptr, JsonLimits limits = {}) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "json output value");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    if (error) *error = path + ": cannot open";
    return Status(StatusCode::kIoError, "cannot open the json file");
  }
  std::string text;
  char buffer[1 << 16];
  std::size_t n = 0;
  bool too_large = false;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    if (text.size() + n > limits.max_bytes) {
      too_large = true;
      break;
    }
    text.append(buffer, n);
  }
  const bool read_error = std::ferror(file) != 0;
  std::fclose(file);
  if (too_large) {
    if (error) *error = path + ": larger than the json size limit of " + std::to_string(limits.max_bytes) + " bytes";
    return Status(StatusCode::kParseError, "json document exceeds the size limit");
  }
  if (read_error) {
    if (error) *error = path + ": read error";
    return Status(StatusCode::kIoError, "cannot read the json file");
  }
  const Status status = parse_json(text, out, error, limits);
  if (!status.ok() && error) *error = path + ": " + *error;
  return status;
}

// Appends a number: integers exactly, other doubles in the shortest text that reads back to the
// same value. NaN and infinity have no JSON form (kInvalidValue).
inline Status write_json_number(const JsonValue& v, std::string* out) {
  char buf[32];
  std::int64_t i = 0;
  if (v.as_int(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(), &i)) {
    const auto r = std::to_chars(buf, buf + sizeof buf, i);
    out->append(buf, r.ptr);
    return Status::success();
  }
  if (!std::isfinite(v.as_double())) return Status(StatusCode::kInvalidValue, "json cannot represent NaN or infinity");
  const auto r = std::to_chars(buf, buf + sizeof buf, v.as_double());
  out->append(buf, r.ptr);
  return Status::success();
}

// Typed field access for schema readers built on JsonValue (policy files, similarity files, trace
// manifests). Each check returns kParseError and fills *error with where and what:
// "line 4, column 10 (byte 52) at $.selection.k: expected an integer in [1, 1048576], got 0".
// The static Status detail says which kind of problem it is.

inline Status json_field_error(const JsonValue& at, const std::string& path, const std::string& what, std::string* error,
                               const char* detail = "json field is invalid") {
  if (error) *error = to_string(at.position()) + " at " + path + ": " + what;
  return Status(StatusCode::kParseError, detail);
}

// The member `key` of `object` (at `path`), which must exist and be of `kind`.
inline Status json_require(const JsonValue& object, const std::string& path, const char* key, JsonKind kind, const JsonValue** out,
                           std::string* error) {
  if (!object.is_object()) return json_field_error(object, path, std::string("expected an object, got ") + to_string(object.kind()), error, "json field has the wrong type");
  const JsonValue* v = object.find(key);
  if (v == nullptr) return json_field_error(object, path, std::string("missing required field \"") + key + "\"", error, "json field is missing");
  if (v->kind() != kind)
    return json_field_error(*v, path + "." + key, std::string("expected ") + (kind == JsonKind::kArray || kind == JsonKind::kObject ? "an " : "a ") + to_string(kind) + ", got " + to_string(v->kind()),
                            error, "json field has the wrong type");
  *out = v;
  return Status::success();
}

// Like json_require, but an absent member gives success with *out = nullptr.
inline Status json_optional(const JsonValue& object, const std::string& path, const char* key, JsonKind kind, const JsonValue** out,
                            std::string* error) {
  *out = nullptr;
  if (object.is_object() && object.find(key) == nullptr) return Status::success();
  return json_require(object, path, key, kind, out, error);
}

// `v` must be an integer number in [lo, hi].
inline Status json_integer(const JsonValue& v, const std::string& path, std::int64_t lo, std::int64_t hi, std::int64_t* out, std::string* error) {
  if (!v.is_number()) return json_field_error(v, path, std::string("expected an integer, got ") + to_string(v.kind()), error, "json field has the wrong type");
  if (!v.as_int(lo, hi, out)) {
    std::string got;
    write_json_number(v, &got);
    return json_field_error(v, path, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + got, error,
                            "json field is out of range");
  }
  return Status::success();
}

// `v` must be a number in [lo, hi].
inline Status json_number(const JsonValue& v, const std::string& path, double lo, double hi, double* out, std::string* error) {
  if (!v.is_number()) return json_field_error(v, path, std::string("expected a number, got ") + to_string(v.kind()), error, "json field has the wrong type");
  if (!(v.as_double() >= lo && v.as_double() <= hi)) {
    std::string range, got;
    write_json_number(JsonValue::number(lo), &range);
    range += ", ";
    write_json_number(JsonValue::number(hi), &range);
    write_json_number(v, &got);
    return json_field_error(v, path, "expected a number in [" + range + "], got " + got, error, "json field is out of range");
  }
  *out = v.as_double();
  return Status::success();
}

// Every member of `object` must be one of `keys`: a misspelt field is an error, not a silent default.
inline Status json_only_keys(const JsonValue& object, const std::string& path, std::initializer_list<std::string_view> keys, std::string* error) {
  for (const JsonValue::Member& m : object.members()) {
    bool known = false;
    for (std::string_view k : keys) known = known || m.first == k;
    if (!known) return json_field_error(m.second, path + "." + m.first, "unknown field \"" + m.first + "\"", error, "json field is unknown");
  }
  return Status::success();
}

namespace detail {

inline void write_json_string(const std::string& s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  *out += '"';
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          *out += "\\u00";
          *out += kHex[c >> 4];
          *out += kHex[c & 15];
        } else {
          *out += ch;
        }
    }
  }
  *out += '"';
}

// Arrays and objects of scalars stay on one line (matrix rows read as rows, a policy layer as
// {"kind": "Reuse", "source": 1}); containers of containers are indented.
inline Status write_json_value(const JsonValue& v, int indent, int level, std::string* out) {
  auto newline = [&](int lvl) {
    if (indent <= 0) return;
    *out += '\n';
    out->append(static_cast<std::size_t>(indent * lvl), ' ');
  };
  switch (v.kind()) {
    case JsonKind::kNull: *out += "null"; return Status::success();
    case JsonKind::kBool: *out += v.as_bool() ? "true" : "false"; return Status::success();
    case JsonKind::kNumber: return write_json_number(v, out);
    case JsonKind::kString: write_json_string(v.as_string(), out); return Status::success();
    case JsonKind::kArray: {
      bool scalars = true;
      for (const JsonValue& item : v.items()) scalars = scalars && !item.is_array() && !item.is_object();
      *out += '[';
      for (std::size_t k = 0; k < v.items().size(); ++k) {
        if (k) *out += scalars && indent > 0 ? ", " : ",";
        if (!scalars) newline(level + 1);
        HYLRA_RETURN_IF_ERROR(write_json_value(v.items()[k], indent, level + 1, out));
      }
      if (!scalars && !v.items().empty()) newline(level);
      *out += ']';
      return Status::success();
    }
    case JsonKind::kObject: {
      bool scalars = true;
      for (const JsonValue::Member& m : v.members()) scalars = scalars && !m.second.is_array() && !m.second.is_object();
      *out += '{';
      for (std::size_t k = 0; k < v.members().size(); ++k) {
        if (k) *out += scalars && indent > 0 ? ", " : ",";
        if (!scalars) newline(level + 1);
        write_json_string(v.members()[k].first, out);
        *out += indent > 0 ? ": " : ":";
        HYLRA_RETURN_IF_ERROR(write_json_value(v.members()[k].second, indent, level + 1, out));
      }
      if (!scalars && !v.members().empty()) newline(level);
      *out += '}';
      return Status::success();
    }
  }
  return Status(StatusCode::kInvalidValue, "json value of unknown kind");
}

}  // namespace detail

// Writes `value` as JSON text (indent 0: one line). Numbers are written so they read back to the
// same double; NaN and infinity have no JSON form and give kInvalidValue.
inline Status write_json(const JsonValue& value, std::string* out, int indent = 2) {
  if (out == nullptr) return Status(StatusCode::kNullPointer, "json output text");
  out->clear();
  HYLRA_RETURN_IF_ERROR(detail::write_json_value(value, indent, 0, out));
  if (indent > 0) *out += '\n';
  return Status::success();
}

}  // namespace io
HYLRA_NAMESPACE_END
