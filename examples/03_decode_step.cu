// One HyLRA decode step on the GPU: a layer policy executed by HybridAttention
// (runtime/hybrid_attention.cuh), one run_layer() call per layer as an engine's layer loop makes.
//
// Every layer has its own paged KV cache (bf16, page 64, shuffled block table) and query. What a
// layer runs depends on its kind in the policy (policy/layer_kind.hpp):
//   Dense        DenseDecode.
//   DenseSelect  DenseDecode exporting bf16 scores (per token, or per block of
//                selection.block_size tokens), then BatchedTopK writes the layer's index list.
//   Select       DenseScores (the same scores, reading K only), BatchedTopK, then GatherDecode
//                over the list just written.
//   Reuse(src)   GatherDecode over the list layer src wrote this step.
// HybridAttention keeps the index lists in an IndexBuffer (reuse/index_buffer.hpp) inside its
// workspace: slots the producers share where their lists are never needed at the same time (one
// slot for this policy).
// Every call is CUDA-graph capturable, so the step is captured once and replayed; its time is
// compared with an all-Dense step over the same caches. The first Reuse layer's output is checked
// against the host reference (reference::gather_decode) on the indices top-k chose.
//
//   03_decode_step [batch] [tokens] [policy.json]
//
// Defaults: batch 2, 16384 tokens per sequence, and the 8-layer policy that example 02 derives
// (Dense, Select, Reuse(1) x2, Select, Reuse(4) x3; k = 2048 tokens per KV head, 4 sink and 64
// recent tokens always kept). A policy file from tools/hylra-policy replaces it. Exits 77 (a
// skipped test) without a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hylra/attention/decode.cuh"
#include "hylra/policy/policy_json.hpp"
#include "hylra/reference/attention.hpp"
#include "hylra/runtime/hybrid_attention.cuh"

namespace pol = hylra::policy;
using T = __nv_bfloat16;

namespace {

constexpr int kHeadDim = 128, kQoHeads = 32, kKvHeads = 8, kPage = 64;
constexpr int kSinkTokens = 4, kRecentTokens = 64;

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    const cudaError_t err_ = (call);                                                       \
    if (err_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(err_));   \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

#define CHECK_OK(...)                                                                               \
  do {                                                                                              \
    const hylra::Status status_ = (__VA_ARGS__);                                                    \
    if (!status_.ok()) {                                                                            \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, hylra::to_string(status_).c_str()); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

// Deterministic pseudo-random values in [-1, 1): fills gigabytes without a host round trip.
__global__ void fill_random(T* data, std::size_t n, unsigned seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed * 0x9E3779B9u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    data[i] = __float2bfloat16(static_cast<float>(h & 0xFFFF) / 32768.0f - 1.0f);
  }
}

template <typename U>
struct DeviceArray {
  U* ptr = nullptr;
  std::size_t count = 0;
  explicit DeviceArray(std::size_t n) : count(n) { CHECK_CUDA(cudaMalloc(&ptr, std::max<std::size_t>(n, 1) * sizeof(U))); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  void upload(const std::vector<U>& host) { CHECK_CUDA(cudaMemcpy(ptr, host.data(), count * sizeof(U), cudaMemcpyHostToDevice)); }
  std::vector<U> download() const {
    std::vector<U> host(count);
    CHECK_CUDA(cudaMemcpy(host.data(), ptr, count * sizeof(U), cudaMemcpyDeviceToHost));
    return host;
  }
};

// One layer's paged cache, query and output.
struct Layer {
  DeviceArray<T> k, v, q, out;
  hylra::PagedKvCache<const T> kv;
  Layer(int batch, int pages, const std::int32_t* block_table, int max_pages, const std::int32_t* seq_lens, unsigned seed)
      : k(static_cast<std::size_t>(pages) * kPage * kKvHeads * kHeadDim),
        v(k.count),
        q(static_cast<std::size_t>(batch) * kQoHeads * kHeadDim),
        out(q.count) {
    fill_random<<<1024, 256>>>(k.ptr, k.count, 3 * seed + 1);
    fill_random<<<1024, 256>>>(v.ptr, v.count, 3 * seed + 2);
    fill_random<<<64, 256>>>(q.ptr, q.count, 3 * seed + 3);
    kv = hylra::make_paged_kv_cache<const T>(hylra::KvLayout::kNHD, k.ptr, v.ptr, pages, kPage, kKvHeads, kHeadDim,
                                             block_table, max_pages, seq_lens, batch);
  }
};

// One decode step: HybridAttention runs the policy's layers; run() issues them on a stream (and so
// can be captured), or, for comparison, DenseDecode on every layer.
class DecodeStep {
 public:
  DecodeStep(const pol::Policy& policy, const std::vector<std::unique_ptr<Layer>>& layers) : layers_(layers) {
    hylra::HybridAttentionArguments<T> args;
    args.policy = policy;
    args.num_qo_heads = kQoHeads;
    args.sm_scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    args.sink_tokens = kSinkTokens;
    args.recent_tokens = kRecentTokens;
    args.score_dtype = hylra::DType::kBFloat16;
    CHECK_OK(hylra::HybridAttention<T, kHeadDim>::plan(args, layer_args(0), &attention_));
    // The all-dense step borrows the same workspace: HybridAttention sized it for DenseDecode too.
    workspace_ = std::make_unique<DeviceArray<unsigned char>>(attention_.workspace_bytes());
  }

