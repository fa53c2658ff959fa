// A small deterministic random generator for synthetic data: the same seed gives the same numbers
// on every platform and standard library (std::normal_distribution does not promise that).
#pragma once

#include <cmath>
#include <cstdint>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  // SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one add and three xor-shift-multiplies.
  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n > 0.
  std::uint64_t below(std::uint64_t n) { return next_u64() % n; }
  // Standard normal by Box-Muller.
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t state_;
};

HYLRA_NAMESPACE_END
