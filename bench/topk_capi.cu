// C ABI over BatchedTopK for bench_topk.py (ctypes). Returns the hylra StatusCode as an int.
// Besides the default policy it exposes a few alternatives, so one benchmark run can compare
// tuning choices on the same inputs.
#include <cstdint>

#include "hylra/core/dispatch.hpp"
#include "hylra/topk/batched_topk.cuh"

namespace {

struct Cluster16FewRowsPolicy : hylra::BatchedTopKPolicy {  // 16 CTAs per row while the grid is small
  static constexpr int kMaxClusterSize = 16;
};
struct FullWavePolicy : hylra::BatchedTopKPolicy {  // plans one wave as every CTA slot, not 90 % of them
  static constexpr int kWavePercent = 100;
};

constexpr int kVariants = 3;

template <typename F>
auto with_policy(int variant, F&& f) {
  switch (variant) {
    case 1: return f(hylra::TypeTag<Cluster16FewRowsPolicy>{});
    case 2: return f(hylra::TypeTag<FullWavePolicy>{});
    default: return f(hylra::TypeTag<hylra::BatchedTopKPolicy>{});
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int hylra_topk_num_variants() { return kVariants; }

__attribute__((visibility("default"))) const char* hylra_topk_variant_name(int variant) {
  static const char* const kNames[kVariants] = {"default", "16 CTAs for few rows", "one wave = every CTA slot"};
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
      args.indices = indices;
      args.values = static_cast<T*>(values);
      args.sorted = sorted != 0;
      return hylra::BatchedTopK<T, Policy>::run(args, nullptr, 0, static_cast<cudaStream_t>(stream));
    });
  });
  return static_cast<int>(status.code());
}

// How run() splits rows of this shape: CTAs per row (cluster size), positions per CTA, and
// whether the keys stay in shared memory.
__attribute__((visibility("default"))) void hylra_topk_shape(int variant, int dtype, int rows, int cols,
                                                             int* cluster_size, int* segment, int* cached) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  with_policy(variant, [&](auto policy) {
    using Policy = typename decltype(policy)::type;
    const auto shape = dtype == static_cast<int>(hylra::DType::kFloat32)
                           ? hylra::detail::topk_launch_shape<float, Policy>(rows, cols, sms)
                           : hylra::detail::topk_launch_shape<half, Policy>(rows, cols, sms);
    *cluster_size = shape.cluster_size;
    *segment = shape.segment;
    *cached = shape.cached ? 1 : 0;
    return 0;
  });
}
}
