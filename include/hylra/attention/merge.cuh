// Merging partial attention states (O, LSE) of the same queries into one, by log-sum-exp weights.
// Split-KV decode merges its chunks with MergeStates (states packed in one buffer); an engine
// merges a sparse result with one computed elsewhere (a sliding window, sink tokens) with
// MergeStateList, which reads each input from its own tensor.
//
// Each state is O normalized over its own tokens with its lse (natural log); lse = -inf marks an
// empty state, whose O is ignored. out_r = sum_s exp(lse_s - lse_r) O_s with
// lse_r = log sum_s exp(lse_s); a row whose states are all empty gets out = 0 and lse = -inf.
// Reference: reference::merge_states.
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

// Threads of a merge CTA. Each row of head_dim elements is covered by head_dim / kMergeVec
// threads, and its states are dealt round-robin to `groups` such sets of threads, so that a row
// with many states (split-KV at small batch) is merged by several threads in parallel rather than
// one long chain of dependent loads.
constexpr int kMergeThreads = 256;
constexpr int kMergeVec = 4;
// States whose loads a merge thread keeps in flight together.
constexpr int kMergeBatch = 8;

// A partial merge: the largest LSE seen, the sum of exp(lse - max_lse) and the matching weighted
// sum of O. Trivially constructible, so CTAs can exchange it through shared memory.
struct MergeAccumulator {
  float max_lse;
  float denom;
  float acc[kMergeVec];

  HYLRA_DEVICE static MergeAccumulator empty() { return {-INFINITY, 0.0f, {}}; }

  // Re-expresses the sums relative to new_max >= max_lse.
  HYLRA_DEVICE void rescale_to(float new_max) {
    const float rescale = __expf(max_lse - new_max);  // 0 while max_lse is -inf
    denom *= rescale;
#pragma unroll
    for (int e = 0; e < kMergeVec; ++e) acc[e] *= rescale;
    max_lse = new_max;
  }
};

// Where the merge reads state s of row r: packed in one buffer, O at
// o[(r * num_states + s) * head_dim] and lse[r * num_states + s] ...
template <typename TIn>
struct PackedStates {
  using Element = TIn;
  const TIn* o;
  const float* lse;
  int num_states;
  int head_dim;
  HYLRA_DEVICE const TIn* o_row(int r, int s) const {
    return o + (static_cast<std::int64_t>(r) * num_states + s) * head_dim;
  }
  HYLRA_DEVICE float lse_of(int r, int s) const { return lse[static_cast<std::int64_t>(r) * num_states + s]; }
};

// ... or one tensor per state, O at o[s][r * head_dim] and lse[s][r].
constexpr int kMaxMergeInputs = 8;
template <typename TIn>
struct StateList {
  using Element = TIn;
  const TIn* o[kMaxMergeInputs];
  const float* lse[kMaxMergeInputs];
  int num_states;
  int head_dim;
  HYLRA_DEVICE const TIn* o_row(int r, int s) const { return o[s] + static_cast<std::int64_t>(r) * head_dim; }
  HYLRA_DEVICE float lse_of(int r, int s) const { return lse[s][r]; }
};

