// BlockPooling<ScoreT>: token scores [R, N] -> one fp32 score per block of B tokens, B in
// {16, 32, 64, 128}, by max or sum (PoolOp) over the block's non-NaN tokens. Feeding the pooled
// scores and pooled lengths to BatchedTopK<float> selects block ids in the IndexList contract
// (block_size = B). Memory-bound: every score is read once with 16-byte loads, the lanes that
// share a block combine through warp shuffles.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "hylra/core/dispatch.hpp"
#include "hylra/core/dtype.hpp"
#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"
#include "hylra/core/vec.cuh"
#include "hylra/topk/pooling_op.hpp"

HYLRA_NAMESPACE_BEGIN

using SupportedPoolBlockSizes = IntSet<16, 32, 64, 128>;

template <typename ScoreT>
struct BlockPoolingArguments {
  const ScoreT* scores = nullptr;          // [num_rows, row_stride], 16-byte aligned rows
  std::int64_t row_stride = 0;             // elements; a multiple of 16 bytes
  int num_rows = 0;
  int num_cols = 0;                        // N tokens in the longest row
  const std::int32_t* lengths = nullptr;   // [num_rows] tokens per row, clamped to [0, N]; null = N
  int block_size = 0;                      // B
  PoolOp op = PoolOp::kMax;
  float* pooled = nullptr;                 // [num_rows, pooled_stride] out; blocks past a row's end: NaN
  std::int64_t pooled_stride = 0;          // >= ceil(N / B)
  std::int32_t* pooled_lengths = nullptr;  // [num_rows] out, optional: ceil(length / B)
};

namespace detail {

// A partial pool: `any` is false until a non-NaN token was seen.
struct PoolState {
  float value;
  bool any;
};

HYLRA_DEVICE PoolState combine(PoolState a, PoolState b, PoolOp op) {
  if (!a.any) return b;
  if (!b.any) return a;
  return {op == PoolOp::kMax ? fmaxf(a.value, b.value) : a.value + b.value, true};
}

constexpr int kPoolThreads = 256;

template <typename ScoreT, int BLOCK_SIZE>
__global__ void __launch_bounds__(kPoolThreads) block_pooling_kernel(const BlockPoolingArguments<ScoreT> args) {
  constexpr int kVec = kVecElems<ScoreT>;
  constexpr int kLanesPerBlock = BLOCK_SIZE / kVec;
  static_assert(kLanesPerBlock >= 1 && kLanesPerBlock <= 32, "a block spans one to 32 lanes");
  const int row = blockIdx.y;
  int length = args.lengths ? args.lengths[row] : args.num_cols;
  length = length < 0 ? 0 : (length > args.num_cols ? args.num_cols : length);
  const ScoreT* const scores = args.scores + static_cast<std::int64_t>(row) * args.row_stride;
  const int first = (blockIdx.x * kPoolThreads + threadIdx.x) * kVec;  // this thread's first token

  PoolState state{0.0f, false};
  if (first < length) {
    Vec<ScoreT> loaded;
    if (first + kVec <= length) {
      loaded = Vec<ScoreT>::load(scores + first);
    } else {
#pragma unroll
      for (int e = 0; e < kVec; ++e) loaded.data[e] = first + e < length ? scores[first + e] : from_float<ScoreT>(0.0f);
    }
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float x = loaded.to_float(e);
      if (first + e < length && !isnan(x)) state = combine(state, PoolState{x, true}, args.op);
    }
  }
#pragma unroll
  for (int offset = kLanesPerBlock / 2; offset >= 1; offset /= 2) {
    const PoolState other{__shfl_xor_sync(0xFFFFFFFFu, state.value, offset),
                          __shfl_xor_sync(0xFFFFFFFFu, state.any, offset) != 0};
    state = combine(state, other, args.op);
  }
  const int block = first / BLOCK_SIZE;
  const int num_blocks = (args.num_cols + BLOCK_SIZE - 1) / BLOCK_SIZE;
  if (threadIdx.x % kLanesPerBlock == 0 && block < num_blocks)
    args.pooled[static_cast<std::int64_t>(row) * args.pooled_stride + block] =
        state.any ? state.value : __int_as_float(0x7FC00000);
  if (args.pooled_lengths && blockIdx.x == 0 && threadIdx.x == 0)
    args.pooled_lengths[row] = (length + BLOCK_SIZE - 1) / BLOCK_SIZE;
}

}  // namespace detail

template <typename ScoreT>
class BlockPooling {
 public:
  using Arguments = BlockPoolingArguments<ScoreT>;

  static Status can_implement(const Arguments& args) {
    if (args.scores == nullptr) return {StatusCode::kNullPointer, "scores"};
    if (args.pooled == nullptr) return {StatusCode::kNullPointer, "pooled"};
    if (args.num_rows <= 0 || args.num_rows > 65535)
      return {StatusCode::kInvalidShape, "num_rows must be in [1, 65535]"};
    if (args.num_cols <= 0) return {StatusCode::kInvalidShape, "num_cols must be positive"};
    if (args.row_stride < args.num_cols) return {StatusCode::kInvalidStride, "row_stride must be >= num_cols"};
    if (reinterpret_cast<std::uintptr_t>(args.scores) % 16 != 0 || args.row_stride % kVecElems<ScoreT> != 0)
      return {StatusCode::kMisaligned, "scores rows must start on 16-byte boundaries"};
    if (!SupportedPoolBlockSizes::contains(args.block_size))
      return {StatusCode::kNotSupported, "block_size (supported: 16, 32, 64, 128)"};
    if (args.pooled_stride < (args.num_cols + args.block_size - 1) / args.block_size)
      return {StatusCode::kInvalidStride, "pooled_stride must be >= ceil(num_cols / block_size)"};
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) { return 0; }

  static Status run(const Arguments& args, void* /*workspace*/, std::size_t /*workspace_bytes*/,
                    cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    return dispatch_int(SupportedPoolBlockSizes{}, args.block_size, "block_size", [&](auto block_size) {
      constexpr int kTokensPerCta = detail::kPoolThreads * kVecElems<ScoreT>;
      const dim3 grid((args.num_cols + kTokensPerCta - 1) / kTokensPerCta, args.num_rows);
      detail::block_pooling_kernel<ScoreT, decltype(block_size)::value><<<grid, detail::kPoolThreads, 0, stream>>>(args);
      return check_launch();
    });
  }
};

HYLRA_NAMESPACE_END