  // Layers 0 .. last_layer (all by default) in order.
  void run(cudaStream_t stream, bool all_dense, int last_layer = -1) const {
    for (int l = 0; l < static_cast<int>(layers_.size()) && (last_layer < 0 || l <= last_layer); ++l) {
      if (!all_dense) {
        CHECK_OK(attention_.run_layer(l, layer_args(l), workspace_->ptr, workspace_->count, stream));
        continue;
      }
      hylra::DenseDecodeArguments<T> dense;
      dense.q = layers_[l]->q.ptr;
      dense.kv = layers_[l]->kv;
      dense.num_qo_heads = kQoHeads;
      dense.sm_scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
      dense.out = layers_[l]->out.ptr;
      CHECK_OK(hylra::DenseDecode<T, kHeadDim>::run(dense, workspace_->ptr, workspace_->count, stream));
    }
  }

  // The indices a Select or Reuse layer attends over, as they are in the workspace now.
  std::vector<std::int32_t> list_read_by(int layer) const {
    hylra::IndexList list;
    CHECK_OK(attention_.list_in(layer, workspace_->ptr, &list));
    std::vector<std::int32_t> host(attention_.index_buffer().list_elements());
    CHECK_CUDA(cudaMemcpy(host.data(), list.indices, host.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
    return host;
  }
  int index_slots() const { return attention_.index_buffer().num_slots(); }

 private:
  hylra::HybridLayerArguments<T> layer_args(int l) const {
    return {layers_[l]->q.ptr, layers_[l]->kv, layers_[l]->out.ptr, nullptr};
  }

  const std::vector<std::unique_ptr<Layer>>& layers_;
  hylra::HybridAttention<T, kHeadDim> attention_;
  std::unique_ptr<DeviceArray<unsigned char>> workspace_;
};

// Mean time of one replay of `graph`, in microseconds.
double replay_us(cudaGraphExec_t graph, cudaStream_t stream, int reps) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  CHECK_CUDA(cudaGraphLaunch(graph, stream));  // warm-up
  CHECK_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < reps; ++i) CHECK_CUDA(cudaGraphLaunch(graph, stream));
  CHECK_CUDA(cudaEventRecord(stop, stream));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float ms = 0.0f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return 1e3 * ms / reps;
}

cudaGraphExec_t capture(const DecodeStep& step, cudaStream_t stream, bool all_dense) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  step.run(stream, all_dense);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphDestroy(graph));
  return exec;
}

pol::Policy default_policy() {
  pol::Policy policy;
  policy.num_layers = 8;
  policy.selection = {2048, 1, pol::IndexScope::kPerKvHead};
  const pol::LayerPolicy layers[] = {pol::dense(),     pol::select(),    pol::reuse(1), pol::reuse(1),
                                     pol::select(),    pol::reuse(4),    pol::reuse(4), pol::reuse(4)};
  for (int l = 0; l < 8; ++l) policy[l] = layers[l];
  return policy;
}

