// C ABI over BatchedTopK for bench_topk.py (ctypes). Returns the hylra StatusCode as an int.
// Besides the default policy it exposes a few alternatives, so one benchmark run can compare
// tuning choices on the same inputs.
#include <cstdint>
#include <vector>

#include "hylra/core/dispatch.hpp"
#include "hylra/topk/batched_topk.cuh"

namespace {

struct SampledEverywherePolicy : hylra::BatchedTopKPolicy {  // the sampled method wherever it applies
  static constexpr int kSampledMinRows = 1;
  static constexpr int kSampledMinCols = 1;
  static constexpr std::int64_t kSampledMinKeys = 0;
};
struct SampledSmallTilesPolicy : SampledEverywherePolicy {  // 4K-key filter tiles, 8 CTAs per SM
  static constexpr int kFilterKeysPerThread = 16;
  static constexpr int kFilterCtasPerSm = 8;
};

// Variant 0 is the default call; the others ask for the sampled method (Arguments::method).
constexpr int kVariants = 4;

template <typename F>
auto with_policy(int variant, F&& f) {
  switch (variant) {
    case 2: return f(hylra::TypeTag<SampledEverywherePolicy>{});
    case 3: return f(hylra::TypeTag<SampledSmallTilesPolicy>{});
    default: return f(hylra::TypeTag<hylra::BatchedTopKPolicy>{});
  }
}

hylra::TopKMethod method_of(int variant) { return variant == 0 ? hylra::TopKMethod::kCluster : hylra::TopKMethod::kSampled; }

// Calls f(args, plan, TypeTag<T>, TypeTag<Policy>) with the arguments of a rows x cols x k call of
// `variant` in `dtype`, as far as planning needs them (no data), and its sampled-method plan.
template <typename F>
void with_plan(int variant, int dtype, int rows, int cols, int k, F&& f) {
  with_policy(variant, [&](auto policy) {
    using Policy = typename decltype(policy)::type;
    return hylra::dispatch_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
      using T = typename decltype(tag)::type;
      hylra::BatchedTopKArguments<T> args;
      args.scores = reinterpret_cast<const T*>(std::uintptr_t{256});  // aligned, as the benchmark's tensors
      args.row_stride = cols;
      args.num_rows = rows;
      args.num_cols = cols;
      args.k = k;
      args.method = method_of(variant);
      f(args, hylra::detail::SampledPlan<T, Policy>(args), tag, policy);
      return hylra::Status::success();
    });
  });
}

// One workspace for every call, grown on the first call of a larger shape (the benchmark's
// correctness check, outside the timed calls).
void* workspace_for(std::size_t bytes) {
  static void* buffer = nullptr;
  static std::size_t capacity = 0;
  if (bytes > capacity) {
    cudaFree(buffer);
    buffer = nullptr;
    capacity = 0;
    if (cudaMalloc(&buffer, bytes) != cudaSuccess) return nullptr;
    capacity = bytes;
  }
  return buffer;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int hylra_topk_num_variants() { return kVariants; }

__attribute__((visibility("default"))) const char* hylra_topk_variant_name(int variant) {
  static const char* const kNames[kVariants] = {"default (kCluster)", "method = kSampled", "kSampled at every shape",
                                                     "kSampled, 4K-key filter tiles"};
  return variant >= 0 && variant < kVariants ? kNames[variant] : "";
}

// dtype: 0 fp16, 1 bf16, 2 fp32 (hylra::DType); variant: 0 = the default policy.
__attribute__((visibility("default"))) int hylra_topk(int variant, int dtype, const void* scores, long long row_stride,
                                                      int rows, int cols, const std::int32_t* lengths, int k,
                                                      std::int32_t* indices, void* values, int sorted, void* stream) {
  const hylra::Status status = with_policy(variant, [&](auto policy) {
    using Policy = typename decltype(policy)::type;
    return hylra::dispatch_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
      using T = typename decltype(tag)::type;
      typename hylra::BatchedTopK<T, Policy>::Arguments args;
      args.scores = static_cast<const T*>(scores);
      args.row_stride = row_stride;
      args.num_rows = rows;
      args.num_cols = cols;
      args.lengths = lengths;
      args.k = k;
      args.method = method_of(variant);
      args.indices = indices;
      args.values = static_cast<T*>(values);
      args.sorted = sorted != 0;
      using TopK = hylra::BatchedTopK<T, Policy>;
      const std::size_t bytes = TopK::workspace_size(args);
      return TopK::run(args, bytes ? workspace_for(bytes) : nullptr, bytes, static_cast<cudaStream_t>(stream));
    });
  });
  return static_cast<int>(status.code());
}

// How run() handles this shape: the method (1 sampled, 0 cluster), CTAs per row and positions
// per CTA (tiles of the filter kernel for the sampled method), and whether the cluster method keeps
// the keys in shared memory.
__attribute__((visibility("default"))) void hylra_topk_shape(int variant, int dtype, int rows, int cols, int k,
                                                             int* sampled, int* ctas_per_row, int* segment,
                                                             int* cached) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  with_plan(variant, dtype, rows, cols, k, [&](const auto& args, const auto& plan, auto tag, auto policy) {
    using T = typename decltype(tag)::type;
    using Policy = typename decltype(policy)::type;
    const auto shape = hylra::detail::topk_launch_shape<T, Policy>(rows, cols, sms);
    *sampled = plan.applies(args) ? 1 : 0;
    *ctas_per_row = *sampled ? plan.tiles_per_row : shape.cluster_size;
    *segment = *sampled ? hylra::detail::FilterTile<T, Policy>::kKeys : shape.segment;
    *cached = shape.cached ? 1 : 0;
  });
}

// Rows of the last hylra_topk call (same variant, dtype and shape) that the sampled method sent
// to the cluster method (its sample misled), read from the workspace (synchronizes); -1 when the shape does
// not take the sampled method.
__attribute__((visibility("default"))) int hylra_topk_fallback_rows(int variant, int dtype, int rows, int cols, int k) {
  int fallbacks = -1;
  with_plan(variant, dtype, rows, cols, k, [&](const auto& args, const auto& plan, auto tag, auto policy) {
    using T = typename decltype(tag)::type;
    using Policy = typename decltype(policy)::type;
    if (!plan.applies(args)) return;
    using Workspace = hylra::detail::SampledWorkspace<T>;
    const Workspace w =
        Workspace::in(workspace_for(plan.workspace_bytes(args)), rows, plan.tiles_per_row, Policy::kSampledCapacity);
    std::vector<int> counts(static_cast<std::size_t>(rows));
    std::vector<typename Workspace::Bits> thresholds(static_cast<std::size_t>(rows));
    cudaMemcpy(counts.data(), w.counts, sizeof(int) * counts.size(), cudaMemcpyDeviceToHost);
    cudaMemcpy(thresholds.data(), w.thresholds, sizeof(thresholds[0]) * thresholds.size(), cudaMemcpyDeviceToHost);
    fallbacks = 0;
    for (int r = 0; r < rows; ++r)  // the select kernel's test
      fallbacks += hylra::detail::sample_misled(counts[r], thresholds[r] == 1, k, Policy::kSampledCapacity) ? 1 : 0;
  });
  return fallbacks;
}
}
