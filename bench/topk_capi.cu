// C ABI over BatchedTopK for bench_topk.py (ctypes). Returns the hylra StatusCode as an int.
#include <cstdint>

#include "hylra/core/dispatch.hpp"
#include "hylra/topk/batched_topk.cuh"

namespace {

hylra::Status run_topk(int dtype, const void* scores, long long row_stride, int rows, int cols,
                       const std::int32_t* lengths, int k, std::int32_t* indices, void* values, int sorted,
                       cudaStream_t stream) {
  return hylra::dispatch_dtype(static_cast<hylra::DType>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    typename hylra::BatchedTopK<T>::Arguments args;
    args.scores = static_cast<const T*>(scores);
    args.row_stride = row_stride;
    args.num_rows = rows;
    args.num_cols = cols;
    args.lengths = lengths;
    args.k = k;
    args.indices = indices;
    args.values = static_cast<T*>(values);
    args.sorted = sorted != 0;
    return hylra::BatchedTopK<T>::run(args, nullptr, 0, stream);
  });
}

}  // namespace

extern "C" {

// dtype: 0 fp16, 1 bf16, 2 fp32 (hylra::DType).
__attribute__((visibility("default"))) int hylra_topk(int dtype, const void* scores, long long row_stride, int rows,
                                                      int cols, const std::int32_t* lengths, int k,
                                                      std::int32_t* indices, void* values, int sorted, void* stream) {
  return static_cast<int>(run_topk(dtype, scores, row_stride, rows, cols, lengths, k, indices, values, sorted,
                                   static_cast<cudaStream_t>(stream))
                              .code());
}

// How run() splits rows of this shape: CTAs per row (cluster size), positions per CTA, and
// whether the keys stay in shared memory.
__attribute__((visibility("default"))) void hylra_topk_shape(int dtype, int rows, int cols, int* cluster_size,
                                                             int* segment, int* cached) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const auto shape = dtype == static_cast<int>(hylra::DType::kFloat32)
                         ? hylra::detail::topk_launch_shape<float>(rows, cols, sms)
                         : hylra::detail::topk_launch_shape<half>(rows, cols, sms);
  *cluster_size = shape.cluster_size;
  *segment = shape.segment;
  *cached = shape.cached ? 1 : 0;
}
}
