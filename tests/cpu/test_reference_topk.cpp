// The host top-k reference against a brute-force definition (count how many positions beat each
// one) on small random and adversarial rows, and block pooling against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "hylra/reference/topk.hpp"

using namespace hylra;

namespace {

// Selected set by definition: forced positions (lowest index first), then each free non-NaN
// position that fewer than the remaining slots of free positions beat.
std::set<int> brute_force(const std::vector<float>& s, int k, bool largest, int first, int last) {
  const int n = static_cast<int>(s.size());
  std::set<int> chosen;
  for (int i = 0; i < n && static_cast<int>(chosen.size()) < k; ++i)
    if (i < first || i >= n - last) chosen.insert(i);
  const int slots = k - static_cast<int>(chosen.size());
  const auto is_free = [&](int i) { return !(i < first || i >= n - last) && !std::isnan(s[i]); };
  for (int i = 0; i < n; ++i) {
    if (!is_free(i)) continue;
    int beaten_by = 0;
    for (int j = 0; j < n; ++j) {
      if (!is_free(j) || j == i) continue;
      const bool better = largest ? s[j] > s[i] : s[j] < s[i];
      if (better || (s[j] == s[i] && j < i)) ++beaten_by;
    }
    if (beaten_by < slots) chosen.insert(i);
  }
  return chosen;
}

void check_row(const std::vector<float>& s, int k, bool largest, int first = 0, int last = 0) {
  const auto out = reference::topk_row(s.data(), static_cast<int>(s.size()), k, largest, first, last);
  REQUIRE(static_cast<int>(out.size()) == k);
  const std::set<int> expect = brute_force(s, k, largest, first, last);
  std::set<int> got;
  for (int j = 0; j < k; ++j) {
    if (j < static_cast<int>(expect.size())) {
      REQUIRE(out[j] >= 0);
      got.insert(out[j]);
    } else {
      CHECK(out[j] == -1);
    }
  }
  CHECK(got == expect);
  for (int j = 1; j < static_cast<int>(expect.size()); ++j) {  // best first, NaN last
    const float a = s[out[j - 1]], b = s[out[j]];
    if (std::isnan(a)) CHECK(std::isnan(b));
    else if (!std::isnan(b)) CHECK((largest ? a >= b : a <= b));
  }
}

}  // namespace

TEST_CASE("topk_row matches the brute-force definition on random and adversarial rows") {
  std::mt19937 rng(1234);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 40);
    std::vector<float> s(n);
    const int flavour = trial % 5;
    for (int i = 0; i < n; ++i) {
      switch (flavour) {
        case 0: s[i] = std::normal_distribution<float>()(rng); break;
        case 1: s[i] = static_cast<float>(rng() % 3); break;  // many ties
        case 2: {
          const float pool[] = {inf, -inf, nan, 0.0f, -0.0f, 1.0f, -1.0f};
          s[i] = pool[rng() % 7];
          break;
        }
        case 3: s[i] = std::nextafter(1.0f, 2.0f * (rng() % 2)); break;  // last-bit differences
        default: s[i] = static_cast<float>(i % 4 == 0 ? n - i : i); break;
      }
    }
    const int k = 1 + static_cast<int>(rng() % (n + 3));
    const int first = trial % 3 == 0 ? static_cast<int>(rng() % 4) : 0;
    const int last = trial % 4 == 0 ? static_cast<int>(rng() % 4) : 0;
    CAPTURE(trial);
    check_row(s, k, trial % 2 == 0, first, last);
  }
}

TEST_CASE("topk_row tie, zero, NaN and padding rules on hand-made rows") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> ties = {2, 5, 5, 1, 5};
  CHECK(reference::topk_row(ties.data(), 5, 2) == std::vector<std::int32_t>{1, 2});
  const std::vector<float> zeros = {-0.0f, 0.0f, -1.0f};
  CHECK(reference::topk_row(zeros.data(), 3, 1) == std::vector<std::int32_t>{0});
  const std::vector<float> with_nan = {nan, 3, nan, 1};
  CHECK(reference::topk_row(with_nan.data(), 4, 4) == std::vector<std::int32_t>{1, 3, -1, -1});
  CHECK(reference::topk_row(with_nan.data(), 4, 2, false) == std::vector<std::int32_t>{3, 1});
  CHECK(reference::topk_row(with_nan.data(), 4, 3, true, 1, 0) == std::vector<std::int32_t>{1, 3, 0});
  CHECK(reference::topk_row(with_nan.data(), 0, 2) == std::vector<std::int32_t>{-1, -1});
}

TEST_CASE("pool_blocks takes max or sum over non-NaN tokens, partial last block included") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> s = {1, -2, nan, 4, nan, nan, inf, -inf, 3};
  const auto mx = reference::pool_blocks(s.data(), 9, 2, PoolOp::kMax);
  REQUIRE(mx.size() == 5);
  CHECK(mx[0] == 1);
  CHECK(mx[1] == 4);
  CHECK(std::isnan(mx[2]));
  CHECK(mx[3] == inf);
  CHECK(mx[4] == 3);
  const auto sum = reference::pool_blocks(s.data(), 9, 2, PoolOp::kSum);
  CHECK(sum[0] == -1);
  CHECK(sum[1] == 4);
  CHECK(std::isnan(sum[2]));
  CHECK(std::isnan(sum[3]));  // +inf + -inf
  CHECK(sum[4] == 3);
}
