// BatchedTopK and BlockPooling against reference::topk_row / pool_blocks: every dtype, N from 1 to
// 1M, k from 1 to past N, row lengths varying within a launch, adversarial scores, forced
// positions, sorted output, block-table translation and argument checks. The selected set is
// compared exactly; every output element is poisoned first and checked written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "hylra/reference/topk.hpp"
#include "hylra/topk/batched_topk.cuh"
#include "hylra/topk/block_pooling.cuh"
#include "topk_test_util.cuh"

using namespace hylra;
using namespace topk_test;

namespace {

struct Case {
  int rows;
  int cols;
  int k;
  Pattern pattern = Pattern::kNormal;
  bool vary_lengths = true;
  std::int64_t stride_pad = 0;  // row_stride - cols: odd values exercise the unaligned path
  bool largest = true;
  bool sorted = false;
  int sinks = 0;
  int recent = 0;
  int page_size = 0;  // > 0: translate through a random block table
  bool graph = false;  // run() captured into a CUDA graph, replayed twice
};

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// The output of one launch: indices, values, counts and the workspace as downloaded.
template <typename T>
struct TopKOutput {
  std::vector<std::int32_t> indices, counts;
  std::vector<T> values;
  std::vector<unsigned char> workspace;
};

// The method a test policy asks for: its kTestMethod (the sampled policies below), else the
// default.
template <typename Policy, typename = void>
struct TestMethod {
  static constexpr TopKMethod value = TopKMethod::kCluster;
};
template <typename Policy>
struct TestMethod<Policy, std::void_t<decltype(Policy::kTestMethod)>> {
  static constexpr TopKMethod value = Policy::kTestMethod;
};

// Captures `enqueue(stream)` (it returns a Status) into a CUDA graph and replays it twice, calling
// `poison()` before the second replay, so that the caller checks what a replay wrote.
template <typename Enqueue, typename Poison>
void replay_captured_twice(Enqueue&& enqueue, Poison&& poison) {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess);
  const Status status = enqueue(stream);
  REQUIRE(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
  REQUIRE_MESSAGE(status.ok(), to_string(status));
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    if (replay == 1) poison();
    REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Runs BatchedTopK on `scores` (c.rows rows of stride c.cols + c.stride_pad) and checks every row
// against the reference; returns the output.
template <typename T, typename Policy = BatchedTopKPolicy>
TopKOutput<T> check_scores(const Case& c, const std::vector<T>& scores, std::mt19937_64& rng) {
  CAPTURE(c.rows);
  CAPTURE(c.cols);
  CAPTURE(c.k);
  CAPTURE(name(c.pattern));
  CAPTURE(c.stride_pad);
  CAPTURE(c.largest);
  CAPTURE(c.sorted);
  CAPTURE(c.sinks);
  CAPTURE(c.recent);
  CAPTURE(c.page_size);
  CAPTURE(c.graph);
  const std::int64_t stride = c.cols + c.stride_pad;
  REQUIRE(scores.size() == static_cast<std::size_t>(c.rows) * stride);
  std::vector<std::int32_t> lengths(c.rows, c.cols);
  if (c.vary_lengths) {
    for (int r = 0; r < c.rows; ++r) lengths[r] = static_cast<int>(rng() % (c.cols + 1));
    if (c.rows > 1) lengths[1] = 0;  // an empty row
    lengths[0] = c.cols;             // a full one
    if (c.rows > 2) lengths[2] = c.cols + 5;  // past N: clamped
  }
  // Block table: rows_per_sequence = 2, pages of each sequence shuffled.
  const int rows_per_sequence = 2;
  const int max_pages = c.page_size > 0 ? (c.cols + c.page_size - 1) / c.page_size : 0;
  const int sequences = (c.rows + rows_per_sequence - 1) / rows_per_sequence;
  std::vector<std::int32_t> table(static_cast<std::size_t>(sequences) * (max_pages + 1), -7);
  for (int s = 0; s < sequences && c.page_size > 0; ++s) {
    for (int p = 0; p < max_pages; ++p) table[s * (max_pages + 1) + p] = s * max_pages + p;
    std::shuffle(table.begin() + s * (max_pages + 1), table.begin() + s * (max_pages + 1) + max_pages, rng);
  }

  DeviceBuffer<T> d_scores(scores.size());
  DeviceBuffer<std::int32_t> d_lengths(c.rows), d_indices(static_cast<std::size_t>(c.rows) * c.k), d_counts(c.rows),
      d_table(table.size());
  DeviceBuffer<T> d_values(static_cast<std::size_t>(c.rows) * c.k);
  d_scores.upload(scores);
  d_lengths.upload(lengths);
  d_table.upload(table);
  d_indices.poison();
  d_values.poison();
  d_counts.poison();

  typename BatchedTopK<T, Policy>::Arguments args;
  args.scores = d_scores.ptr;
  args.row_stride = stride;
  args.num_rows = c.rows;
  args.num_cols = c.cols;
  args.lengths = c.vary_lengths ? d_lengths.ptr : nullptr;
  args.k = c.k;
  args.indices = d_indices.ptr;
  args.values = d_values.ptr;
  args.counts = d_counts.ptr;
  args.largest = c.largest;
  args.sorted = c.sorted;
  args.sink_tokens = c.sinks;
  args.recent_tokens = c.recent;
  args.method = TestMethod<Policy>::value;
  if (c.page_size > 0) {
    args.block_table = d_table.ptr;
    args.block_table_stride = max_pages + 1;
    args.max_pages = max_pages;
    args.page_size = c.page_size;
    args.rows_per_sequence = rows_per_sequence;
  }
  const std::size_t workspace_bytes = BatchedTopK<T, Policy>::workspace_size(args);
  DeviceBuffer<unsigned char> workspace(workspace_bytes);
  workspace.poison();  // stale contents must not matter
  if (c.graph) {
    replay_captured_twice(
        [&](cudaStream_t stream) { return BatchedTopK<T, Policy>::run(args, workspace.ptr, workspace_bytes, stream); },
        [&] {
          d_indices.poison();
          d_values.poison();
          d_counts.poison();
          workspace.poison();
        });
  } else {
    const Status status = BatchedTopK<T, Policy>::run(args, workspace.ptr, workspace_bytes, nullptr);
    REQUIRE_MESSAGE(status.ok(), to_string(status));
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  }
  const std::vector<std::int32_t> indices = d_indices.download(), counts = d_counts.download();
  const std::vector<T> values = d_values.download();
  const std::vector<unsigned char> workspace_bytes_after = workspace.download();

  const auto translate = [&](int row, int pos) {
    if (c.page_size <= 0) return pos;
    return table[(row / rows_per_sequence) * (max_pages + 1) + pos / c.page_size] * c.page_size + pos % c.page_size;
  };
  std::vector<int> logical_page(static_cast<std::size_t>(sequences) * max_pages);
  for (int s = 0; s < sequences && c.page_size > 0; ++s)
    for (int p = 0; p < max_pages; ++p) logical_page[table[s * (max_pages + 1) + p]] = p;
  const auto to_logical = [&](int physical) {  // tables of different sequences use disjoint pages
    if (c.page_size <= 0) return physical;
    return logical_page[physical / c.page_size] * c.page_size + physical % c.page_size;
  };
  for (int r = 0; r < c.rows; ++r) {
    CAPTURE(r);
    const int len = std::min(std::max(lengths[r], 0), c.cols);
    CAPTURE(len);
    const T* row = scores.data() + static_cast<std::int64_t>(r) * stride;
    const std::vector<std::int32_t> ref = reference::topk_row(row, c.vary_lengths ? len : c.cols, c.k, c.largest,
                                                              c.sinks, c.recent);
    const int selected = static_cast<int>(std::count_if(ref.begin(), ref.end(), [](std::int32_t x) { return x >= 0; }));
    REQUIRE(counts[r] == selected);
    std::vector<std::int32_t> want(ref.begin(), ref.begin() + selected);
    for (auto& p : want) p = translate(r, p);
    std::vector<std::int32_t> got(indices.begin() + static_cast<std::int64_t>(r) * c.k,
                                  indices.begin() + static_cast<std::int64_t>(r) * c.k + selected);
    if (c.sorted) {
      REQUIRE(got == want);
    } else {
      std::sort(want.begin(), want.end());
      std::sort(got.begin(), got.end());
      REQUIRE(got == want);
    }
    for (int j = 0; j < c.k; ++j) {
      const std::int64_t o = static_cast<std::int64_t>(r) * c.k + j;
      if (j >= selected) {
        REQUIRE(indices[o] == -1);
        REQUIRE(std::isnan(to_float(values[o])));
      } else {
        REQUIRE(same_bits(values[o], row[to_logical(indices[o])]));
      }
    }
  }
  return {indices, counts, values, workspace_bytes_after};
}

// The sampled method's workspace of a check_scores launch, as it downloaded it: per-row
// thresholds and candidate counts.
template <typename T, typename Policy>
detail::SampledWorkspace<T> sampled_workspace(TopKOutput<T>& out, const Case& c) {
  typename BatchedTopK<T, Policy>::Arguments args;
  args.num_rows = c.rows;
  args.num_cols = c.cols;
  const detail::SampledPlan<T, Policy> plan(args);
  return detail::SampledWorkspace<T>::in(out.workspace.data(), c.rows, plan.tiles_per_row, Policy::kSampledCapacity);
}

template <typename T, typename Policy = BatchedTopKPolicy>
void check_case(const Case& c, std::mt19937_64& rng) {
  const std::vector<T> scores =
      make_scores<T>(static_cast<std::size_t>(c.rows) * (c.cols + c.stride_pad), c.pattern, rng);
  check_scores<T, Policy>(c, scores, rng);
}

const int kSizes[] = {1, 7, 1000, 8192, 131072, 1 << 20};

template <typename T, typename Policy = BatchedTopKPolicy>
void check_size_grid() {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int n : kSizes) {
    const int rows = n >= (1 << 20) ? 2 : (n >= 131072 ? 3 : 5);
    for (int k : {1, 64, 2048, 4096, n + 3}) check_case<T, Policy>(Case{rows, n, k}, rng);
  }
}

template <typename T, typename Policy = BatchedTopKPolicy>
void check_adversarial() {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (Pattern p : kAllPatterns)
    for (int n : {1000, 8192, 131072})
      for (int k : {64, 2048}) {
        Case c{3, n, k, p};
        c.largest = (n + k) % 3 != 0;
        check_case<T, Policy>(c, rng);
      }
}

}  // namespace