template <typename Source, typename TOut>
__global__ void __launch_bounds__(kMergeThreads) merge_states_kernel(const __grid_constant__ Source states,
                                                                    int num_rows, int groups,
                                                                    TOut* __restrict__ out,
                                                                    float* __restrict__ lse_out) {
  using TIn = typename Source::Element;
  const int num_states = states.num_states, head_dim = states.head_dim;
  __shared__ MergeAccumulator partials[kMergeThreads];
  const int threads_per_row = head_dim / kMergeVec;
  const int threads_per_row_set = threads_per_row * groups;
  const int rows_per_cta = kMergeThreads / threads_per_row_set;
  const int slot = threadIdx.x % threads_per_row_set;
  const int group = slot / threads_per_row;
  const int row = blockIdx.x * rows_per_cta + threadIdx.x / threads_per_row_set;
  const int col = (slot % threads_per_row) * kMergeVec;
  const bool active = row < num_rows && threadIdx.x < rows_per_cta * threads_per_row_set;
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of split-KV decode: wait until its states are written.
  // A no-op for an ordinary launch.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif

  // States group, group + groups, ... in batches of kMergeBatch, all of a batch's loads issued
  // before any is used, with a running max.
  MergeAccumulator m = MergeAccumulator::empty();
  if (active) {
    for (int first = group; first < num_states; first += kMergeBatch * groups) {
      float state_lse[kMergeBatch];
      Vec<TIn, kMergeVec> state_o[kMergeBatch];
#pragma unroll
      for (int i = 0; i < kMergeBatch; ++i) {
        const int s = first + i * groups;
        const int clamped = min(s, num_states - 1);  // past the end: a valid address, weight 0
        state_lse[i] = s < num_states ? states.lse_of(row, clamped) : -INFINITY;
        state_o[i] = Vec<TIn, kMergeVec>::load(states.o_row(row, clamped) + col);
      }
      float batch_max = m.max_lse;
#pragma unroll
      for (int i = 0; i < kMergeBatch; ++i) batch_max = fmaxf(batch_max, state_lse[i]);
      if (batch_max == -INFINITY) continue;
      m.rescale_to(batch_max);
#pragma unroll
      for (int i = 0; i < kMergeBatch; ++i) {
        const float w = __expf(state_lse[i] - batch_max);
        if (w == 0.0f) continue;  // an empty state's O may be anything
        m.denom += w;
#pragma unroll
        for (int e = 0; e < kMergeVec; ++e) m.acc[e] += w * state_o[i].to_float(e);
      }
    }
  }
  if (groups > 1) {  // group 0 folds in the other groups' partial merges of its columns
    partials[threadIdx.x] = m;
    __syncthreads();
    if (!active || group != 0) return;
    for (int g = 1; g < groups; ++g) {
      const MergeAccumulator& other = partials[threadIdx.x + g * threads_per_row];
      if (other.max_lse == -INFINITY) continue;
      const float new_max = fmaxf(m.max_lse, other.max_lse);
      m.rescale_to(new_max);
      const float w = __expf(other.max_lse - new_max);
      m.denom += w * other.denom;
#pragma unroll
      for (int e = 0; e < kMergeVec; ++e) m.acc[e] += w * other.acc[e];
    }
  }
  if (!active) return;
  Vec<TOut, kMergeVec> result;
  const float inv = m.denom > 0.0f ? 1.0f / m.denom : 0.0f;
#pragma unroll
  for (int i = 0; i < kMergeVec; ++i) result.data[i] = from_float<TOut>(m.acc[i] * inv);
  result.store(out + static_cast<std::int64_t>(row) * head_dim + col);
  if (lse_out != nullptr && col == 0) lse_out[row] = m.denom > 0.0f ? m.max_lse + logf(m.denom) : -INFINITY;
}

// Groups of threads per row: enough that each merges one batch of states, within one CTA.
inline int merge_groups(int num_states, int head_dim) {
  const int max_groups = kMergeThreads / (head_dim / kMergeVec);
  const int wanted = (num_states + kMergeBatch - 1) / kMergeBatch;
  return wanted < 1 ? 1 : (wanted > max_groups ? max_groups : wanted);
}

// Launches the merge; with `after_producer` it may start while the previous kernel on the stream
// (which must trigger griddepcontrol.launch_dependents) is finishing, hiding the launch latency.
template <typename Source, typename TOut>
Status launch_merge_states(const Source& states, int num_rows, TOut* out, float* lse_out, bool after_producer,
                           cudaStream_t stream) {
  const int groups = merge_groups(states.num_states, states.head_dim);
  const int rows_per_cta = kMergeThreads / (states.head_dim / kMergeVec * groups);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((num_rows + rows_per_cta - 1) / rows_per_cta);
  config.blockDim = dim3(kMergeThreads);
  config.stream = stream;
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = after_producer ? 1 : 0;
  return cuda_status(cudaLaunchKernelEx(&config, merge_states_kernel<Source, TOut>, states, num_rows, groups, out, lse_out));
}

// Checks shared by both merge operations.
template <typename TOut>
Status check_merge_shape(int num_rows, int num_states, int head_dim, const TOut* out) {
  if (out == nullptr) return {StatusCode::kNullPointer, "merge out"};
  if (num_rows <= 0 || num_states <= 0) return {StatusCode::kInvalidShape, "merge num_rows and num_states must be positive"};
  if (head_dim <= 0 || head_dim % kMergeVec != 0 || head_dim > kMergeVec * kMergeThreads)
    return {StatusCode::kNotSupported, "merge head_dim must be a positive multiple of 4, at most 1024"};
  if (reinterpret_cast<std::uintptr_t>(out) % (sizeof(TOut) * kMergeVec) != 0)
    return {StatusCode::kMisaligned, "merge out must be aligned to 4 elements"};
  return Status::success();
}

