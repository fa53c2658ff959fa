// Where a CTA of BatchedTopK's cluster method spends its time: runs the kernel built from the
// instrumented copy of cluster_select.cuh (instrument_topk.py; CMake generates it) on random
// normal rows, cold L2 (the default call, so the cluster method), and
// prints the median / p90 / max duration of each phase over the CTAs, the CTA lifetimes and the
// CTA start times (which show how many CTAs run at once: the waves). GPU machine:
//   cmake --build build --target topk_phases && build/bench/topk_phases/topk_phases [rows n k fp32|bf16]
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hylra/topk/batched_topk.cuh"  // includes the instrumented cluster_select.cuh: its directory comes first

#include "../tool_helpers.hpp"  // CHECK_CUDA, percentile

namespace {

constexpr int kStampsPerCta = 16;
constexpr const char* kPhases[] = {"clear + arrive",      "load + histogram",         "barrier wait",
                                   "histogram push",      "cluster sync",             "bucket find",
                                   "passes, classify + count", "scan + cluster sync", "write",
                                   "padding",             "barrier + refine (first CTA)"};

template <typename T>
void profile(int rows, int n, int k, const char* dtype) {
  std::vector<T> host(static_cast<std::size_t>(rows) * n);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (T& x : host) x = static_cast<T>(normal(rng));
  T* scores = nullptr;
  int* indices = nullptr;
  long long* stamps = nullptr;
  char* flush = nullptr;
  constexpr std::size_t kFlushBytes = 256u << 20;  // more than the 60 MB L2
  CHECK_CUDA(cudaMalloc(&scores, host.size() * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(scores, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMalloc(&indices, sizeof(int) * rows * k));
  CHECK_CUDA(cudaMalloc(&flush, kFlushBytes));
  int sms = 0, clock_khz = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const auto shape = hylra::detail::topk_launch_shape<T, hylra::BatchedTopKPolicy>(rows, n, sms);
  const int ctas = rows * shape.cluster_size;
  CHECK_CUDA(cudaMalloc(&stamps, sizeof(long long) * kStampsPerCta * ctas));
  CHECK_CUDA(cudaMemcpyToSymbol(g_topk_phase_stamps, &stamps, sizeof(stamps)));

  typename hylra::BatchedTopK<T>::Arguments args;
  args.scores = scores;
  args.row_stride = n;
  args.num_rows = rows;
  args.num_cols = n;
  args.k = k;
  args.indices = indices;
  for (int rep = 0; rep < 5; ++rep) {  // the last call's stamps are kept
    CHECK_CUDA(cudaMemset(stamps, 0, sizeof(long long) * kStampsPerCta * ctas));
    CHECK_CUDA(cudaMemset(flush, rep, kFlushBytes));
    const hylra::Status status = hylra::BatchedTopK<T>::run(args, nullptr, 0, nullptr);
    if (!status.ok()) {
      std::fprintf(stderr, "BatchedTopK: %s\n", hylra::to_string(status).c_str());
      std::exit(1);
    }
    CHECK_CUDA(cudaDeviceSynchronize());
  }
  std::vector<long long> h(static_cast<std::size_t>(kStampsPerCta) * ctas);
  CHECK_CUDA(cudaMemcpy(h.data(), stamps, sizeof(long long) * h.size(), cudaMemcpyDeviceToHost));

  std::printf("\n### %s %d x %d, k = %d: %d CTAs (%d per row x %d keys), SM clock %d MHz\n\n", dtype, rows, n, k,
              ctas, shape.cluster_size, shape.segment, clock_khz / 1000);
  std::printf("| phase | median µs | p90 µs | max µs | CTAs |\n|---|---|---|---|---|\n");
  const double us_per_clock = 1e3 / clock_khz;
  for (int p = 1; p <= 11; ++p) {
    std::vector<double> durations;
    for (int c = 0; c < ctas; ++c) {
      const long long begin = h[c * kStampsPerCta + p - 1], end = h[c * kStampsPerCta + p];
      if (begin != 0 && end != 0) durations.push_back(static_cast<double>(end - begin) * us_per_clock);
    }
    if (!durations.empty())
      std::printf("| %s | %.2f | %.2f | %.2f | %zu |\n", kPhases[p - 1], percentile(durations, 0.5),
                  percentile(durations, 0.9), percentile(durations, 1.0), durations.size());
  }
  long long first_start = h[12], last_end = 0;
  std::vector<double> lifetimes;
  for (int c = 0; c < ctas; ++c) {
    first_start = std::min(first_start, h[c * kStampsPerCta + 12]);
    last_end = std::max(last_end, h[c * kStampsPerCta + 13]);
    lifetimes.push_back(static_cast<double>(h[c * kStampsPerCta + 13] - h[c * kStampsPerCta + 12]) * 1e-3);
  }
  std::printf("\nCTA lifetime: median %.2f, p90 %.2f, max %.2f µs; first start to last end %.2f µs\n",
              percentile(lifetimes, 0.5), percentile(lifetimes, 0.9), percentile(lifetimes, 1.0),
              static_cast<double>(last_end - first_start) * 1e-3);
  std::printf("CTAs starting in each 2 µs after the first (a wave is one burst):");
  std::vector<int> starts(64);
  for (int c = 0; c < ctas; ++c) ++starts[std::min<long long>(63, (h[c * kStampsPerCta + 12] - first_start) / 2000)];
  for (int b = 0; b < 64; ++b)
    if (starts[b] != 0) std::printf(" [%d] %d", 2 * b, starts[b]);
  std::printf("\n");
  CHECK_CUDA(cudaFree(scores));
  CHECK_CUDA(cudaFree(indices));
  CHECK_CUDA(cudaFree(stamps));
  CHECK_CUDA(cudaFree(flush));
}

void profile(int rows, int n, int k, const std::string& dtype) {
  if (dtype == "bf16") profile<__nv_bfloat16>(rows, n, k, "bf16");
  else profile<float>(rows, n, k, "fp32");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5) {
    profile(std::atoi(argv[1]), std::atoi(argv[2]), std::atoi(argv[3]), argv[4]);
    return 0;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [rows n k fp32|bf16]\n", argv[0]);
    return 2;
  }
  for (const char* dtype : {"fp32", "bf16"}) {
    profile(1, 131072, 2048, dtype);
    profile(8, 131072, 2048, dtype);
    profile(64, 32768, 2048, dtype);
    profile(64, 131072, 2048, dtype);
    profile(256, 131072, 2048, dtype);
  }
  return 0;
}
