// The read floor: the least time a kernel takes to read a benchmark shape's input on this GPU,
// timed as bench/harness.py times everything (L2 flushed by a 256 MB write before each call, or by
// a read with `read`; CUDA events around one CUDA-graph replay; median of 50). No math, no output:
// the kernels below only load and fold the bytes, so no operation on that input can be faster.
//   * empty kernel: the launch-and-timing floor under every figure;
//   * contiguous read of N bytes (each thread 8 loads of 16 bytes in flight, 8 CTAs per SM);
//   * gather of decode's selected K/V rows, through the same chain as GatherDecode: index entry,
//     block-table entry, then the K and V rows (256 bytes each at d = 128, bf16), best chunk of
//     64 / 128 / 256 entries per CTA.
// Next to the floors it times hylra's DenseDecode and GatherDecode on the same cache, so each
// figure reads as a fraction of what the hardware allows. Shapes: bench_topk.py's score matrices
// and bench_attention.py's cache (bf16, Hq 32, Hkv 8, d 128, page-64 NHD, shuffled block table;
// gather: 2048 random tokens per (sequence, KV head) of 32K). GPU machine:
//   cmake --build build --target read_floor && build/bench/read_floor/read_floor [write|read]
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "hylra/attention/decode.cuh"
#include "hylra/attention/gather.cuh"

#include "../fill_uniform.cuh"
#include "../tool_helpers.hpp"  // CHECK_CUDA, percentile, device_copy

namespace {

using T = __nv_bfloat16;
constexpr int kHq = 32, kHkv = 8, kHeadDim = 128, kPage = 64, kGatherN = 32768, kGatherK = 2048;
constexpr int kRowVecs = kHeadDim * sizeof(T) / 16;  // 16-byte pieces of one head's row of a token
constexpr int kThreads = 128, kLoads = 8;           // loads in flight per thread
constexpr std::size_t kFlushBytes = 256u << 20;

// Keeps the loads live without writing anything: the compiler cannot prove the fold never equals
// the constant.
__device__ void keep(unsigned folded, unsigned* sink) {
  if (folded == 0x5A5A5A5Au) *sink = folded;
}

// CTA row blockIdx.y reads spans[blockIdx.y] (the K and V pools of a cache in one kernel).
struct Spans {
  const uint4* data[2];
};
__global__ void __launch_bounds__(kThreads) read_contiguous(const Spans spans, long long vecs, unsigned* sink) {
  // Not spans.data[blockIdx.y]: a parameter indexed at run time is copied to local memory first,
  // one more latency before the first load (measured: +0.4-0.8 us).
  const uint4* __restrict__ data = blockIdx.y == 0 ? spans.data[0] : spans.data[1];
  unsigned folded = 0;
  const long long stride = static_cast<long long>(gridDim.x) * kThreads * kLoads;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads * kLoads + threadIdx.x; i < vecs; i += stride) {
    uint4 x[kLoads];
#pragma unroll
    for (int j = 0; j < kLoads; ++j) x[j] = i + j * kThreads < vecs ? data[i + j * kThreads] : uint4{};
#pragma unroll
    for (int j = 0; j < kLoads; ++j) folded ^= x[j].x ^ x[j].y ^ x[j].z ^ x[j].w;
  }
  keep(folded, sink);
}

