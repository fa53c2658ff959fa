// How token scores are pooled into one score per block of tokens (block-granular selection).
#pragma once

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

// Both ignore NaN tokens; a block whose tokens are all NaN pools to NaN and is never selected.
enum class PoolOp : int {
  kMax,  // the block's largest token score
  kSum,  // the sum of the block's token scores (fp32 accumulation on the GPU)
};

constexpr const char* to_string(PoolOp op) { return op == PoolOp::kMax ? "max" : "sum"; }

HYLRA_NAMESPACE_END