template <typename T>
bool aligned_to_vec(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % (sizeof(T) * kMergeVec) == 0;
}

}  // namespace detail

// Merges num_states states per row packed in one buffer. TIn: type of the partial outputs (float,
// half, bfloat16); TOut: type of the merged output.
template <typename TIn, typename TOut>
class MergeStates {
 public:
  struct Arguments {
    const TIn* states = nullptr;  // [num_rows, num_states, head_dim]
    const float* lse = nullptr;   // [num_rows, num_states]
    int num_rows = 0;
    int num_states = 0;
    int head_dim = 0;             // a multiple of 4, at most 4 * detail::kMergeThreads
    TOut* out = nullptr;          // [num_rows, head_dim]
    float* lse_out = nullptr;     // [num_rows], optional
  };

  static Status can_implement(const Arguments& args) {
    if (args.states == nullptr || args.lse == nullptr) return {StatusCode::kNullPointer, "merge states or lse"};
    HYLRA_RETURN_IF_ERROR(detail::check_merge_shape(args.num_rows, args.num_states, args.head_dim, args.out));
    if (!detail::aligned_to_vec(args.states)) return {StatusCode::kMisaligned, "merge states must be aligned to 4 elements"};
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) { return 0; }

  // Graph-capturable: one launch sized from host values, no allocation, no synchronization.
  static Status run(const Arguments& args, void* /*workspace*/, std::size_t /*workspace_bytes*/, cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    const detail::PackedStates<TIn> states{args.states, args.lse, args.num_states, args.head_dim};
    return detail::launch_merge_states(states, args.num_rows, args.out, args.lse_out, false, stream);
  }
};

// Merges num_inputs states per row, each in a tensor of its own: e.g. a gather-decode result with
// a sliding-window result computed by another kernel, without copying them into one buffer.
template <typename TIn, typename TOut>
class MergeStateList {
 public:
  static constexpr int kMaxInputs = detail::kMaxMergeInputs;

  struct Arguments {
    const TIn* states[kMaxInputs] = {};  // input i: [num_rows, head_dim]
    const float* lse[kMaxInputs] = {};   // input i: [num_rows]
    int num_inputs = 0;                  // 1 ... kMaxInputs
    int num_rows = 0;
    int head_dim = 0;                    // a multiple of 4, at most 4 * detail::kMergeThreads
    TOut* out = nullptr;                 // [num_rows, head_dim]; must not overlap an input
    float* lse_out = nullptr;            // [num_rows], optional; must not overlap an input
  };

  static Status can_implement(const Arguments& args) {
    if (args.num_inputs < 1 || args.num_inputs > kMaxInputs)
      return {StatusCode::kInvalidValue, "merge num_inputs must be in [1, 8]"};
    HYLRA_RETURN_IF_ERROR(detail::check_merge_shape(args.num_rows, args.num_inputs, args.head_dim, args.out));
    for (int i = 0; i < args.num_inputs; ++i) {
      if (args.states[i] == nullptr || args.lse[i] == nullptr) return {StatusCode::kNullPointer, "merge states[i] or lse[i]"};
      if (!detail::aligned_to_vec(args.states[i])) return {StatusCode::kMisaligned, "merge states[i] must be aligned to 4 elements"};
    }
    return Status::success();
  }

  static std::size_t workspace_size(const Arguments&) { return 0; }

  // Graph-capturable: one launch sized from host values, no allocation, no synchronization.
  static Status run(const Arguments& args, void* /*workspace*/, std::size_t /*workspace_bytes*/, cudaStream_t stream) {
    HYLRA_RETURN_IF_ERROR(can_implement(args));
    detail::StateList<TIn> states{};
    for (int i = 0; i < args.num_inputs; ++i) {
      states.o[i] = args.states[i];
      states.lse[i] = args.lse[i];
    }
    states.num_states = args.num_inputs;
    states.head_dim = args.head_dim;
    return detail::launch_merge_states(states, args.num_rows, args.out, args.lse_out, false, stream);
  }
};

HYLRA_NAMESPACE_END