// CTA (chunk, head, sequence) reads the K and V rows of `chunk` entries of its index row; 16
// lanes per row, 8 rows per step, kLoads / 2 steps of lookups and loads issued before any use.
__global__ void __launch_bounds__(kThreads) read_gathered(const uint4* __restrict__ k, const uint4* __restrict__ v,
                                                          const int* __restrict__ block_table, int max_pages,
                                                          const int* __restrict__ ids, int chunk, unsigned* sink) {
  constexpr int kSteps = kLoads / 2, kRowsPerStep = kThreads / kRowVecs;
  const int batch = blockIdx.z, head = blockIdx.y, piece = threadIdx.x % kRowVecs;
  const int* row_ids = ids + (static_cast<long long>(batch) * kHkv + head) * kGatherK;
  unsigned folded = 0;
  for (int base = blockIdx.x * chunk; base < (blockIdx.x + 1) * chunk; base += kSteps * kRowsPerStep) {
    int id[kSteps];
    long long offset[kSteps];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) id[s] = row_ids[base + s * kRowsPerStep + threadIdx.x / kRowVecs];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const long long page = block_table[batch * max_pages + id[s] / kPage];
      offset[s] = ((page * kPage + id[s] % kPage) * kHkv + head) * kRowVecs + piece;
    }
    uint4 x[2 * kSteps];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      x[2 * s] = k[offset[s]];
      x[2 * s + 1] = v[offset[s]];
    }
#pragma unroll
    for (int j = 0; j < 2 * kSteps; ++j) folded ^= x[j].x ^ x[j].y ^ x[j].z ^ x[j].w;
  }
  keep(folded, sink);
}

__global__ void empty_kernel(unsigned* sink) { keep(threadIdx.x, sink); }

class Timer {
 public:
  explicit Timer(bool flush_by_read) : flush_by_read_(flush_by_read) {
    CHECK_CUDA(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, 0));
    CHECK_CUDA(cudaStreamCreate(&stream_));
    CHECK_CUDA(cudaMalloc(&flush_, kFlushBytes));
    CHECK_CUDA(cudaMemset(flush_, 1, kFlushBytes));
    CHECK_CUDA(cudaMalloc(&sink_, sizeof(unsigned)));
    CHECK_CUDA(cudaEventCreate(&start_));
    CHECK_CUDA(cudaEventCreate(&stop_));
  }

  unsigned* sink() const { return sink_; }

  // Median µs of one replay of the graph that `launch(stream)` records, cold L2 before each.
  template <typename Launch>
  double median_us(Launch&& launch, int reps = 50) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CHECK_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    launch(stream_);
    CHECK_CUDA(cudaStreamEndCapture(stream_, &graph));
    CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    std::vector<double> us;
    for (int rep = -5; rep < reps; ++rep) {
      if (flush_by_read_)
        read_contiguous<<<num_sms_ * 8, kThreads, 0, stream_>>>(Spans{{static_cast<const uint4*>(flush_), nullptr}},
                                                               kFlushBytes / 16, sink_);
      else
        CHECK_CUDA(cudaMemsetAsync(flush_, rep & 0xFF, kFlushBytes, stream_));
      CHECK_CUDA(cudaEventRecord(start_, stream_));
      CHECK_CUDA(cudaGraphLaunch(exec, stream_));
      CHECK_CUDA(cudaEventRecord(stop_, stream_));
      CHECK_CUDA(cudaEventSynchronize(stop_));
      float ms = 0.0f;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
      if (rep >= 0) us.push_back(1e3 * ms);
    }
    CHECK_CUDA(cudaGraphExecDestroy(exec));
    CHECK_CUDA(cudaGraphDestroy(graph));
    return percentile(us, 0.5);
  }

  // One kernel reading `bytes` from each of 1 or 2 spans, 8 CTAs per SM in all.
  double contiguous_us(Spans spans, int num_spans, std::size_t bytes) {
    return median_us([&](cudaStream_t s) {
      read_contiguous<<<dim3(num_sms_ * 8 / num_spans, num_spans), kThreads, 0, s>>>(
          spans, static_cast<long long>(bytes / 16), sink_);
    });
  }
  double contiguous_us(const void* data, std::size_t bytes) {
    return contiguous_us(Spans{{static_cast<const uint4*>(data), nullptr}}, 1, bytes);
  }

 private:
  bool flush_by_read_;
  int num_sms_ = 0;
  cudaStream_t stream_;
  void* flush_ = nullptr;
  unsigned* sink_ = nullptr;
  cudaEvent_t start_, stop_;
};

void require(const hylra::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, hylra::to_string(status).c_str());
    std::exit(1);
  }
}

