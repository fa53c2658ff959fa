// HybridAttention against the host references, layer by layer, over a policy with every kind:
// Dense and DenseSelect outputs match reference::dense_decode; a producer's scores match
// reference::dense_scores and its list is exactly reference::topk_row of them (sinks and the
// recent window forced); a Select or Reuse output matches reference::gather_decode over the list
// it read, which for a Reuse layer is its source's although another producer ran in between.
// Lists per KV head and shared by all heads, token and block granularity, fp32 / bf16 / fp16
// scores, an empty sequence, a captured step, and the argument errors.
#include "gpu/test_decode_common.cuh"

#include <algorithm>
#include <memory>

#include "hylra/reference/topk.hpp"
#include "hylra/runtime/hybrid_attention.cuh"

using namespace hylra;
using namespace decode_test;
namespace pol = hylra::policy;

namespace {

constexpr int kDim = 128, kHkv = 2, kGroup = 3, kHq = kHkv * kGroup, kMaxLen = 1000;
constexpr float kScale = 0.09f;

// D, DS, Reuse(1), S, Reuse(3), Reuse(1), S: two lists live at once (layers 3-4), and layer 6
// takes layer 1's slot once layer 5 has read it.
pol::Policy test_policy(int k, int block) {
  pol::Policy p;
  p.num_layers = 7;
  p.selection = {k, block, pol::IndexScope::kPerKvHead};
  const pol::LayerPolicy layers[] = {pol::dense(),  pol::dense_select(), pol::reuse(1), pol::select(),
                                     pol::reuse(3), pol::reuse(1),       pol::select()};
  for (int i = 0; i < 7; ++i) p[i] = layers[i];
  return p;
}

template <typename T>
struct TestLayer {
  std::unique_ptr<PagedCache<T>> cache;
  std::vector<T> q;
  DeviceBuffer<T> d_q, d_out;
  DeviceBuffer<float> d_lse;
  HybridLayerArguments<T> args() const { return {d_q.ptr, cache->device_view(), d_out.ptr, d_lse.ptr}; }
};

template <typename T>
std::vector<TestLayer<T>> make_layers(int count, std::mt19937& rng) {
  std::vector<TestLayer<T>> layers(count);
  for (auto& l : layers) {
    // Lengths: a full sequence, one ending mid-page, and an empty one.
    l.cache = std::make_unique<PagedCache<T>>(KvLayout::kNHD, 3, kHkv, kDim, 32, kMaxLen,
                                              std::vector<std::int32_t>{kMaxLen, 301, 0}, rng);
    l.q = random_values<T>(static_cast<std::size_t>(3) * kHq * kDim, rng);
    l.d_q = DeviceBuffer<T>(l.q);
    l.d_out = DeviceBuffer<T>(l.q.size());
    l.d_lse = DeviceBuffer<float>(static_cast<std::size_t>(3) * kHq);
  }
  return layers;
}

std::vector<std::int32_t> download(const IndexList& list) {
  std::vector<std::int32_t> host(static_cast<std::size_t>(list.batch_size) * list.num_heads * list.k_max);
  DECODE_TEST_CUDA(cudaMemcpy(host.data(), list.indices, host.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
  return host;
}

// Plans `args` over fresh layers, runs the policy layer by layer and checks each against the
// references (see the top of the file); then replays the step from a captured graph.
template <typename T>
void check_step(const HybridAttentionArguments<T>& args, int expected_slots, std::mt19937& rng) {
  const int layers_count = args.policy.num_layers, k = args.policy.selection.k, block = args.policy.selection.block_size;
  const bool shared = args.policy.selection.scope == pol::IndexScope::kSharedAcrossHeads;
  const int list_heads = shared ? 1 : kHkv;
  auto layers = make_layers<T>(layers_count, rng);
  HybridAttention<T, kDim> attention;
  DECODE_TEST_OK(HybridAttention<T, kDim>::plan(args, layers[0].args(), &attention));
  CHECK(attention.index_buffer().num_slots() == expected_slots);
  DeviceBuffer<unsigned char> workspace(attention.workspace_bytes());
  workspace.poison();

  std::vector<std::vector<std::int32_t>> written(layers_count);  // each producer's list as it wrote it
  for (int l = 0; l < layers_count; ++l) {
    CAPTURE(l);
    const pol::LayerKind kind = args.policy[l].kind;
    TestLayer<T>& layer = layers[l];
    layer.d_out.poison();
    layer.d_lse.poison();
    DECODE_TEST_OK(attention.run_layer(l, layer.args(), workspace.ptr, workspace.count, nullptr));
    DECODE_TEST_CUDA(cudaDeviceSynchronize());
    std::vector<float> ref(layer.q.size()), ref_lse(layer.d_lse.count);
    if (pol::is_producer(kind)) {
      // The scores, then the list: exactly the top k of those scores (their max over the heads
      // for shared lists), forced entries included.
      const ScoreExport scores = attention.scores_in(workspace.ptr);
      const std::size_t cols = static_cast<std::size_t>(scores.row_stride);
      DeviceBuffer<unsigned char> copy(3 * kHkv * cols * size_of(args.score_dtype));
      DECODE_TEST_CUDA(cudaMemcpy(copy.ptr, scores.scores, copy.count, cudaMemcpyDeviceToDevice));
      CHECK(score_error(layer.q, kHq, *layer.cache, kScale, scores, copy) <= kLseTolerance);
      std::vector<float> values = widen_scores(copy.to_host(), args.score_dtype);
      if (shared) {
        std::vector<float> pooled(3 * cols, -INFINITY);
        for (std::size_t i = 0; i < values.size(); ++i) {
          float& m = pooled[i / (kHkv * cols) * cols + i % cols];
          m = std::max(m, values[i]);
        }
        values = pooled;
      }
      IndexList list;
      DECODE_TEST_OK(attention.list_in(l, workspace.ptr, &list));
      CHECK(list.num_heads == list_heads);
      const std::vector<std::int32_t> got = download(list);
      written[l] = got;
      for (int row = 0; row < 3 * list_heads; ++row) {
        const int len = (layer.cache->lens[row / list_heads] + block - 1) / block;
        const int recent = block == 1 ? 8 : (8 + block - 1) / block + 1;  // the last block may be partial
        std::vector<std::int32_t> want =
            reference::topk_row(values.data() + row * cols, len, k, true, (4 + block - 1) / block, recent);
        std::vector<std::int32_t> have(got.begin() + row * k, got.begin() + (row + 1) * k);
        CHECK(std::is_sorted(have.begin() + std::min<std::size_t>(want.size(), k), have.end(),
                             [](int a, int b) { return a > b; }));  // the tail is -1 padding only
        have.erase(std::remove(have.begin(), have.end(), -1), have.end());
        want.erase(std::remove(want.begin(), want.end(), -1), want.end());  // the reference pads too
        std::sort(want.begin(), want.end());
        std::sort(have.begin(), have.end());
        CAPTURE(row);
        CHECK(have == want);
      }
    }
    if (kind == pol::LayerKind::kDense || kind == pol::LayerKind::kDenseSelect) {
      DECODE_TEST_OK(reference::dense_decode(layer.q.data(), kHq, layer.cache->host_view(), kScale, ref.data(),
                                             ref_lse.data()));
    } else {
      IndexList list;
      DECODE_TEST_OK(attention.list_in(l, workspace.ptr, &list));
      const std::vector<std::int32_t> ids = download(list);
      // A Reuse layer reads its source's list untouched by the producers that ran in between.
      const int source = kind == pol::LayerKind::kReuse ? args.policy[l].source : l;
      CHECK(ids == written[source]);
      const IndexList host_list{ids.data(), nullptr, list.batch_size, list.num_heads, list.k_max, list.block_size};
      DECODE_TEST_OK(reference::gather_decode(layer.q.data(), kHq, layer.cache->host_view(), host_list, kScale,
                                              ref.data(), ref_lse.data()));
    }
    CHECK(max_row_rel_error(layer.d_out.to_host(), ref, kDim) <= kOutputTolerance<T>);
    CHECK(max_lse_error(layer.d_lse.to_host(), ref_lse) <= kLseTolerance);
  }

  // The whole step captured in one graph gives the same outputs bit for bit.
  std::vector<std::vector<T>> eager;
  for (auto& l : layers) eager.push_back(l.d_out.to_host());
  CapturedGraph graph([&](cudaStream_t stream) {
    for (int l = 0; l < layers_count; ++l)
      HYLRA_RETURN_IF_ERROR(attention.run_layer(l, layers[l].args(), workspace.ptr, workspace.count, stream));
    return Status::success();
  });
  for (auto& l : layers) l.d_out.poison();
  graph.replay();
  for (int l = 0; l < layers_count; ++l) {
    const std::vector<T> replayed = layers[l].d_out.to_host();
    CHECK(std::memcmp(replayed.data(), eager[l].data(), replayed.size() * sizeof(T)) == 0);
  }
}

template <typename T>
HybridAttentionArguments<T> step_args(int k, int block, pol::IndexScope scope, DType score_dtype) {
  HybridAttentionArguments<T> args;
  args.policy = test_policy(k, block);
  args.policy.selection.scope = scope;
  args.num_qo_heads = kHq;
  args.sm_scale = kScale;
  args.sink_tokens = 4;
  args.recent_tokens = 8;
  args.score_dtype = score_dtype;
  return args;
}

}  // namespace

TEST_CASE_TEMPLATE("HybridAttention runs every layer kind as the references do", T, half, __nv_bfloat16) {
  // Tokens with bf16 scores for fp16 caches, blocks of 16 with fp32 scores for bf16 ones.
  const bool blocks = std::is_same_v<T, __nv_bfloat16>;
  CAPTURE(blocks);
  std::mt19937 rng(blocks ? 11 : 12);
  check_step(step_args<T>(blocks ? 9 : 96, blocks ? 16 : 1, pol::IndexScope::kPerKvHead,
                          blocks ? DType::kFloat32 : DType::kBFloat16),
             2, rng);
}

TEST_CASE("HybridAttention with index lists shared by all KV heads: top-k over the heads' max score") {
  std::mt19937 rng(13);
  SUBCASE("tokens, fp16 scores") {
    check_step(step_args<half>(80, 1, pol::IndexScope::kSharedAcrossHeads, DType::kFloat16), 2, rng);
  }
  SUBCASE("blocks of 32, bf16 scores") {
    check_step(step_args<__nv_bfloat16>(6, 32, pol::IndexScope::kSharedAcrossHeads, DType::kBFloat16), 2, rng);
  }
}

TEST_CASE("HybridAttention reports bad arguments") {
  std::mt19937 rng(5);
  auto layers = make_layers<half>(1, rng);
  HybridAttentionArguments<half> args;
  args.policy = test_policy(64, 1);
  args.num_qo_heads = kHq;
  args.sm_scale = kScale;
  HybridAttention<half, kDim> attention;
  REQUIRE(HybridAttention<half, kDim>::plan(args, layers[0].args(), &attention).ok());
  DeviceBuffer<unsigned char> workspace(attention.workspace_bytes() + 256);
  const auto la = layers[0].args();
  CHECK(attention.run_layer(7, la, workspace.ptr, workspace.count, nullptr) == StatusCode::kInvalidValue);
  CHECK(attention.run_layer(-1, la, workspace.ptr, workspace.count, nullptr) == StatusCode::kInvalidValue);
  CHECK(attention.run_layer(0, la, nullptr, workspace.count, nullptr) == StatusCode::kNullPointer);
  CHECK(attention.run_layer(0, la, workspace.ptr, attention.workspace_bytes() - 1, nullptr) ==
        StatusCode::kWorkspaceTooSmall);
  CHECK(attention.run_layer(0, la, workspace.ptr + 16, workspace.count - 16, nullptr) == StatusCode::kMisaligned);
  auto other = la;
  other.kv.batch_size = 2;
  CHECK(attention.run_layer(0, other, workspace.ptr, workspace.count, nullptr) == StatusCode::kInvalidShape);
  other = la;
  other.q = nullptr;
  CHECK(attention.run_layer(0, other, workspace.ptr, workspace.count, nullptr) == StatusCode::kNullPointer);

  HybridAttention<half, kDim> refused;
  auto bad = args;
  bad.policy[2] = pol::reuse(0);  // layer 0 is Dense: not a producer
  CHECK(HybridAttention<half, kDim>::plan(bad, la, &refused) == StatusCode::kInvalidPolicy);
  bad = args;
  bad.recent_tokens = -1;
  CHECK(HybridAttention<half, kDim>::plan(bad, la, &refused) == StatusCode::kInvalidValue);
  bad = args;
  bad.num_qo_heads = 5;
  CHECK(HybridAttention<half, kDim>::plan(bad, la, &refused) == StatusCode::kInvalidShape);
  HybridAttention<half, 64> narrower;
  CHECK(HybridAttention<half, 64>::plan(args, la, &narrower) == StatusCode::kInvalidShape);
}

TEST_CASE("HybridAttention's workspace covers its Dense layers, which DenseDecode may plan apart from DenseSelect ones") {
  // Batch 8 x 8 KV heads x 32K, blocks of 64: without the export DenseDecode packs four heads per
  // CTA, in more chunks per row than the exporting plan (block scores are never packed), so it
  // needs the larger workspace. Plans only: placeholder addresses, never read.
  const auto fake = [](std::uintptr_t at) { return reinterpret_cast<half*>(at); };
  HybridLayerArguments<half> la{fake(256), {}, fake(512), nullptr};
  la.kv = make_paged_kv_cache<const half>(KvLayout::kNHD, fake(1024), fake(2048), 8 * 512, 64, 8, kDim,
                                          reinterpret_cast<const std::int32_t*>(4096), 512,
                                          reinterpret_cast<const std::int32_t*>(8192), 8);
  HybridAttentionArguments<half> args;
  args.policy = test_policy(32, 64);
  args.num_qo_heads = 32;
  args.sm_scale = kScale;
  HybridAttention<half, kDim> attention;
  DECODE_TEST_OK(HybridAttention<half, kDim>::plan(args, la, &attention));

  DenseDecodeArguments<half> dense{la.q, la.kv, 32, kScale, la.out, nullptr, {}};
  std::size_t plain = 0, exporting = 0;
  DECODE_TEST_OK(DenseDecode<half, kDim>::workspace_size(dense, &plain));
  dense.scores = attention.scores_in(reinterpret_cast<void*>(std::uintptr_t{1} << 20));
  DECODE_TEST_OK(DenseDecode<half, kDim>::workspace_size(dense, &exporting));
  CHECK(plain > exporting);  // the case this test is for
  // The lists, the scores and then the scratch the Dense layers use.
  const std::size_t scores = std::size_t{8} * 8 * (32768 / 64) * size_of(args.score_dtype);
  CHECK(attention.workspace_bytes() >= attention.index_buffer().bytes() + scores + plain);
}
