// Helpers shared by the decode, gather and merge GPU tests: device buffers, random paged caches
// with shuffled block tables, poisoning, and error measures against the fp64 host reference.
#pragma once

#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "hylra/core/dtype.hpp"
#include "hylra/core/status.hpp"
#include "hylra/layout/kv_cache.hpp"
#include "hylra/reference/attention.hpp"

namespace decode_test {

using hylra::KvLayout;
using hylra::PagedKvCache;

#define DECODE_TEST_CUDA(expr) REQUIRE((expr) == cudaSuccess)
#define DECODE_TEST_OK(...)                   \
  do {                                        \
    const ::hylra::Status s_ = (__VA_ARGS__); \
    INFO(::hylra::to_string(s_));             \
    REQUIRE(s_.ok());                         \
  } while (0)

// What `enqueue(stream)` launches (it returns a Status), captured into a CUDA graph on a stream of
// its own; replay() launches the graph and waits for it.
class CapturedGraph {
 public:
  template <typename Enqueue>
  explicit CapturedGraph(Enqueue&& enqueue) {
    DECODE_TEST_CUDA(cudaStreamCreate(&stream_));
    DECODE_TEST_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal));
    DECODE_TEST_OK(enqueue(stream_));
    DECODE_TEST_CUDA(cudaStreamEndCapture(stream_, &graph_));
    DECODE_TEST_CUDA(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  ~CapturedGraph() {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
    cudaStreamDestroy(stream_);
  }
  void replay() {
    DECODE_TEST_CUDA(cudaGraphLaunch(exec_, stream_));
    DECODE_TEST_CUDA(cudaStreamSynchronize(stream_));
  }

 private:
  cudaStream_t stream_ = nullptr;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// A device copy of a host vector; poison() fills it with 0xFF bytes (NaN in half, bf16, float).
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t count = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : count(n) { DECODE_TEST_CUDA(cudaMalloc(&ptr, std::max<std::size_t>(n, 1) * sizeof(T))); }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    DECODE_TEST_CUDA(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr, other.ptr);
    std::swap(count, other.count);
    return *this;
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  void poison() { DECODE_TEST_CUDA(cudaMemset(ptr, 0xFF, std::max<std::size_t>(count, 1) * sizeof(T))); }
  std::vector<T> to_host() const {
    std::vector<T> host(count);
    DECODE_TEST_CUDA(cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
};

template <typename T>
std::vector<T> random_values(std::size_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<T> x(n);
  for (T& e : x) e = hylra::from_float<T>(normal(rng));
  return x;
}

// A paged cache of `batch` sequences with `spare_pages` unused pages in the pool, pages assigned
// through a shuffled block table, random K and V.
template <typename T>
struct PagedCache {
  KvLayout layout;
  int batch, heads, dim, page_size, max_pages, num_pages;
  std::vector<T> k, v;
  std::vector<std::int32_t> table, lens;
  DeviceBuffer<T> d_k, d_v;
  DeviceBuffer<std::int32_t> d_table, d_lens;

  PagedCache(KvLayout layout_, int batch_, int heads_, int dim_, int page_size_, int max_seq_len,
             std::vector<std::int32_t> lens_, std::mt19937& rng, int spare_pages = 3)
      : layout(layout_), batch(batch_), heads(heads_), dim(dim_), page_size(page_size_),
        max_pages((max_seq_len + page_size_ - 1) / page_size_), lens(std::move(lens_)) {
    num_pages = batch * max_pages + spare_pages;
    const std::size_t elems = static_cast<std::size_t>(num_pages) * page_size * heads * dim;
    k = random_values<T>(elems, rng);
    v = random_values<T>(elems, rng);
    std::vector<std::int32_t> pages(num_pages);
    for (int i = 0; i < num_pages; ++i) pages[i] = i;
    std::shuffle(pages.begin(), pages.end(), rng);
    table.assign(pages.begin(), pages.begin() + batch * max_pages);
    upload();
  }
  // Copies the host contents (after a test edits table or lens) to fresh device buffers.
  void upload() {
    d_k = DeviceBuffer<T>(k);
    d_v = DeviceBuffer<T>(v);
    d_table = DeviceBuffer<std::int32_t>(table);
    d_lens = DeviceBuffer<std::int32_t>(lens);
  }
  PagedKvCache<const T> host_view() const {
    return hylra::make_paged_kv_cache<const T>(layout, k.data(), v.data(), num_pages, page_size, heads, dim,
                                               table.data(), max_pages, lens.data(), batch);
  }
  PagedKvCache<const T> device_view() const {
    return hylra::make_paged_kv_cache<const T>(layout, d_k.ptr, d_v.ptr, num_pages, page_size, heads, dim,
                                               d_table.ptr, max_pages, d_lens.ptr, batch);
  }
};

// Largest over rows of ||out - ref|| / ||ref|| (rows of `dim`); a NaN anywhere (an unwritten,
// poisoned element) gives +inf. A row whose reference is zero must be exactly zero.
template <typename T>
double max_row_rel_error(const std::vector<T>& out, const std::vector<float>& ref, int dim) {
  double worst = 0.0;
  for (std::size_t r = 0; r * dim < ref.size(); ++r) {
    double err = 0.0, norm = 0.0;
    for (int i = 0; i < dim; ++i) {
      const double o = hylra::to_float(out[r * dim + i]), e = ref[r * dim + i];
      if (std::isnan(o)) return INFINITY;
      err += (o - e) * (o - e);
      norm += e * e;
    }
    worst = std::max(worst, norm > 0.0 ? std::sqrt(err / norm) : (err > 0.0 ? INFINITY : 0.0));
  }
  return worst;
}

// Largest |a - b| over LSE-like vectors; -inf must match exactly, NaN never passes.
inline double max_lse_error(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    if (std::isinf(b[i]) || std::isinf(a[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return worst;
}

// Relative error bounds reached with fp32 accumulation (probabilities rounded to T for P V, the
// output rounded to T): bf16 keeps 8 mantissa bits, fp16 11.
template <typename T>
constexpr double kOutputTolerance = std::is_same_v<T, half> ? 2e-3 : 1e-2;
constexpr double kLseTolerance = 1e-3;

// Exported scores stored as `dtype`, widened to float.
std::vector<float> widen_scores(const std::vector<unsigned char>& bytes, hylra::DType dtype) {
  std::vector<float> values(bytes.size() / hylra::size_of(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const unsigned char* at = bytes.data() + i * hylra::size_of(dtype);
    if (dtype == hylra::DType::kFloat32) {
      std::memcpy(&values[i], at, sizeof(float));
    } else if (dtype == hylra::DType::kBFloat16) {
      __nv_bfloat16 x;
      std::memcpy(&x, at, sizeof(x));
      values[i] = hylra::to_float(x);
    } else {
      half x;
      std::memcpy(&x, at, sizeof(x));
      values[i] = hylra::to_float(x);
    }
  }
  return values;
}

// Largest gap between two neighbouring values of `dtype` near |x|: the device and the reference
// round logits that differ by ~1e-5 and may land one step apart.
double rounding_step(hylra::DType dtype, float x) {
  if (dtype == hylra::DType::kFloat32) return 0.0;
  const int mantissa_bits = dtype == hylra::DType::kBFloat16 ? 7 : 10;
  return std::ldexp(1.0, std::ilogb(std::max(std::fabs(x), 1e-6f)) - mantissa_bits);
}

// A poisoned device buffer for the scores of `cache` in blocks of `block` tokens stored as `dtype`
// (rows padded by 3 entries), and the export that writes it.
template <typename T>
hylra::ScoreExport poisoned_scores(const PagedCache<T>& cache, int block, hylra::DType dtype, DeviceBuffer<unsigned char>* buffer) {
  hylra::ScoreExport scores{nullptr, block, 0, dtype};
  scores.row_stride = scores.row_length(cache.max_pages * cache.page_size) + 3;
  *buffer = DeviceBuffer<unsigned char>(static_cast<std::size_t>(cache.batch) * cache.heads * scores.row_stride *
                                        hylra::size_of(dtype));
  buffer->poison();
  scores.scores = buffer->ptr;
  return scores;
}

// Worst gap between the scores the device wrote through `exported` and reference::dense_scores,
// beyond one rounding step of the export's dtype; +inf for a NaN, a poisoned entry or a wrong inf.
template <typename T>
double score_error(const std::vector<T>& q, int hq, const PagedCache<T>& cache, float sm_scale,
                   const hylra::ScoreExport& exported, const DeviceBuffer<unsigned char>& buffer) {
  std::vector<unsigned char> ref_bytes(buffer.count, 0);
  hylra::ScoreExport host = exported;
  host.scores = ref_bytes.data();
  DECODE_TEST_OK(hylra::reference::dense_scores(q.data(), hq, cache.host_view(), sm_scale, host));
  const std::vector<float> ref = widen_scores(ref_bytes, exported.dtype);
  const std::vector<float> got = widen_scores(buffer.to_host(), exported.dtype);
  const int row_length = exported.row_length(cache.max_pages * cache.page_size);
  double worst = 0.0;
  for (std::size_t r = 0; r < got.size() / exported.row_stride; ++r)
    for (int j = 0; j < row_length; ++j) {
      const std::size_t i = r * exported.row_stride + j;
      const bool same_inf = std::isinf(ref[i]) && got[i] == ref[i];
      const double diff = std::isinf(ref[i]) || std::isnan(got[i])
                              ? (same_inf ? 0.0 : INFINITY)
                              : std::fabs(got[i] - ref[i]) - rounding_step(exported.dtype, ref[i]);
      worst = std::max(worst, diff);
    }
  return worst;
}

}  // namespace decode_test
