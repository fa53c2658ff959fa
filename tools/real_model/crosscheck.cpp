// Cross-check of the Python hybrid attention against hylra's C++ host reference (fp64).
//
//   crosscheck <trace_dir> <layer> <indices.npy> <block_size> <out_dir>
//
// Reads a trace captured by tools/real_model/capture.py with hylra's own trace reader, runs
// reference::dense_decode and reference::gather_decode (over the int32 [M, Hkv, k_max] index
// list that crosscheck.py wrote, -1 padded, ids in units of block_size tokens) for every query of
// the layer, and writes cpp_dense_out.npy and cpp_gather_out.npy (float32 [M, Hq, d]).
// Build: g++ -std=c++17 -O2 -I include -I /usr/local/cuda/include tools/real_model/crosscheck.cpp
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hylra/io/npy.hpp"
#include "hylra/layout/index_list.hpp"
#include "hylra/reference/attention.hpp"
#include "hylra/trace/trace.hpp"

using namespace hylra;

static int fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "crosscheck: %s: %s\n", what.c_str(), to_string(s).c_str());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s trace_dir layer indices.npy block_size out_dir\n", argv[0]);
    return 2;
  }
  const std::string trace_dir = argv[1], index_path = argv[3], out_dir = argv[5];
  const int layer = std::atoi(argv[2]), block_size = std::atoi(argv[4]);

  Trace trace;
  std::string error;
  if (Status s = read_trace(trace_dir, &trace, &error); !s.ok()) return fail(error, s);
  const TraceShape& shape = trace.shape;
  TraceDecodeBatch batch;
  if (Status s = make_decode_batch(trace, layer, &batch); !s.ok()) return fail("make_decode_batch", s);

  io::NpyArray ids;
  if (Status s = io::read_npy(index_path, &ids); !s.ok()) return fail(index_path, s);
  if (ids.type != io::NpyType::kInt32 || ids.shape.size() != 3 || ids.shape[0] != shape.num_queries ||
      ids.shape[1] != shape.num_kv_heads) {
    std::fprintf(stderr, "crosscheck: %s must be int32 [M, Hkv, k_max]\n", index_path.c_str());
    return 1;
  }
  const IndexList list{reinterpret_cast<const std::int32_t*>(ids.bytes.data()), nullptr, shape.num_queries,
                       shape.num_kv_heads, static_cast<int>(ids.shape[2]), block_size};

  const float* q = trace.layers[layer].q.data();
  std::vector<float> dense(static_cast<std::size_t>(shape.q_elements())), gather(dense.size());
  if (Status s = reference::dense_decode(q, shape.num_qo_heads, batch.kv, shape.sm_scale, dense.data(), nullptr); !s.ok())
    return fail("dense_decode", s);
  if (Status s = reference::gather_decode(q, shape.num_qo_heads, batch.kv, list, shape.sm_scale, gather.data(), nullptr);
      !s.ok())
    return fail("gather_decode", s);

  const std::vector<std::int64_t> out_shape{shape.num_queries, shape.num_qo_heads, shape.head_dim};
  for (auto [name, data] : {std::pair{"cpp_dense_out.npy", &dense}, std::pair{"cpp_gather_out.npy", &gather}}) {
    const std::string path = out_dir + "/" + name;
    if (Status s = io::write_npy(path, io::NpyType::kFloat32, out_shape, data->data()); !s.ok()) return fail(path, s);
  }
  std::printf("crosscheck: layer %d, %d queries, k_max %lld ids of %d tokens: wrote %s/cpp_{dense,gather}_out.npy\n",
              layer, shape.num_queries, static_cast<long long>(ids.shape[2]), block_size, out_dir.c_str());
  return 0;
}
