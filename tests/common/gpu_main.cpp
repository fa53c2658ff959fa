// doctest entry point of the GPU test binaries: without a usable CUDA device the binary exits with
// kSkipExitCode, which CTest reports as "skipped" (SKIP_RETURN_CODE), never as passed or failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <cstdio>

namespace {
constexpr int kSkipExitCode = 77;
}

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t error = cudaGetDeviceCount(&devices);
  if (error != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", error != cudaSuccess ? cudaGetErrorName(error) : "none found");
    return kSkipExitCode;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
