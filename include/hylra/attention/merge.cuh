// MergeStates: combines partial attention states (O, LSE) of the same query into one, by
// log-sum-exp weights. Split-KV decode merges its chunks with it; an engine can merge a sparse
// result with one computed elsewhere (a sliding window, a sink) the same way, when both are laid
// out as states of one buffer.
//
// State s of row r is states[(r * num_states + s) * head_dim + i] with lse[r * num_states + s]
// (natural log), each O normalized over its own tokens; lse = -inf marks an empty state, whose O
// is ignored. out_r = sum_s exp(lse_s - lse_r) O_s with lse_r = log sum_s exp(lse_s); a row whose
// states are all empty gets out = 0 and lse = -inf. Reference: reference::merge_states.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "hylra/core/launch.hpp"
#include "hylra/core/status.hpp"
#include "hylra/core/vec.cuh"

HYLRA_NAMESPACE_BEGIN

namespace detail {

// Threads of a merge CTA; each handles 4 consecutive elements of one row.
constexpr int kMergeThreads = 128;
constexpr int kMergeVec = 4;
// States whose loads a merge thread keeps in flight together.
constexpr int kMergeBatch = 8;

template <typename TIn, typename TOut>
__global__ void __launch_bounds__(kMergeThreads) merge_states_kernel(const TIn* __restrict__ states,
                                                                    const float* __restrict__ lse, int num_rows,
                                                                    int num_states, int head_dim,
                                                                    TOut* __restrict__ out,
                                                                    float* __restrict__ lse_out) {
  const int threads_per_row = head_dim / kMergeVec;
  const int rows_per_cta = kMergeThreads / threads_per_row;
  const int row = blockIdx.x * rows_per_cta + threadIdx.x / threads_per_row;
  const int col = (threadIdx.x % threads_per_row) * kMergeVec;
  if (row >= num_rows || threadIdx.x >= rows_per_cta * threads_per_row) return;
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of split-KV decode: wait until its states are written.
  // A no-op for an ordinary launch.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif

  // One pass with a running max over batches of kMergeBatch states, all of a batch's loads issued
  // before any is used (a state-by-state loop would wait one memory latency per state).
  const float* row_lse = lse + static_cast<std::int64_t>(row) * num_states;
  const TIn* row_states = states + static_cast<std::int64_t>(row) * num_states * head_dim + col;
  float max_lse = -INFINITY, denom = 0.0f, acc[kMergeVec] = {};
  for (int first = 0; first < num_states; first += kMergeBatch) {
    float state_lse[kMergeBatch];
    Vec<TIn, kMergeVec> state_o[kMergeBatch];
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      const int s = min(first + i, num_states - 1);  // past the end: a valid address, weight 0
      state_lse[i] = first + i < num_states ? row_lse[s] : -INFINITY;
      state_o[i] = Vec<TIn, kMergeVec>::load(row_states + static_cast<std::int64_t>(s) * head_dim);
    }
    float batch_max = max_lse;
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) batch_max = fmaxf(batch_max, state_lse[i]);
    if (batch_max == -INFINITY) continue;
    const float rescale = __expf(max_lse - batch_max);  // 0 while max_lse is -inf
    denom *= rescale;
#pragma unroll
    for (int e = 0; e < kMergeVec; ++e) acc[e] *= rescale;
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      const float w = __expf(state_lse[i] - batch_max);
      if (w == 0.0f) continue;  // an empty state's O may be anything
      denom += w;
#pragma unroll
      for (int e = 0; e < kMergeVec; ++e) acc[e] += w * state_o[i].to_float(e);
    }
    max_lse = batch_max;
  }
  Vec<TOut, kMergeVec> result;
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
  for (int i = 0; i < kMergeVec; ++i) result.data[i] = from_float<TOut>(acc[i] * inv);
  result.store(out + static_cast<std::int64_t>(row) * head_dim + col);
  if (lse_out != nullptr && col == 0) lse_out[row] = denom > 0.0f ? max_lse + logf(denom) : -INFINITY;
}

// Launches the merge; with `after_producer` it may start while the previous kernel on the stream
// (which must trigger griddepcontrol.launch_dependents) is finishing, hiding the launch latency.
template <typename TIn, typename TOut>
Status launch_merge_states(const TIn* states, const float* lse, int num_rows, int num_states, int head_dim,
                           TOut* out, float* lse_out, bool after_producer, cudaStream_t stream) {
  const int rows_per_cta = kMergeThreads / (head_dim / kMergeVec);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((num_rows + rows_per_cta - 1) / rows_per_cta);
  config.blockDim = dim3(kMergeThreads);
  config.stream = stream;
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = after_producer ? 1 : 0;
  return cuda_status(cudaLaunchKernelEx(&config, merge_states_kernel<TIn, TOut>, states, lse, num_rows, num_states,
                                        head_dim, out, lse_out));
}

}  // namespace detail

// TIn: type of the partial outputs (float, half, bfloat16); TOut: type of the merged output.
template <typename TIn, typename TOut>
class MergeStates {
 public:
  struct Arguments {
    const TIn* states = nullptr;  // [num_rows, num_states, head_dim]
    const float* lse = nullptr;   // [num_rows, num_states]
    int num_rows = 0;
    int num_states = 0;
    int head_dim = 0;             // a multiple of 4, at most 4 * 128
    TOut* out = nullptr;          // [num_rows, head_dim]
    float* lse_out = nullptr;     // [num_rows], optional
  };

  static Status can_implement(const Arguments& args) {
    if (args.states == nullptr || args.lse == nullptr || args.out == nullptr)
      return {StatusCode::kNullPointer, "merge states, lse or out"};
    if (args.num_rows <= 0 || args.num_states <= 0) return {StatusCode::kInvalidShape, "merge num_rows and num_states must be positive"};
    if (args.head_dim <= 0 || args.head_dim % detail::kMergeVec != 0 || args.head_dim > detail::kMergeVec * detail::kMergeThreads)
      return {StatusCode::kNotSupported, "merge head_dim must be a positive multiple of 4, at most 512"};
    if (reinterpret_cast<std::uintptr_t>(args.states) % (sizeof(TIn) * detail::kMergeVec) != 0 ||
        reinterpret_cast<std::uintptr_t>(args.out) % (sizeof(TOut) * detail::kMergeVec) != 0)
      return {StatusCode::kMisaligned, "merge states and out must be aligned to 4 elements"};
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) { return 0; }

  // Graph-capturable: one launch sized from host values, no allocation, no synchronization.
  static Status run(const Arguments& args, void* /*workspace*/, std::size_t /*workspace_bytes*/, cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    return detail::launch_merge_states(args.states, args.lse, args.num_rows, args.num_states, args.head_dim, args.out,
                                       args.lse_out, false, stream);
  }
};

HYLRA_NAMESPACE_END
