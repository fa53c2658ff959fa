// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0), so traces captured
// from a real model in Python load unchanged and hylra's outputs open in numpy.
//
// Little-endian, C-order arrays of f2, f4, f8, i4, i8 and u1 elements. Parsing is strict and
// bounded: a truncated, oversized or malformed file gives a kParseError naming what is wrong,
// never a crash, a hang or an allocation larger than the file.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "hylra/core/dtype.hpp"
#include "hylra/core/status.hpp"

HYLRA_NAMESPACE_BEGIN
namespace io {

enum class NpyType : int { kFloat16, kFloat32, kFloat64, kInt32, kInt64, kUInt8 };

constexpr int npy_item_size(NpyType type) {
  switch (type) {
    case NpyType::kFloat16: return 2;
    case NpyType::kFloat32: return 4;
    case NpyType::kFloat64: return 8;
    case NpyType::kInt32: return 4;
    case NpyType::kInt64: return 8;
    case NpyType::kUInt8: return 1;
  }
  return 0;
}

constexpr const char* npy_descr(NpyType type) {
  switch (type) {
    case NpyType::kFloat16: return "<f2";
    case NpyType::kFloat32: return "<f4";
    case NpyType::kFloat64: return "<f8";
    case NpyType::kInt32: return "<i4";
    case NpyType::kInt64: return "<i8";
    case NpyType::kUInt8: return "|u1";
  }
  return "";
}

struct NpyArray {
  NpyType type = NpyType::kFloat32;
  std::vector<std::int64_t> shape;  // empty for a 0-d array (one element)
  std::vector<unsigned char> bytes;  // little-endian elements, C order

