// Top-k overlap and RNMSE against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "hylra/reference/metrics.hpp"

using namespace hylra;

TEST_CASE("topk_overlap counts common ids over k, ignoring padding and duplicates") {
  const std::vector<std::int32_t> a = {5, 1, 9, 3};
  CHECK(reference::topk_overlap(a.data(), a.data(), 4) == 1.0);
  const std::vector<std::int32_t> b = {3, 5, 8, 0};
  CHECK(reference::topk_overlap(a.data(), b.data(), 4) == 0.5);
  CHECK(reference::topk_overlap(b.data(), a.data(), 4) == 0.5);
  const std::vector<std::int32_t> padded = {5, -1, -1, -1};
  const std::vector<std::int32_t> also_padded = {-1, 5, -1, -1};
  CHECK(reference::topk_overlap(padded.data(), also_padded.data(), 4) == 0.25);  // -1 never matches -1
  const std::vector<std::int32_t> dup = {5, 5, 5, 5};
  CHECK(reference::topk_overlap(a.data(), dup.data(), 4) == 0.25);
  CHECK(reference::topk_overlap(a.data(), b.data(), 0) == 0.0);
}

TEST_CASE("rnmse is ||a-b||^2 / ||b||^2 with defined edge cases") {
  const std::vector<float> ref = {3.f, 4.f};    // ||b||^2 = 25
  const std::vector<float> out = {3.f, 3.f};    // ||a-b||^2 = 1
  CHECK(reference::rnmse(out.data(), ref.data(), 2) == doctest::Approx(0.04));
  CHECK(reference::rnmse(ref.data(), ref.data(), 2) == 0.0);
  const std::vector<double> zeros = {0.0, 0.0};
  CHECK(reference::rnmse(zeros.data(), zeros.data(), 2) == 0.0);
  CHECK(std::isinf(reference::rnmse(ref.data(), zeros.data(), 2)));
  const std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), 4.f};
  CHECK(std::isnan(reference::rnmse(nan.data(), ref.data(), 2)));
  CHECK(std::isnan(reference::rnmse(ref.data(), nan.data(), 2)));
}
