// libFuzzer target over every hylra file reader: the first byte picks the reader, the rest is the
// file. Build with clang (see tests/fuzz/README.md):
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I include -I tests \
//     -I /usr/local/cuda/include tests/fuzz/fuzz_readers.cpp -o fuzz_readers
//   ./fuzz_readers -max_total_time=300 -timeout=2 corpus/
#include <cstdio>
#include <cstdlib>

#include "fuzz/reader_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto target = static_cast<hylra_fuzz::Target>(data[0] % hylra_fuzz::kNumTargets);
  if (const char* broken = hylra_fuzz::check_reader_input(target, data + 1, size - 1)) {
    std::fprintf(stderr, "property violated (reader %d): %s\n", static_cast<int>(target), broken);
    std::abort();
  }
  return 0;
}