TEST_CASE_TEMPLATE("BatchedTopK selects exactly the reference set over N and k", T, float, half, __nv_bfloat16) {
  check_size_grid<T>();
}

TEST_CASE_TEMPLATE("BatchedTopK on adversarial scores", T, float, half, __nv_bfloat16) { check_adversarial<T>(); }

template <typename T, typename Policy = BatchedTopKPolicy>
void check_options() {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  Case unaligned{4, 1001, 100, Pattern::kFewValues};
  unaligned.stride_pad = 3;
  check_case<T, Policy>(unaligned, rng);
  // Long unaligned rows: the 512-thread kernels that read as the run-time flags say
  // (SegmentAccess::kAny), with the sparse passes (one row: one wave) and the refine (40 rows).
  for (int rows : {1, 40}) {
    Case long_unaligned{rows, 131072, 2048};
    long_unaligned.stride_pad = 1;
    check_case<T, Policy>(long_unaligned, rng);
  }
  Case forced{6, 8192, 256, Pattern::kSpecials};
  forced.sinks = 4;
  forced.recent = 64;
  check_case<T, Policy>(forced, rng);
  Case over{3, 300, 16};  // forced positions outnumber k: the lowest positions win
  over.sinks = 10;
  over.recent = 20;
  check_case<T, Policy>(over, rng);
  for (Pattern p : {Pattern::kNormal, Pattern::kSpecials, Pattern::kFewValues}) {
    Case sorted{5, 20000, 4096, p};
    sorted.sorted = true;
    sorted.largest = p != Pattern::kFewValues;
    sorted.sinks = 2;
    check_case<T, Policy>(sorted, rng);
  }
  Case paged{5, 5000, 333, Pattern::kNormal};
  paged.page_size = 16;
  check_case<T, Policy>(paged, rng);
  paged.sorted = true;
  check_case<T, Policy>(paged, rng);
}

