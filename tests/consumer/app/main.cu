// Builds a kernel and host code against hylra's public headers; runs the host part (no GPU needed).
#include <hylra/hylra.cuh>

#include <cstdio>
#include <vector>

__global__ void first_token_offset(hylra::PagedKvCache<const half> kv, long long* out) {
  *out = kv.token_offset(0, 0, 0);
}

int main() {
  std::vector<half> k(2 * 64 * 4 * 128), v(k.size());
  std::vector<int> seq_lens = {64, 17};
  const auto kv = hylra::make_contiguous_kv_cache<const half>(k.data(), v.data(), 2, 64, 4, 128, seq_lens.data());
  const hylra::Status status = hylra::validate(kv);
  std::printf("hylra %d.%d.%d from %s: %s, page size %d\n", HYLRA_VERSION_MAJOR, HYLRA_VERSION_MINOR,
              HYLRA_VERSION_PATCH, HYLRA_CONSUMED_AS, hylra::to_string(status).c_str(), kv.page_size);
  (void)&first_token_offset;
  return status.ok() && kv.page_size == 64 ? 0 : 1;
}