// A bf16 page-64 NHD cache of `batch` sequences of `n` tokens behind a shuffled block table, with
// a query and an output.
struct Cache {
  int batch, n, pages;
  T *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr;
  int *block_table = nullptr, *seq_lens = nullptr;
  std::size_t pool_elems;

  Cache(int batch_, int n_, std::mt19937& rng) : batch(batch_), n(n_), pages(batch_ * (n_ / kPage)) {
    pool_elems = static_cast<std::size_t>(pages) * kPage * kHkv * kHeadDim;
    for (T** pool : {&k, &v}) {
      CHECK_CUDA(cudaMalloc(pool, pool_elems * sizeof(T)));
      fill_uniform<<<1024, 256>>>(*pool, pool_elems, pool == &k ? 1u : 2u);
    }
    CHECK_CUDA(cudaMalloc(&q, sizeof(T) * batch * kHq * kHeadDim));
    fill_uniform<<<64, 256>>>(q, static_cast<std::size_t>(batch) * kHq * kHeadDim, 3u);
    CHECK_CUDA(cudaMalloc(&out, sizeof(T) * batch * kHq * kHeadDim));
    std::vector<int> table(pages);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    block_table = device_copy(table);
    seq_lens = device_copy(std::vector<int>(batch, n));
  }
  ~Cache() {
    for (void* p : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q), static_cast<void*>(out),
                    static_cast<void*>(block_table), static_cast<void*>(seq_lens)})
      CHECK_CUDA(cudaFree(p));
  }
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  hylra::PagedKvCache<const T> view() const {
    return hylra::make_paged_kv_cache<const T>(hylra::KvLayout::kNHD, k, v, pages, kPage, kHkv, kHeadDim, block_table,
                                               n / kPage, seq_lens, batch);
  }
};

// hylra's time for one operation (Op = DenseDecode or GatherDecode) with its own workspace.
template <typename Op>
double hylra_us(Timer& timer, const typename Op::Arguments& args) {
  std::size_t bytes = 0;
  require(Op::workspace_size(args, &bytes), "workspace_size");
  void* workspace = nullptr;
  if (bytes > 0) CHECK_CUDA(cudaMalloc(&workspace, bytes));
  hylra::Status status;
  const double us = timer.median_us([&](cudaStream_t s) { status = Op::run(args, workspace, bytes, s); });
  require(status, "run");
  CHECK_CUDA(cudaFree(workspace));
  return us;
}

void score_matrices(Timer& timer) {
  const std::pair<int, int> shapes[] = {{8, 8192}, {8, 131072}, {64, 32768}, {64, 131072}, {256, 131072}, {1, 131072}};
  std::printf("\n| top-k scores rows×N | fp32 MB | fp32 floor µs | bf16 MB | bf16 floor µs |\n|---|---|---|---|---|\n");
  void* scores = nullptr;
  CHECK_CUDA(cudaMalloc(&scores, std::size_t{256} * 131072 * 4));
  CHECK_CUDA(cudaMemset(scores, 7, std::size_t{256} * 131072 * 4));
  for (const auto& [rows, n] : shapes) {
    const std::size_t fp32 = std::size_t{4} * rows * n;
    std::printf("| %d×%dK | %.1f | %.1f | %.1f | %.1f |\n", rows, n / 1024, fp32 / 1e6, timer.contiguous_us(scores, fp32),
                fp32 / 2e6, timer.contiguous_us(scores, fp32 / 2));
  }
  CHECK_CUDA(cudaFree(scores));
}