TEST_CASE_TEMPLATE("BatchedTopK unaligned rows, forced positions, sorted output and block tables", T, float,
                   __nv_bfloat16) {
  check_options<T>();
}

// Another policy: clusters of up to 16 CTAs (non-portable), 256 threads, a 12-bit first digit
// and 11-bit later digits (the default takes 11 and 8).
struct WideClusterPolicy : BatchedTopKPolicy {
  static constexpr int kThreads = 256;
  static constexpr int kFirstDigitBits = 12;
  static constexpr int kDigitBits = 11;
  static constexpr int kMaxClusterSize = 16;
  static constexpr int kPreferredSegmentBytes = 16 * 1024;
};

// Keys never cached in shared memory: every pass re-reads the scores (the path of very long rows,
// here at every size, with the fast path and the small-segment CTAs). 300000-key rows give each
// thread 3 chunks of the classify pass, past the 2 whose masks stay in registers.
struct UncachedPolicy : BatchedTopKPolicy {
  static constexpr int kMaxSegmentBytes = 0;
};

TEST_CASE_TEMPLATE("BatchedTopK with another policy", T, float, __nv_bfloat16) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (Pattern p : kAllPatterns)
    for (int n : {7, 8192, 131072, 300000, 1 << 20}) {
      Case c{3, n, p == Pattern::kNormal ? 4096 : 2048, p};
      c.largest = p != Pattern::kAscending;
      check_case<T, WideClusterPolicy>(c, rng);
      if (n <= 300000) check_case<T, UncachedPolicy>(c, rng);
      if (n == 300000) check_case<T>(c, rng);  // cached, 3 chunks per thread
    }
}