// Relative error of the worst query row of `out` against the host reference of the layer's
// gather over `list` (copied back from the device).
double check_gather(const Layer& layer, const pol::SelectionParams& sel, const std::vector<std::int32_t>& list,
                    const std::vector<std::int32_t>& table, const std::vector<std::int32_t>& lens, int batch, int pages) {
  const std::vector<T> k = layer.k.download(), v = layer.v.download(), q = layer.q.download(), out = layer.out.download();
  const auto kv = hylra::make_paged_kv_cache<const T>(hylra::KvLayout::kNHD, k.data(), v.data(), pages, kPage, kKvHeads,
                                                      kHeadDim, table.data(), static_cast<int>(table.size()) / batch,
                                                      lens.data(), batch);
  const int list_heads = sel.scope == pol::IndexScope::kPerKvHead ? kKvHeads : 1;
  const hylra::IndexList indices{list.data(), nullptr, batch, list_heads, sel.k, sel.block_size};
  std::vector<float> ref(out.size());
  CHECK_OK(hylra::reference::gather_decode(q.data(), kQoHeads, kv, indices, 1.0f / std::sqrt(static_cast<float>(kHeadDim)),
                                           ref.data(), nullptr));
  double worst = 0.0;
  for (std::size_t row = 0; row < out.size() / kHeadDim; ++row) {
    double err = 0.0, norm = 0.0;
    for (int i = 0; i < kHeadDim; ++i) {
      const double r = ref[row * kHeadDim + i], o = hylra::to_float(out[row * kHeadDim + i]);
      err += (o - r) * (o - r);
      norm += r * r;
    }
    worst = std::max(worst, std::sqrt(err / std::max(norm, 1e-30)));
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  const int batch = argc > 1 ? std::atoi(argv[1]) : 2;
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 16384;
  pol::Policy policy = default_policy();
  if (argc > 3) {
    std::string error;
    if (!pol::read_policy_file(argv[3], &policy, &error).ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[3], error.c_str());
      return 1;
    }
  }
  CHECK_OK(pol::validate(policy));
  if (batch < 1 || tokens < kPage || tokens % kPage != 0) {
    std::fprintf(stderr, "batch must be >= 1 and tokens a positive multiple of %d\n", kPage);
    return 2;
  }
  const std::size_t layer_bytes = 2ull * batch * tokens * kKvHeads * kHeadDim * sizeof(T);
  std::size_t free_bytes = 0, total_bytes = 0;
  CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (layer_bytes * policy.num_layers > free_bytes * 9 / 10) {
    std::fprintf(stderr, "%d layers of %.1f GB of K/V do not fit in %.1f GB\n", policy.num_layers, layer_bytes / 1e9,
                 free_bytes / 1e9);
    return 2;
  }

  // Shared by every layer: sequence lengths and a shuffled block table.
  const int max_pages = tokens / kPage, pages = batch * max_pages;
  std::vector<std::int32_t> table(pages), lens(batch, tokens);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(42));
  const int bs = policy.selection.block_size;
  DeviceArray<std::int32_t> d_table(table.size()), d_lens(lens.size());
  d_table.upload(table);
  d_lens.upload(lens);

  std::vector<std::unique_ptr<Layer>> layers;
  for (int l = 0; l < policy.num_layers; ++l)
    layers.push_back(std::make_unique<Layer>(batch, pages, d_table.ptr, max_pages, d_lens.ptr, static_cast<unsigned>(l)));
  const DecodeStep step(policy, layers);

  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  step.run(stream, false);  // eager first: sets kernel attributes, loads modules
  CHECK_CUDA(cudaStreamSynchronize(stream));

  std::printf("HyLRA decode step: batch %d x %d tokens, %d layers, Hq %d / Hkv %d, d %d, bf16, page %d; k = %d %s per "
              "%s\n",
              batch, tokens, policy.num_layers, kQoHeads, kKvHeads, kHeadDim, kPage, policy.selection.k,
              bs == 1 ? "tokens" : "blocks",
              policy.selection.scope == pol::IndexScope::kPerKvHead ? "KV head" : "sequence (shared by the heads)");
  for (int l = 0; l < policy.num_layers; ++l)
    std::printf("  layer %2d: %s%s\n", l, pol::to_string(policy[l].kind),
                policy[l].kind == pol::LayerKind::kReuse ? (" of layer " + std::to_string(policy[l].source)).c_str() : "");
  std::printf("index lists: %d slot(s) in one buffer\n", step.index_slots());

  // The first Reuse layer, run again up to itself: a later producer may take its list's slot.
  for (int l = 0; l < policy.num_layers; ++l) {
    if (policy[l].kind != pol::LayerKind::kReuse) continue;
    step.run(stream, false, l);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    const double err = check_gather(*layers[l], policy.selection, step.list_read_by(l), table, lens, batch, pages);
    std::printf("layer %d against the host reference on the chosen indices: worst row relative error %.2e\n", l, err);
    if (!(err < 1e-2)) {
      std::fprintf(stderr, "error above 1e-2\n");
      return 1;
    }
    break;
  }

  cudaGraphExec_t hylra_step = capture(step, stream, false), dense_step = capture(step, stream, true);
  const int reps = 20;
  const double t_step = replay_us(hylra_step, stream, reps), t_dense = replay_us(dense_step, stream, reps);
  std::printf("one step, replayed from a CUDA graph (mean of %d): policy %.1f us, all layers dense %.1f us (%.2fx)\n",
              reps, t_step, t_dense, t_dense / t_step);
  CHECK_CUDA(cudaGraphExecDestroy(hylra_step));
  CHECK_CUDA(cudaGraphExecDestroy(dense_step));
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
