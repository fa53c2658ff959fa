// .npy reading and writing: round trips, numpy's own header variants, and every parse error.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "hylra/io/npy.hpp"

using namespace hylra;
using io::NpyArray;
using io::NpyType;

namespace {

std::vector<unsigned char> npy_bytes(const std::string& header, int major = 1, std::size_t data_bytes = 0) {
  std::vector<unsigned char> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  const std::size_t len = header.size();
  bytes.push_back(len & 0xff);
  bytes.push_back((len >> 8) & 0xff);
  if (major >= 2) {
    bytes.push_back((len >> 16) & 0xff);
    bytes.push_back((len >> 24) & 0xff);
  }
  bytes.insert(bytes.end(), header.begin(), header.end());
  for (std::size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<unsigned char>(i * 7));
  return bytes;
}

Status parse(const std::vector<unsigned char>& bytes, NpyArray* out) { return io::parse_npy(bytes.data(), bytes.size(), out); }

std::string temp_path(const char* name) { return std::string("/tmp/hylra_test_") + name; }

}  // namespace

TEST_CASE("npy round trip for every element type and rank") {
  const std::vector<float> f = {1.5f, -2.f, 3.25f, 0.f, -0.f, 1e-30f};
  NpyArray back;
  for (auto shape : {std::vector<std::int64_t>{6}, std::vector<std::int64_t>{2, 3}, std::vector<std::int64_t>{1, 2, 3}}) {
    REQUIRE(io::write_npy(temp_path("f32.npy"), NpyType::kFloat32, shape, f.data()).ok());
    REQUIRE(io::read_npy(temp_path("f32.npy"), &back).ok());
    CHECK(back.type == NpyType::kFloat32);
    CHECK(back.shape == shape);
    std::vector<float> values;
    REQUIRE(io::to_float_vector(back, &values).ok());
    CHECK(values == f);
  }
  const std::vector<double> d = {0.1, -1e300};
  REQUIRE(io::write_npy(temp_path("f64.npy"), NpyType::kFloat64, {2}, d.data()).ok());
  REQUIRE(io::read_npy(temp_path("f64.npy"), &back).ok());
  std::vector<float> as_float;
  REQUIRE(io::to_float_vector(back, &as_float).ok());
  CHECK(as_float[0] == 0.1f);
  const std::vector<std::int32_t> ints = {-1, 7, 1 << 30};
  REQUIRE(io::write_npy(temp_path("i32.npy"), NpyType::kInt32, {3, 1}, ints.data()).ok());
  REQUIRE(io::read_npy(temp_path("i32.npy"), &back).ok());
  CHECK(back.type == NpyType::kInt32);
  CHECK(io::to_float_vector(back, &as_float) == StatusCode::kNotSupported);
  // Zero-sized and 0-d arrays.
  REQUIRE(io::write_npy(temp_path("empty.npy"), NpyType::kFloat32, {0, 4}, nullptr).ok());
  REQUIRE(io::read_npy(temp_path("empty.npy"), &back).ok());
  CHECK(back.num_elements() == 0);
  REQUIRE(io::write_npy(temp_path("scalar.npy"), NpyType::kFloat32, {}, f.data()).ok());
  REQUIRE(io::read_npy(temp_path("scalar.npy"), &back).ok());
  CHECK(back.shape.empty());
  CHECK(back.num_elements() == 1);
}

TEST_CASE("npy headers as numpy writes them parse; the data starts 64-byte aligned") {
  NpyArray a;
  // numpy 1.x style, with padding and a trailing newline; half precision.
  std::string header = "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }";
  header += std::string(128 - 10 - header.size() - 1, ' ') + "\n";
  auto bytes = npy_bytes(header, 1, 6);
  bytes[bytes.size() - 6] = 0x00; bytes[bytes.size() - 5] = 0x3c;  // 1.0 in fp16
  REQUIRE(parse(bytes, &a).ok());
  std::vector<float> v;
  REQUIRE(io::to_float_vector(a, &v).ok());
  CHECK(v[0] == 1.0f);
  // Version 2.0 with a 4-byte header length; keys in another order.
  REQUIRE(parse(npy_bytes("{'shape': (2, 2), 'fortran_order': False, 'descr': '<i8'}\n", 2, 32), &a).ok());
  CHECK(a.type == NpyType::kInt64);
  CHECK(a.shape == std::vector<std::int64_t>{2, 2});
  std::FILE* file = std::fopen(temp_path("f32.npy").c_str(), "rb");
  REQUIRE(file != nullptr);
  unsigned char pre[10];
  REQUIRE(std::fread(pre, 1, 10, file) == 10);
  std::fclose(file);
  CHECK((10 + (pre[8] | (pre[9] << 8))) % 64 == 0);
}

TEST_CASE("npy parse errors are named, never crash") {
  NpyArray a;
  auto expect = [&](const std::vector<unsigned char>& bytes, StatusCode code, const char* what) {
    const Status s = parse(bytes, &a);
    CHECK(s == code);
    CHECK(std::string(s.detail()).find(what) != std::string::npos);
  };
  const std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  expect({}, StatusCode::kParseError, "magic");
  expect({'N', 'U', 'M', 'P', 'Y', 0, 0, 0, 0, 0, 0}, StatusCode::kParseError, "magic");
  expect(npy_bytes(good, 4, 24), StatusCode::kNotSupported, "version");
  auto truncated = npy_bytes(good, 1, 24);
  truncated.resize(20);
  expect(truncated, StatusCode::kParseError, "truncated header");
  expect(npy_bytes(good, 1, 23), StatusCode::kParseError, "shorter");
  expect(npy_bytes(good, 1, 25), StatusCode::kParseError, "longer");
  expect(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 1, 4), StatusCode::kNotSupported, "descr");
  expect(npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 1, 8), StatusCode::kNotSupported, "descr");
  expect(npy_bytes("{'fortran_order': False, 'shape': (1,), }", 1, 4), StatusCode::kParseError, "descr");
  expect(npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", 1, 4), StatusCode::kNotSupported, "descr");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", 1, 4), StatusCode::kNotSupported, "fortran");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 1, 4), StatusCode::kParseError, "fortran");
  expect(npy_bytes("{'descr': '<f4', 'shape': (1,), }", 1, 4), StatusCode::kParseError, "fortran");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", 1, 4), StatusCode::kParseError, "shape");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", 1, 8), StatusCode::kParseError, "commas");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 1, 4), StatusCode::kParseError, "number");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", 1, 0), StatusCode::kParseError, "unterminated");
  expect(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 1, 4),
         StatusCode::kParseError, "overflow");
  // A huge declared shape is rejected against the bytes present, without allocating it.
  expect(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", 1, 16),
         StatusCode::kParseError, "shorter");
  // An empty array may declare huge extents beside its zero; counting them must not overflow.
  REQUIRE(parse(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 0), }"),
                &a).ok());
  CHECK(a.num_elements() == 0);
  CHECK(io::read_npy("/nonexistent/dir/x.npy", &a) == StatusCode::kIoError);
  CHECK(io::write_npy("/nonexistent/dir/x.npy", NpyType::kFloat32, {1}, good.data()) == StatusCode::kIoError);
}