// A row whose k-th score lies in a first-digit bucket (of Policy) holding exactly `bucket` keys, of
// which `take` are selected: k - take scores in [8, 16), `bucket` scores in the bucket just above
// 4, the rest in (-4, 4), at shuffled positions. With `distinct` > 0 the bucket's scores take
// only that many values, so exact ties cross the k-th slot. Negated for smallest-first.
template <typename T, typename Policy>
std::vector<T> bucket_row(int cols, int k, int take, int bucket, int distinct, bool largest, std::mt19937_64& rng) {
  constexpr int kBits = 8 * static_cast<int>(sizeof(T));
  constexpr int kLowBits = kBits - (Policy::kFirstDigitBits < kBits ? Policy::kFirstDigitBits : kBits);
  REQUIRE(k - take + bucket <= cols);
  const auto with_bits = [](std::uint32_t bits) {
    T x;
    std::memcpy(static_cast<void*>(&x), &bits, sizeof(T));
    return x;
  };
  std::uint32_t four = 0;  // 4.0's low bits are zero: 4.0 + j units in the last place stay in its bucket
  const T four_t = from_float<T>(4.0f);
  std::memcpy(&four, &four_t, sizeof(T));
  std::vector<std::uint32_t> tie_values;
  for (int i = 0; i < distinct; ++i) tie_values.push_back(static_cast<std::uint32_t>(rng() % (1u << kLowBits)));
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::normal_distribution<float> normal;
  std::vector<T> row;
  for (int i = 0; i < k - take; ++i) row.push_back(from_float<T>(8.0f + 8.0f * uniform(rng)));
  for (int i = 0; i < bucket; ++i)
    row.push_back(with_bits(four + (distinct > 0 ? tie_values[rng() % distinct] : rng() % (1u << kLowBits))));
  while (static_cast<int>(row.size()) < cols) row.push_back(from_float<T>(std::max(-3.5f, std::min(3.5f, normal(rng)))));
  if (!largest)
    for (T& x : row) x = from_float<T>(-to_float(x));
  std::shuffle(row.begin(), row.end(), rng);
  return row;
}

