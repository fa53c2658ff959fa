// A reproducer for the toolchain defect that check_sass.cmake guards against; not part of the build.
// nvcc 13.0 (V13.0.88): ptxas -O1 and -O3, sm_90 and sm_90a, compile the clamp of `copied` and the
// branch on `copied == kTile` below to a VIMNMX.RELU with a predicate result; on an H200 the branch
// then takes the plain side in 1 of 64 iterations instead of all 64. With -Xptxas -O0 it takes it
// in all 64. Measured in session 13 (bench/RESULTS.md).
//
//   nvcc -O3 -arch=sm_90a tests/sass/clamp_predicate_repro.cu -o repro && ./repro
#include <cstdio>

constexpr int kTile = 2048;

__global__ void count_plain_tiles(const float* data, int begin, int end, int sinks, int recent_begin,
                                  unsigned long long* out) {
  __shared__ float tile_buf[kTile];
  const int copy_end = end / 4 * 4;
  const int tiles = end > begin ? (end - begin + kTile - 1) / kTile : 0;
  float acc = 0.f;
  for (int tile = 0; tile < tiles; ++tile) {
    const int first = begin + tile * kTile;
    const int n = copy_end - first;
    const int copied = n < 0 ? 0 : (n < kTile ? n : kTile);
    for (int i = threadIdx.x; i < copied; i += blockDim.x) tile_buf[i] = data[first + i];
    __syncthreads();
    const bool plain = copied == kTile && first >= sinks && first + kTile <= recent_begin;
    if (plain) {
      const float4 v = reinterpret_cast<const float4*>(tile_buf)[threadIdx.x];
      acc += v.x + v.y + v.z + v.w;
    } else {
      for (int e = 0; e < 4; ++e) {
        const int i = threadIdx.x * 4 + e, pos = first + i;
        acc += i < copied ? tile_buf[i] : (pos < end ? data[pos] : 0.f);
      }
    }
    if (threadIdx.x == 0) atomicAdd(&out[plain ? 0 : 1], 1ull);
    __syncthreads();
  }
  if (acc == 12345.f) out[2] = 1;  // keeps the loads
}

int main() {
  const int n = 131072;  // 64 whole tiles: every one is plain
  float* data;
  unsigned long long* out;
  cudaMalloc(&data, n * sizeof(float));
  cudaMemset(data, 0, n * sizeof(float));
  cudaMalloc(&out, 3 * sizeof(unsigned long long));
  cudaMemset(out, 0, 3 * sizeof(unsigned long long));
  count_plain_tiles<<<1, 512>>>(data, 0, n, 0, n, out);
  unsigned long long counts[3];
  cudaMemcpy(counts, out, sizeof(counts), cudaMemcpyDeviceToHost);
  const bool correct = counts[0] == 64 && counts[1] == 0;
  std::printf("plain tiles %llu, other tiles %llu (expected 64 and 0): %s\n", counts[0], counts[1],
              correct ? "correct" : "WRONG");
  return correct ? 0 : 1;
}