  // Zero when any extent is zero (such a shape may hold huge extents beside the zero); otherwise the
  // product, which parse_npy has bounded by the bytes present.
  std::int64_t num_elements() const {
    for (std::int64_t extent : shape)
      if (extent == 0) return 0;
    std::int64_t n = 1;
    for (std::int64_t extent : shape) n *= extent;
    return n;
  }
};

namespace detail {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr std::size_t kMaxHeaderBytes = 1 << 16;
constexpr int kMaxDims = 32;

inline bool host_is_little_endian() {
  const std::uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

inline void skip_spaces(const std::string& s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
}

// The value text that follows `'key':` in the header dict, or npos.
inline std::size_t find_key_value(const std::string& header, const char* key) {
  const std::string quoted = std::string("'") + key + "'";
  std::size_t i = header.find(quoted);
  if (i == std::string::npos) return i;
  i += quoted.size();
  skip_spaces(header, i);
  if (i >= header.size() || header[i] != ':') return std::string::npos;
  ++i;
  skip_spaces(header, i);
  return i;
}

inline Status parse_descr(const std::string& header, NpyType* type) {
  std::size_t i = find_key_value(header, "descr");
  if (i == std::string::npos || i >= header.size() || header[i] != '\'')
    return {StatusCode::kParseError, "npy: header has no 'descr' string"};
  const std::size_t end = header.find('\'', i + 1);
  if (end == std::string::npos) return {StatusCode::kParseError, "npy: unterminated 'descr'"};
  const std::string descr = header.substr(i + 1, end - i - 1);
  for (NpyType t : {NpyType::kFloat16, NpyType::kFloat32, NpyType::kFloat64, NpyType::kInt32, NpyType::kInt64,
                    NpyType::kUInt8}) {
    if (descr == npy_descr(t) || (t == NpyType::kUInt8 && descr == "<u1")) {
      *type = t;
      return Status::success();
    }
  }
  return {StatusCode::kNotSupported, "npy: 'descr' (supported: <f2 <f4 <f8 <i4 <i8 |u1)"};
}

inline Status parse_fortran_order(const std::string& header) {
  const std::size_t i = find_key_value(header, "fortran_order");
  if (i == std::string::npos) return {StatusCode::kParseError, "npy: header has no 'fortran_order'"};
  if (header.compare(i, 5, "False") == 0) return Status::success();
  if (header.compare(i, 4, "True") == 0) return {StatusCode::kNotSupported, "npy: 'fortran_order' True"};
  return {StatusCode::kParseError, "npy: 'fortran_order' is neither True nor False"};
}

inline Status parse_shape(const std::string& header, std::vector<std::int64_t>* shape) {
  std::size_t i = find_key_value(header, "shape");
  if (i == std::string::npos || i >= header.size() || header[i] != '(')
    return {StatusCode::kParseError, "npy: header has no 'shape' tuple"};
  ++i;
  shape->clear();
  for (;;) {
    skip_spaces(header, i);
    if (i >= header.size()) return {StatusCode::kParseError, "npy: unterminated 'shape'"};
    if (header[i] == ')') return Status::success();
    if (header[i] < '0' || header[i] > '9') return {StatusCode::kParseError, "npy: 'shape' entry is not a number"};
    std::int64_t extent = 0;
    while (i < header.size() && header[i] >= '0' && header[i] <= '9') {
      if (extent > (std::numeric_limits<std::int64_t>::max() - 9) / 10)
        return {StatusCode::kParseError, "npy: 'shape' entry overflows"};
      extent = extent * 10 + (header[i++] - '0');
    }
    if (static_cast<int>(shape->size()) == kMaxDims) return {StatusCode::kParseError, "npy: 'shape' has too many dims"};
    shape->push_back(extent);
    skip_spaces(header, i);
    if (i < header.size() && header[i] == ',') ++i;
    else if (i < header.size() && header[i] != ')') return {StatusCode::kParseError, "npy: 'shape' entries need commas"};
  }
}

}  // namespace detail

// Parses a whole .npy file held in memory.
inline Status parse_npy(const unsigned char* data, std::size_t size, NpyArray* out) {
  if (!detail::host_is_little_endian()) return {StatusCode::kNotSupported, "npy: big-endian host"};
  if (size < 10 || std::memcmp(data, detail::kNpyMagic, 6) != 0)
    return {StatusCode::kParseError, "npy: missing magic string"};
  const int major = data[6];
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = data[8] | (static_cast<std::size_t>(data[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return {StatusCode::kParseError, "npy: truncated header length"};
    header_len = data[8] | (static_cast<std::size_t>(data[9]) << 8) | (static_cast<std::size_t>(data[10]) << 16) |
                 (static_cast<std::size_t>(data[11]) << 24);
    offset = 12;
  } else {
    return {StatusCode::kNotSupported, "npy: format version (supported: 1, 2, 3)"};
  }
  if (header_len > detail::kMaxHeaderBytes) return {StatusCode::kParseError, "npy: header longer than 64 KiB"};
  if (size - offset < header_len) return {StatusCode::kParseError, "npy: truncated header"};
  const std::string header(reinterpret_cast<const char*>(data + offset), header_len);
  offset += header_len;

  NpyArray array;
  HYLRA_RETURN_IF_ERROR(detail::parse_descr(header, &array.type));
  HYLRA_RETURN_IF_ERROR(detail::parse_fortran_order(header));
  HYLRA_RETURN_IF_ERROR(detail::parse_shape(header, &array.shape));

  // Count elements against the bytes present, so a huge declared shape never allocates.
  const std::size_t item = npy_item_size(array.type);
  const std::size_t available = size - offset;
  std::size_t count = 1;
  bool empty = false;
  for (std::int64_t extent : array.shape) empty = empty || extent == 0;
  if (!empty) {
    for (std::int64_t extent : array.shape) {
      if (static_cast<std::size_t>(extent) > available / item / count)
        return {StatusCode::kParseError, "npy: data shorter than 'shape' declares"};
      count *= static_cast<std::size_t>(extent);
    }
  } else {
    count = 0;
  }
  if (count * item != available) {
    return {StatusCode::kParseError,
            count * item > available ? "npy: data shorter than 'shape' declares" : "npy: data longer than 'shape' declares"};
  }
  array.bytes.assign(data + offset, data + size);
  *out = std::move(array);
  return Status::success();
}

inline Status read_npy(const std::string& path, NpyArray* out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return {StatusCode::kIoError, "npy: cannot open file"};
  const std::vector<unsigned char> contents((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) return {StatusCode::kIoError, "npy: read failed"};
  return parse_npy(contents.data(), contents.size(), out);
}

// Writes `data` (num_elements(shape) elements of `type`, C order) as a version 1.0 file.
inline Status write_npy(const std::string& path, NpyType type, const std::vector<std::int64_t>& shape, const void* data) {
  std::string dims;
  std::int64_t count = 1;
  for (std::int64_t extent : shape) {
    if (extent < 0) return {StatusCode::kInvalidShape, "npy: negative extent"};
    dims += (dims.empty() ? "" : ", ") + std::to_string(extent);
    count *= extent;
  }
  if (shape.size() == 1) dims += ',';  // Python's one-element tuple "(3,)"
  std::string header = std::string("{'descr': '") + npy_descr(type) + "', 'fortran_order': False, 'shape': (" + dims;
  header += "), }";
  // Pad with spaces so the data starts 64-byte aligned; the header ends in a newline.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) return {StatusCode::kInvalidShape, "npy: header too long for format 1.0"};

  std::ofstream file(path, std::ios::binary);
  if (!file) return {StatusCode::kIoError, "npy: cannot create file"};
  const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                      static_cast<unsigned char>(header.size() & 0xff),
                                      static_cast<unsigned char>(header.size() >> 8)};
  file.write(reinterpret_cast<const char*>(preamble), sizeof(preamble));
  file.write(header.data(), static_cast<std::streamsize>(header.size()));
  file.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * npy_item_size(type)));
  return file.good() ? Status::success() : Status(StatusCode::kIoError, "npy: write failed");
}

// The elements of `array` converted to float (from f2, f4 or f8) — how traces are consumed.
inline Status to_float_vector(const NpyArray& array, std::vector<float>* out) {
  const std::int64_t n = array.num_elements();
  out->resize(static_cast<std::size_t>(n));
  const unsigned char* src = array.bytes.data();
  for (std::int64_t i = 0; i < n; ++i) {
    switch (array.type) {
      case NpyType::kFloat16: {
        half h;
        std::memcpy(&h, src + 2 * i, 2);
        (*out)[i] = DTypeTraits<half>::to_float(h);
        break;
      }
      case NpyType::kFloat32: std::memcpy(&(*out)[i], src + 4 * i, 4); break;
      case NpyType::kFloat64: {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        (*out)[i] = static_cast<float>(d);
        break;
      }
      default: return {StatusCode::kNotSupported, "npy: expected a floating-point array"};
    }
  }
  return Status::success();
}

}  // namespace io
HYLRA_NAMESPACE_END