// Rows whose threshold bucket just fits and just overflows the candidate buffer, in one launch
// (`copies` rows of each): the one-CTA refine and the multi-pass fallback side by side.
template <typename T, typename Policy>
std::vector<T> candidate_rows(int cols, int k, bool largest, int copies, std::mt19937_64& rng, int& rows) {
  constexpr int kCap = Policy::kCandidateCapacity;
  struct Spec {
    int take, bucket, distinct;
  };
  const Spec specs[] = {
      {kCap / 2, kCap, 0},      // just fits: refined by the first CTA
      {kCap / 2, kCap + 1, 0},  // one more: cluster-wide passes
      {kCap, kCap, 0},          // the whole bucket is taken: nothing to refine
      {kCap / 3, kCap - 1, 3},  // three values: exact ties across the k-th slot
      {kCap / 3, kCap + 1, 3},
      {kCap / 2, kCap, 1},      // one value: the lowest positions win
      {1, 1, 0},
      {1, 2, 1},
  };
  std::vector<T> scores;
  for (int copy = 0; copy < copies; ++copy)
    for (const Spec& spec : specs) {
      const std::vector<T> row = bucket_row<T, Policy>(cols, k, spec.take, spec.bucket, spec.distinct, largest, rng);
      scores.insert(scores.end(), row.begin(), row.end());
    }
  rows = copies * static_cast<int>(sizeof(specs) / sizeof(specs[0]));
  return scores;
}

template <typename T, typename Policy>
void check_candidate_buckets(int cols, int k, int copies = 1) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int variant = 0; variant < 3; ++variant) {
    Case c{0, cols, k};
    c.vary_lengths = false;
    c.largest = variant != 1;
    c.sorted = variant == 2 && k <= BatchedTopKPolicy::kMaxSortedK;
    const std::vector<T> scores = candidate_rows<T, Policy>(cols, k, c.largest, copies, rng, c.rows);
    check_scores<T, Policy>(c, scores, rng);
  }
}

// A candidate buffer smaller than the default, so the test's buckets also overflow it cheaply.
struct SmallCandidatePolicy : BatchedTopKPolicy {
  static constexpr int kCandidateCapacity = 1024;
};

TEST_CASE_TEMPLATE("BatchedTopK candidate buckets that fit and overflow", T, float, half, __nv_bfloat16) {
  // 8 rows of 16K-key segments, one wave: the cluster-wide passes; 64 rows (more than a wave)
  // refine in the first CTA.
  check_candidate_buckets<T, BatchedTopKPolicy>(131072, 5000);
  check_candidate_buckets<T, BatchedTopKPolicy>(131072, 5000, 8);
  check_candidate_buckets<T, BatchedTopKPolicy>(24000, 5000);  // 8 CTAs of 3000 keys: small-segment CTAs
  check_candidate_buckets<T, SmallCandidatePolicy>(131072, 2048);
  check_candidate_buckets<T, SmallCandidatePolicy>(20000, 2048);  // 4 CTAs of 5000 keys: cluster-wide passes
}

// Three more runs on the same inputs give bitwise the same output: 16 rows of normal scores and
// rows whose k-th score ties inside a candidate bucket.
template <typename T, typename Policy>
void check_reproducible(int bucket_k) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  Case normal{16, 131072, 2048};
  const std::vector<T> normal_scores = make_scores<T>(16 * 131072, Pattern::kNormal, rng);
  Case buckets{0, 131072, bucket_k};
  buckets.vary_lengths = false;
  const std::vector<T> bucket_scores = candidate_rows<T, Policy>(131072, bucket_k, true, 1, rng, buckets.rows);
  for (const auto& [c, scores] : {std::make_pair(normal, &normal_scores), std::make_pair(buckets, &bucket_scores)}) {
    std::mt19937_64 lengths_rng(seed);  // the same lengths every time
    const TopKOutput<T> first = check_scores<T, Policy>(c, *scores, lengths_rng);
    for (int again = 0; again < 3; ++again) {
      lengths_rng.seed(seed);
      const TopKOutput<T> out = check_scores<T, Policy>(c, *scores, lengths_rng);
      REQUIRE(out.indices == first.indices);
      REQUIRE(out.counts == first.counts);
      REQUIRE(std::memcmp(out.values.data(), first.values.data(), sizeof(T) * out.values.size()) == 0);
    }
  }
}