void dense_decode(Timer& timer, std::mt19937& rng) {
  const std::pair<int, int> shapes[] = {{1, 8192}, {1, 32768}, {1, 131072}, {8, 131072}, {32, 131072}};
  std::printf("\n| dense B×N | K+V MB | floor µs | floor TB/s | hylra µs | hylra TB/s | hylra / floor |\n"
              "|---|---|---|---|---|---|---|\n");
  for (const auto& [batch, n] : shapes) {
    const Cache cache(batch, n, rng);
    const double bytes = 2.0 * cache.pool_elems * sizeof(T);
    // The pools are contiguous, so reading both in order is the floor.
    const Spans pools{{reinterpret_cast<const uint4*>(cache.k), reinterpret_cast<const uint4*>(cache.v)}};
    const double floor = timer.contiguous_us(pools, 2, static_cast<std::size_t>(bytes / 2));
    hylra::DenseDecodeArguments<T> args;
    args.q = cache.q;
    args.kv = cache.view();
    args.num_qo_heads = kHq;
    args.sm_scale = 0.088f;
    args.out = cache.out;
    const double ours = hylra_us<hylra::DenseDecode<T, kHeadDim>>(timer, args);
    std::printf("| %d×%dK | %.0f | %.1f | %.2f | %.1f | %.2f | %.2f |\n", batch, n / 1024, bytes / 1e6, floor,
                bytes / floor / 1e6, ours, bytes / ours / 1e6, ours / floor);
  }
}

void gather_decode(Timer& timer, std::mt19937& rng) {
  std::printf("\n| gather B | selected K/V MB | contiguous floor µs | gather floor µs (chunk) | TB/s | hylra µs | hylra TB/s "
              "| hylra / gather floor |\n|---|---|---|---|---|---|---|---|\n");
  for (const int batch : {1, 8, 32}) {
    const Cache cache(batch, kGatherN, rng);
    std::vector<int> ids, perm(kGatherN);
    for (int row = 0; row < batch * kHkv; ++row) {
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      ids.insert(ids.end(), perm.begin(), perm.begin() + kGatherK);
    }
    int* ids_d = device_copy(ids);
    const double bytes = 2.0 * batch * kHkv * kGatherK * kHeadDim * sizeof(T);
    const double contiguous = timer.contiguous_us(cache.k, static_cast<std::size_t>(bytes));
    double floor = 1e30;
    int best_chunk = 0;
    for (const int chunk : {64, 128, 256}) {
      const double us = timer.median_us([&](cudaStream_t s) {
        read_gathered<<<dim3(kGatherK / chunk, kHkv, batch), kThreads, 0, s>>>(
            reinterpret_cast<const uint4*>(cache.k), reinterpret_cast<const uint4*>(cache.v), cache.block_table,
            kGatherN / kPage, ids_d, chunk, timer.sink());
      });
      if (us < floor) floor = us, best_chunk = chunk;
    }
    hylra::GatherDecodeArguments<T> args;
    args.q = cache.q;
    args.kv = cache.view();
    args.indices = hylra::IndexList{ids_d, nullptr, batch, kHkv, kGatherK, 1};
    args.num_qo_heads = kHq;
    args.sm_scale = 0.088f;
    args.out = cache.out;
    const double ours = hylra_us<hylra::GatherDecode<T, kHeadDim>>(timer, args);
    std::printf("| %d | %.1f | %.1f | %.1f (%d) | %.2f | %.1f | %.2f | %.2f |\n", batch, bytes / 1e6, contiguous, floor,
                best_chunk, bytes / floor / 1e6, ours, bytes / ours / 1e6, ours / floor);
    CHECK_CUDA(cudaFree(ids_d));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool flush_by_read = argc > 1 && std::strcmp(argv[1], "read") == 0;
  if (argc > 1 && !flush_by_read && std::strcmp(argv[1], "write") != 0) {
    std::fprintf(stderr, "usage: %s [write|read]   (how L2 is flushed before each call; default write)\n", argv[0]);
    return 2;
  }
  Timer timer(flush_by_read);
  std::mt19937 rng(2026);
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; L2 flushed by %s; median of 50 graph replays\n", prop.name, prop.multiProcessorCount,
              flush_by_read ? "read" : "write");
  std::printf("empty kernel: %.1f µs\n", timer.median_us([&](cudaStream_t s) { empty_kernel<<<1, 32, 0, s>>>(timer.sink()); }));
  score_matrices(timer);
  gather_decode(timer, rng);
  dense_decode(timer, rng);
  return 0;
}
