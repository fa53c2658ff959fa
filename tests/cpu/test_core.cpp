// Status, dtype traits and runtime->compile-time dispatch.
#include <doctest/doctest.h>

#include <string>
#include <type_traits>

#include "hylra/core/dispatch.hpp"
#include "hylra/core/dtype.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"

using namespace hylra;

TEST_CASE("Status carries a code and names what is wrong") {
  constexpr Status ok;
  static_assert(ok.ok(), "a default Status is success");
  const Status bad(StatusCode::kInvalidValue, "k_max must be positive");
  CHECK_FALSE(bad.ok());
  CHECK(bad == StatusCode::kInvalidValue);
  CHECK(to_string(bad) == "invalid value: k_max must be positive");
  CHECK(to_string(Status::success()) == "success");
  for (int c = 0; c <= static_cast<int>(StatusCode::kCudaError); ++c)
    CHECK(std::string(to_string(static_cast<StatusCode>(c))) != "unknown status");
}

TEST_CASE("HYLRA_RETURN_IF_ERROR returns the first failure") {
  int calls = 0;
  auto step = [&](Status s) { ++calls; return s; };
  auto run = [&]() -> Status {
    HYLRA_RETURN_IF_ERROR(step(Status::success()));
    HYLRA_RETURN_IF_ERROR(step(Status(StatusCode::kNotSupported, "second")));
    HYLRA_RETURN_IF_ERROR(step(Status::success()));
    return Status::success();
  };
  const Status s = run();
  CHECK(s == StatusCode::kNotSupported);
  CHECK(std::string(s.detail()) == "second");
  CHECK(calls == 2);
}

TEST_CASE("cuda_status maps runtime errors to kCudaError with the error's name") {
  CHECK(cuda_status(cudaSuccess).ok());
  const Status s = cuda_status(cudaErrorInvalidValue);
  CHECK(s == StatusCode::kCudaError);
  CHECK(std::string(s.detail()) == "cudaErrorInvalidValue");
}

TEST_CASE("dtype traits convert and size") {
  CHECK(kVecElems<half> == 8);
  CHECK(kVecElems<__nv_bfloat16> == 8);
  CHECK(kVecElems<float> == 4);
  CHECK(size_of(DType::kFloat32) == 4);
  CHECK(size_of(DType::kBFloat16) == 2);
  CHECK(std::string(to_string(DType::kFloat16)) == "fp16");
  // 1.5 and -2.25 are exact in every format; 1/3 rounds to nearest in each.
  CHECK(to_float(from_float<half>(1.5f)) == 1.5f);
  CHECK(to_float(from_float<__nv_bfloat16>(-2.25f)) == -2.25f);
  CHECK(to_float(from_float<half>(1.0f / 3)) == doctest::Approx(1.0f / 3).epsilon(1e-3));
  CHECK(to_float(from_float<__nv_bfloat16>(1.0f / 3)) == doctest::Approx(1.0f / 3).epsilon(4e-3));
  CHECK(DTypeTraits<__nv_bfloat16>::kDType == DType::kBFloat16);
}

TEST_CASE("dispatch maps supported values onto compile-time constants") {
  for (int d : {64, 128, 256}) {
    int seen = 0;
    const Status s = dispatch_head_dim(d, [&](auto head_dim) {
      seen = decltype(head_dim)::value;
      return Status::success();
    });
    CHECK(s.ok());
    CHECK(seen == d);
  }
  for (int p : {1, 16, 32, 64, 128}) {
    int seen = 0;
    CHECK(dispatch_page_size(p, [&](auto page) { seen = decltype(page)::value; return Status::success(); }).ok());
    CHECK(seen == p);
  }
  int calls = 0;
  auto count = [&](auto) { ++calls; return Status::success(); };
  CHECK(dispatch_head_dim(96, count) == StatusCode::kNotSupported);
  CHECK(dispatch_page_size(8, count) == StatusCode::kNotSupported);
  CHECK(dispatch_page_size(0, count) == StatusCode::kNotSupported);
  CHECK(calls == 0);
  // The callee's Status is passed through.
  CHECK(dispatch_head_dim(128, [](auto) { return Status(StatusCode::kInvalidValue, "inner"); }) ==
        StatusCode::kInvalidValue);
}

TEST_CASE("dtype dispatch picks the storage type") {
  bool is_bf16 = false;
  CHECK(dispatch_half_dtype(DType::kBFloat16, [&](auto tag) {
          is_bf16 = std::is_same_v<typename decltype(tag)::type, __nv_bfloat16>;
          return Status::success();
        }).ok());
  CHECK(is_bf16);
  CHECK(dispatch_half_dtype(DType::kFloat32, [](auto) { return Status::success(); }) == StatusCode::kNotSupported);
  bool is_float = false;
  CHECK(dispatch_dtype(DType::kFloat32, [&](auto tag) {
          is_float = std::is_same_v<typename decltype(tag)::type, float>;
          return Status::success();
        }).ok());
  CHECK(is_float);
}