TEST_CASE_TEMPLATE("BatchedTopK output is bitwise reproducible", T, float, __nv_bfloat16) {
  check_reproducible<T, BatchedTopKPolicy>(5000);
}

// The sampled-threshold method wherever it applies (the default policy takes it from 16 rows of
// 32K when asked).
struct SampledPolicy : BatchedTopKPolicy {
  static constexpr TopKMethod kTestMethod = TopKMethod::kSampled;
  static constexpr int kSampledMinRows = 1;
  static constexpr int kSampledMinCols = 1;
  static constexpr std::int64_t kSampledMinKeys = 0;
};

// ... with a small sample, small tiles and a small candidate capacity: more rows are sampled
// (not read whole), rows span many tiles, and rows of many equal scores overflow the capacity.
struct SmallSamplePolicy : SampledPolicy {
  static constexpr int kSampleThreads = 128;
  static constexpr int kSampleKeys = 1024;
  static constexpr int kFilterKeysPerThread = 8;
  static constexpr int kSampledCapacity = 2048;
  static constexpr int kMaxSampledTiles = 2048;
};

// ... with a threshold set 3 standard deviations too high: most rows of normal scores get fewer
// than k candidates and are selected again by the cluster method (misled_rows_kernel).
struct MisjudgedSamplePolicy : SampledPolicy {
  static constexpr float kSampleSigmas = -3.0f;
};

TEST_CASE_TEMPLATE("BatchedTopK sampled-threshold method", T, float, half, __nv_bfloat16) {
  check_size_grid<T, SampledPolicy>();
  check_adversarial<T, SampledPolicy>();
  check_options<T, SampledPolicy>();
  check_candidate_buckets<T, SampledPolicy>(131072, 2048);
  check_reproducible<T, SampledPolicy>(2048);
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int n : {40000, 131072}) {  // forced positions over several tiles
    Case forced{5, n, 2048, Pattern::kSpecials};
    forced.sinks = 7;
    forced.recent = 1500;
    check_case<T, SampledPolicy>(forced, rng);
    forced.largest = false;
    forced.pattern = Pattern::kNormal;
    forced.page_size = 64;
    check_case<T, SampledPolicy>(forced, rng);
  }
}

TEST_CASE_TEMPLATE("BatchedTopK sampled method: small samples and tiles, fallbacks", T, float, __nv_bfloat16) {
  check_size_grid<T, SmallSamplePolicy>();
  check_adversarial<T, SmallSamplePolicy>();
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int n : {8192, 131072, 1 << 20})
    for (int k : {64, 2048}) {
      Case misjudged{4, n, k};
      misjudged.sorted = k == 64;
      check_case<T, MisjudgedSamplePolicy>(misjudged, rng);
    }
  // More misled rows than one wave of misled_rows_kernel's clusters, among rows it leaves alone.
  Case many{300, 40000, 64};
  many.vary_lengths = false;
  const std::vector<T> scores = make_scores<T>(static_cast<std::size_t>(many.rows) * many.cols, Pattern::kNormal, rng);
  TopKOutput<T> out = check_scores<T, MisjudgedSamplePolicy>(many, scores, rng);
  const auto workspace = sampled_workspace<T, MisjudgedSamplePolicy>(out, many);
  int misled = 0;
  for (int r = 0; r < many.rows; ++r)
    misled += detail::sample_misled(workspace.counts[r], workspace.thresholds[r] == 1, many.k,
                                    MisjudgedSamplePolicy::kSampledCapacity);
  CHECK(misled > MisjudgedSamplePolicy::kCtasPerSm * 132);  // more than one wave of clusters of one CTA
}

// Both methods (the sampled one with rows its sample misled, and sorted output) launch a fixed
// chain of kernels with no host synchronisation: captured once, a graph replays them exactly.
TEST_CASE_TEMPLATE("BatchedTopK replays from a captured CUDA graph", T, float, __nv_bfloat16) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  Case cluster{8, 40000, 2048};
  cluster.graph = true;
  check_case<T, BatchedTopKPolicy>(cluster, rng);
  Case sampled{16, 131072, 2048};
  sampled.graph = true;
  sampled.sorted = true;
  sampled.page_size = 64;
  check_case<T, SampledPolicy>(sampled, rng);
  Case misled{16, 131072, 64};
  misled.graph = true;
  check_case<T, MisjudgedSamplePolicy>(misled, rng);
}

