// Where a split-KV decode call spends its time: runs DenseDecode / GatherDecode built from the
// instrumented copies of decode_kernel.cuh and merge.cuh (instrument_decode.py; CMake generates
// them) on the benchmark's shapes (bf16, Hq 32, Hkv 8, d 128, page 64, shuffled block table),
// L2 flushed by a 256 MB write before each call, and prints for the decode CTAs the median /
// p90 / max of each phase, and for the whole call the decode and merge kernels' spans on the
// global timer against the CUDA-event time. GPU machine:
//   cmake --build build --target decode_phases && build/bench/decode_phases/decode_phases [dense|gather B N]
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "hylra/attention/decode.cuh"  // with the instrumented kernels: their directory comes first
#include "hylra/attention/gather.cuh"

#include "../fill_uniform.cuh"
#include "../tool_helpers.hpp"  // CHECK_CUDA, percentile, device_copy

namespace {

using T = __nv_bfloat16;
constexpr int kStampsPerCta = 16, kTimerSlot = 8;
constexpr int kHq = 32, kHkv = 8, kHeadDim = 128, kPage = 64, kGatherK = 2048;
constexpr const char* kPhases[] = {"index / q loaded (first entry)", "page looked up (first entry)",
                                   "first K/V tile arrived",         "remaining tiles",
                                   "warps combined, weights",        "output or partial written"};

__global__ void empty_kernel() {}

// CUDA-event time of an empty kernel, L2 flushed before each call as below: the floor under
// every event time this tool prints.
double empty_launch_us() {
  char* flush = nullptr;
  constexpr std::size_t kFlushBytes = 256u << 20;
  CHECK_CUDA(cudaMalloc(&flush, kFlushBytes));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> us;
  for (int rep = 0; rep < 40; ++rep) {
    CHECK_CUDA(cudaMemset(flush, rep, kFlushBytes));
    CHECK_CUDA(cudaEventRecord(start));
    empty_kernel<<<1, 32>>>();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    us.push_back(ms * 1e3);
  }
  CHECK_CUDA(cudaFree(flush));
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return percentile(us, 0.5);
}

void profile(bool gather, int batch, int n) {
  const int pages = batch * n / kPage;
  const std::size_t kv_elems = static_cast<std::size_t>(pages) * kPage * kHkv * kHeadDim;
  const std::size_t q_elems = static_cast<std::size_t>(batch) * kHq * kHeadDim;
  T *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr;
  CHECK_CUDA(cudaMalloc(&k, kv_elems * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&v, kv_elems * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&q, q_elems * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&out, q_elems * sizeof(T)));
  fill_uniform<<<1024, 256>>>(k, kv_elems, 1);
  fill_uniform<<<1024, 256>>>(v, kv_elems, 2);
  fill_uniform<<<64, 256>>>(q, q_elems, 3);
  std::mt19937 rng(7);
  std::vector<int> table(pages);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<int> ids, perm(n);
  for (int row = 0; gather && row < batch * kHkv; ++row) {  // kGatherK distinct tokens per (sequence, head)
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    ids.insert(ids.end(), perm.begin(), perm.begin() + kGatherK);
  }
  int* table_d = device_copy(table);
  int* lens_d = device_copy(std::vector<int>(batch, n));
  int* ids_d = gather ? device_copy(ids) : nullptr;
  const auto kv = hylra::make_paged_kv_cache<const T>(hylra::KvLayout::kNHD, k, v, pages, kPage, kHkv, kHeadDim,
                                                       table_d, n / kPage, lens_d, batch);

  hylra::DenseDecode<T, kHeadDim>::Arguments dense;
  hylra::GatherDecode<T, kHeadDim>::Arguments sparse;
  dense.q = sparse.q = q;
  dense.kv = sparse.kv = kv;
  dense.num_qo_heads = sparse.num_qo_heads = kHq;
  dense.sm_scale = sparse.sm_scale = 0.088f;
  dense.out = sparse.out = out;
  sparse.indices = hylra::IndexList{ids_d, nullptr, batch, kHkv, kGatherK, 1};
  hylra::detail::SplitPlan plan;
  const hylra::Status planned = gather ? hylra::GatherDecode<T, kHeadDim>::plan(sparse, &plan)
                                       : hylra::DenseDecode<T, kHeadDim>::plan(dense, &plan);
  if (!planned.ok()) {
    std::fprintf(stderr, "plan: %s\n", hylra::to_string(planned).c_str());
    std::exit(1);
  }
  void* workspace = nullptr;
  if (plan.workspace_bytes > 0) CHECK_CUDA(cudaMalloc(&workspace, plan.workspace_bytes));
  const auto call = [&] {
    const hylra::Status status =
        gather ? hylra::GatherDecode<T, kHeadDim>::run(sparse, workspace, plan.workspace_bytes, nullptr)
               : hylra::DenseDecode<T, kHeadDim>::run(dense, workspace, plan.workspace_bytes, nullptr);
    if (!status.ok()) {
      std::fprintf(stderr, "run: %s\n", hylra::to_string(status).c_str());
      std::exit(1);
    }
  };

  const int ctas = plan.num_splits * (kHkv / plan.heads_per_cta) * batch;  // plan() may pack KV heads
  const int merge_ctas = batch * kHq;  // the merge grid never exceeds one CTA per query row
  long long *decode_stamps = nullptr, *merge_stamps = nullptr;
  CHECK_CUDA(cudaMalloc(&decode_stamps, sizeof(long long) * kStampsPerCta * ctas));
  CHECK_CUDA(cudaMalloc(&merge_stamps, sizeof(long long) * kStampsPerCta * merge_ctas));
  char* flush = nullptr;
  constexpr std::size_t kFlushBytes = 256u << 20;  // more than the 60 MB L2
  CHECK_CUDA(cudaMalloc(&flush, kFlushBytes));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  int clock_khz = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const auto set_tables = [&](long long* decode_table, long long* merge_table) {
    CHECK_CUDA(cudaMemcpyToSymbol(g_decode_phase_stamps, &decode_table, sizeof(decode_table)));
    CHECK_CUDA(cudaMemcpyToSymbol(g_merge_phase_stamps, &merge_table, sizeof(merge_table)));
  };
  set_tables(nullptr, nullptr);
  for (int i = 0; i < 50; ++i) call();  // warm-up
  CHECK_CUDA(cudaDeviceSynchronize());

  // Odd calls are stamped, even ones not: the event times of both show what the stamps cost.
  std::vector<double> plain_us, stamped_us, decode_span, merge_first_start, merge_last_released, merge_last_end;
  std::vector<double> phase[6];
  // Per decode CTA on the global timer (us after the call's first CTA start), and each SM's CTA
  // durations in alternate stamped calls: if the same SMs are slow in both halves, a static split
  // cannot even out the finish, whatever its granularity.
  std::vector<double> cta_start, cta_end, cta_duration;
  constexpr int kMaxSms = 256;
  std::vector<double> sm_sum[2] = {std::vector<double>(kMaxSms), std::vector<double>(kMaxSms)};
  std::vector<int> sm_count[2] = {std::vector<int>(kMaxSms), std::vector<int>(kMaxSms)};
  int stamped_calls = 0;
  std::vector<long long> d(static_cast<std::size_t>(kStampsPerCta) * ctas), m(static_cast<std::size_t>(kStampsPerCta) * merge_ctas);
  for (int rep = 0; rep < 40; ++rep) {
    const bool stamped = rep % 2 == 1;
    set_tables(stamped ? decode_stamps : nullptr, stamped ? merge_stamps : nullptr);
    CHECK_CUDA(cudaMemset(decode_stamps, 0, sizeof(long long) * d.size()));
    CHECK_CUDA(cudaMemset(merge_stamps, 0, sizeof(long long) * m.size()));
    CHECK_CUDA(cudaMemset(flush, rep, kFlushBytes));
    CHECK_CUDA(cudaEventRecord(start));
    call();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    (stamped ? stamped_us : plain_us).push_back(ms * 1e3);
    if (!stamped) continue;
    CHECK_CUDA(cudaMemcpy(d.data(), decode_stamps, sizeof(long long) * d.size(), cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(m.data(), merge_stamps, sizeof(long long) * m.size(), cudaMemcpyDeviceToHost));
    long long first = LLONG_MAX, last = 0;
    for (int c = 0; c < ctas; ++c) {
      first = std::min(first, d[c * kStampsPerCta + kTimerSlot]);
      last = std::max(last, d[c * kStampsPerCta + kTimerSlot + 6]);
      for (int p = 1; p <= 6; ++p)
        if (d[c * kStampsPerCta + p] != 0 && d[c * kStampsPerCta + p - 1] != 0)
          phase[p - 1].push_back(static_cast<double>(d[c * kStampsPerCta + p] - d[c * kStampsPerCta + p - 1]) * 1e3 / clock_khz);
    }
    decode_span.push_back(static_cast<double>(last - first) * 1e-3);
    const int half = stamped_calls++ % 2;
    for (int c = 0; c < ctas; ++c) {
      const long long* stamp = &d[static_cast<std::size_t>(c) * kStampsPerCta];
      const double begin = static_cast<double>(stamp[kTimerSlot] - first) * 1e-3;
      const double end = static_cast<double>(stamp[kTimerSlot + 6] - first) * 1e-3;
      cta_start.push_back(begin);
      cta_end.push_back(end);
      cta_duration.push_back(end - begin);
      const int sm = static_cast<int>(stamp[7]);
      if (sm >= 0 && sm < kMaxSms) {
        sm_sum[half][sm] += end - begin;
        ++sm_count[half][sm];
      }
    }
    long long merge_start = LLONG_MAX, merge_released = 0, merge_end = 0;
    for (int c = 0; c < merge_ctas; ++c) {
      if (m[c * kStampsPerCta + kTimerSlot] == 0) continue;
      merge_start = std::min(merge_start, m[c * kStampsPerCta + kTimerSlot]);
      merge_released = std::max(merge_released, m[c * kStampsPerCta + kTimerSlot + 1]);
      merge_end = std::max(merge_end, m[c * kStampsPerCta + kTimerSlot + 2]);
    }
    if (merge_end != 0) {
      merge_first_start.push_back(static_cast<double>(merge_start - first) * 1e-3);
      merge_last_released.push_back(static_cast<double>(merge_released - first) * 1e-3);
      merge_last_end.push_back(static_cast<double>(merge_end - first) * 1e-3);
    }
  }

  std::printf("\n### %s B=%d N=%d%s: %d CTAs (%d splits x %d groups of %d KV heads x %d), %d slots per chunk\n\n",
              gather ? "gather" : "dense", batch, n, gather ? ", k = 2048 tokens" : "", ctas, plan.num_splits,
              kHkv / plan.heads_per_cta, plan.heads_per_cta, batch, plan.chunk_slots);
  std::printf("event time %.2f us (stamped calls %.2f); on the global timer from the first decode CTA's start: "
              "decode ends %.2f",
              percentile(plain_us, 0.5), percentile(stamped_us, 0.5), percentile(decode_span, 0.5));
  if (!merge_last_end.empty())
    std::printf(", merge starts %.2f, leaves griddepcontrol.wait %.2f, ends %.2f", percentile(merge_first_start, 0.5),
                percentile(merge_last_released, 0.5), percentile(merge_last_end, 0.5));
  std::printf(" us (medians)\n\n| decode CTA phase, ends when | median us | p90 us | max us |\n|---|---|---|---|\n");
  for (int p = 0; p < 6; ++p)
    std::printf("| %s | %.2f | %.2f | %.2f |\n", kPhases[p], percentile(phase[p], 0.5), percentile(phase[p], 0.9),
                percentile(phase[p], 1.0));
  std::printf("\n| decode CTAs, us | min | p10 | median | p90 | max |\n|---|---|---|---|---|---|\n");
  const std::pair<const char*, std::vector<double>*> spreads[] = {
      {"start after the first CTA's", &cta_start}, {"end after the first CTA's start", &cta_end},
      {"lifetime", &cta_duration}};
  for (const auto& [name, values] : spreads)
    std::printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name, percentile(*values, 0.0), percentile(*values, 0.1),
                percentile(*values, 0.5), percentile(*values, 0.9), percentile(*values, 1.0));
  // Mean CTA lifetime per SM in the even and the odd stamped calls, and their correlation over SMs.
  std::vector<double> even, odd;
  for (int sm = 0; sm < kMaxSms; ++sm)
    if (sm_count[0][sm] > 0 && sm_count[1][sm] > 0) {
      even.push_back(sm_sum[0][sm] / sm_count[0][sm]);
      odd.push_back(sm_sum[1][sm] / sm_count[1][sm]);
    }
  if (even.size() > 2) {
    const double n = static_cast<double>(even.size());
    const double mean_even = std::accumulate(even.begin(), even.end(), 0.0) / n;
    const double mean_odd = std::accumulate(odd.begin(), odd.end(), 0.0) / n;
    double cov = 0.0, var_even = 0.0, var_odd = 0.0;
    for (std::size_t i = 0; i < even.size(); ++i) {
      cov += (even[i] - mean_even) * (odd[i] - mean_odd);
      var_even += (even[i] - mean_even) * (even[i] - mean_even);
      var_odd += (odd[i] - mean_odd) * (odd[i] - mean_odd);
    }
    std::vector<double> all(even);
    for (std::size_t i = 0; i < odd.size(); ++i) all[i] = 0.5 * (even[i] + odd[i]);
    std::printf("\nper-SM mean CTA lifetime over %zu SMs: min %.2f, median %.2f, max %.2f us; correlation between "
                "alternate calls %.2f\n",
                even.size(), percentile(all, 0.0), percentile(all, 0.5), percentile(all, 1.0),
                var_even > 0.0 && var_odd > 0.0 ? cov / std::sqrt(var_even * var_odd) : 0.0);
  }
  for (void* ptr : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q), static_cast<void*>(out),
                    static_cast<void*>(table_d), static_cast<void*>(lens_d), static_cast<void*>(ids_d), workspace,
                    static_cast<void*>(decode_stamps), static_cast<void*>(merge_stamps), static_cast<void*>(flush)})
    CHECK_CUDA(cudaFree(ptr));
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4) {
    profile(std::string(argv[1]) == "gather", std::atoi(argv[2]), std::atoi(argv[3]));
    return 0;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [dense|gather B N]\n", argv[0]);
    return 2;
  }
  std::printf("event time of an empty kernel after the same L2 flush: %.2f us\n", empty_launch_us());
  profile(true, 1, 32768);
  profile(true, 8, 32768);
  profile(true, 32, 32768);
  profile(false, 1, 8192);
  profile(false, 1, 32768);
  profile(false, 1, 131072);
  return 0;
}