// Which path each row took, read from the workspace's per-row candidate counts: rows of random
// normal scores take the fast path (the fallback selects the same set, only slower, so no other
// test can tell them apart) and a row of equal scores overflows the capacity and falls back.
TEST_CASE_TEMPLATE("BatchedTopK sampled method: fast path on random rows, fallback on equal ones", T, float,
                   __nv_bfloat16) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  constexpr int kRows = 16, kCols = 131072, kEqualRow = 5;
  Case c{kRows, kCols, 2048};
  c.vary_lengths = false;
  std::vector<T> scores = make_scores<T>(static_cast<std::size_t>(kRows) * kCols, Pattern::kNormal, rng);
  const std::vector<T> equal = make_scores<T>(kCols, Pattern::kAllEqual, rng);
  std::copy(equal.begin(), equal.end(), scores.begin() + static_cast<std::ptrdiff_t>(kEqualRow) * kCols);
  TopKOutput<T> out = check_scores<T, SampledPolicy>(c, scores, rng);
  const auto workspace = sampled_workspace<T, SampledPolicy>(out, c);
  for (int r = 0; r < kRows; ++r) {
    CAPTURE(r);
    const int candidates = workspace.counts[r];
    if (r == kEqualRow) {
      CHECK(candidates == kCols);  // every score ties with the threshold
    } else {
      CHECK(candidates >= c.k);
      CHECK(candidates <= SampledPolicy::kSampledCapacity);
    }
  }
}

TEST_CASE("BatchedTopK reports bad arguments") {
  float dummy_scores[4];
  std::int32_t dummy_indices[4];
  BatchedTopK<float>::Arguments args;
  args.scores = dummy_scores;
  args.indices = dummy_indices;
  args.num_rows = 1;
  args.num_cols = 4;
  args.row_stride = 4;
  args.k = 2;
  CHECK(BatchedTopK<float>::can_implement(args).ok());
  auto bad = args;
  bad.scores = nullptr;
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kNullPointer);
  bad = args;
  bad.k = 0;
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kInvalidValue);
  bad = args;
  bad.row_stride = 3;
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kInvalidStride);
  bad = args;
  bad.sorted = true;
  bad.k = 5000;
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kNotSupported);
  bad = args;
  bad.method = static_cast<TopKMethod>(7);
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kInvalidValue);
  bad = args;
  bad.block_table = dummy_indices;
  CHECK(BatchedTopK<float>::can_implement(bad) == StatusCode::kInvalidShape);
  CHECK(BatchedTopK<float>::run(bad, nullptr, 0, nullptr) == StatusCode::kInvalidShape);
  CHECK(BatchedTopK<float>::workspace_size(bad) == 0);

  // 64 rows of 128K: the default method needs no workspace; the sampled one, on request, does.
  DeviceBuffer<float> scores(64 * 131072);
  DeviceBuffer<std::int32_t> indices(64 * 2048);
  auto many = args;
  many.scores = scores.ptr;
  many.indices = indices.ptr;
  many.num_rows = 64;
  many.num_cols = 131072;
  many.row_stride = 131072;
  many.k = 2048;
  CHECK(BatchedTopK<float>::workspace_size(many) == 0);
  many.method = TopKMethod::kSampled;
  const std::size_t bytes = BatchedTopK<float>::workspace_size(many);
  CHECK(bytes >= 64u * BatchedTopKPolicy::kSampledCapacity * 8u);
  DeviceBuffer<unsigned char> workspace(bytes + 16);
  CHECK(BatchedTopK<float>::run(many, nullptr, 0, nullptr) == StatusCode::kWorkspaceTooSmall);
  CHECK(BatchedTopK<float>::run(many, workspace.ptr, bytes - 1, nullptr) == StatusCode::kWorkspaceTooSmall);
  CHECK(BatchedTopK<float>::run(many, workspace.ptr + 4, bytes, nullptr) == StatusCode::kMisaligned);
  auto unaligned = many;  // rows not 16-byte aligned: the cluster method, no workspace
  unaligned.row_stride = 131073;
  CHECK(BatchedTopK<float>::workspace_size(unaligned) == 0);
  many.k = 8000;  // too many candidates for the sampled method's capacity: the cluster method
  CHECK(BatchedTopK<float>::workspace_size(many) == 0);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE_TEMPLATE("BlockPooling then BatchedTopK selects the reference blocks", T, float, half, __nv_bfloat16) {
  auto seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int block : {16, 32, 64, 128}) {
    for (PoolOp op : {PoolOp::kMax, PoolOp::kSum}) {
      CAPTURE(block);
      CAPTURE(to_string(op));
      const int rows = 4, cols = 40000 + block * 3 + 5;
      const std::int64_t stride = (cols + 7) / 8 * 8;
      const std::vector<T> scores = make_scores<T>(rows * stride, block == 32 ? Pattern::kSpecials : Pattern::kNormal, rng);
      std::vector<std::int32_t> lengths = {cols, 0, static_cast<int>(rng() % cols), 1};
      const int pooled_cols = (cols + block - 1) / block, k = 256;
      DeviceBuffer<T> d_scores(scores.size());
      DeviceBuffer<std::int32_t> d_lengths(rows), d_pooled_lengths(rows), d_indices(rows * k);
      DeviceBuffer<float> d_pooled(static_cast<std::size_t>(rows) * pooled_cols);
      d_scores.upload(scores);
      d_lengths.upload(lengths);
      d_pooled.poison();
      d_pooled_lengths.poison();
      d_indices.poison();
      typename BlockPooling<T>::Arguments pool;
      pool.scores = d_scores.ptr;
      pool.row_stride = stride;
      pool.num_rows = rows;
      pool.num_cols = cols;
      pool.lengths = d_lengths.ptr;
      pool.block_size = block;
      pool.op = op;
      pool.pooled = d_pooled.ptr;
      pool.pooled_stride = pooled_cols;
      pool.pooled_lengths = d_pooled_lengths.ptr;
      REQUIRE(BlockPooling<T>::run(pool, nullptr, 0, nullptr).ok());
      BatchedTopK<float>::Arguments select;
      select.scores = d_pooled.ptr;
      select.row_stride = pooled_cols;
      select.num_rows = rows;
      select.num_cols = pooled_cols;
      select.lengths = d_pooled_lengths.ptr;
      select.k = k;
      select.indices = d_indices.ptr;
      REQUIRE(BatchedTopK<float>::run(select, nullptr, 0, nullptr).ok());
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const auto pooled = d_pooled.download();
      const auto pooled_lengths = d_pooled_lengths.download();
      const auto indices = d_indices.download();
      for (int r = 0; r < rows; ++r) {
        CAPTURE(r);
        const std::vector<double> ref = reference::pool_blocks(scores.data() + r * stride, lengths[r], block, op);
        REQUIRE(pooled_lengths[r] == static_cast<int>(ref.size()));
        double magnitude = 0;
        for (int i = 0; i < lengths[r]; ++i) {
          const double v = std::fabs(reference::score_value(scores[r * stride + i]));
          if (std::isfinite(v)) magnitude = std::max(magnitude, v);
        }
        for (int b = 0; b < pooled_cols; ++b) {
          const float got = pooled[r * pooled_cols + b];
          if (b >= static_cast<int>(ref.size()) || std::isnan(ref[b])) {
            REQUIRE(std::isnan(got));
          } else if (op == PoolOp::kMax || std::isinf(ref[b])) {
            REQUIRE(got == static_cast<float>(ref[b]));
          } else {
            REQUIRE(std::fabs(got - ref[b]) <= 1e-5 * block * magnitude);
          }
        }
        // Selection over the GPU's own pooled scores is exact.
        const auto want_ids = reference::topk_row(pooled.data() + r * pooled_cols, pooled_lengths[r], k);
        std::vector<std::int32_t> want(want_ids), got(indices.begin() + r * k, indices.begin() + (r + 1) * k);
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
        REQUIRE(got == want);
      }
    }
  }
}
