// Bulk copies from global to shared memory by the Tensor Memory Accelerator (cp.async.bulk,
// sm_90), completed on a shared-memory barrier (mbarrier). One thread starts the copy of a whole
// tile; every thread that reads the tile waits on the barrier. The bytes in flight hold no
// registers, so a CTA can have a large tile on its way while the SM runs other CTAs.
#pragma once

#include <cstdint>

#include "hylra/core/config.hpp"

HYLRA_NAMESPACE_BEGIN

class BulkCopyBarrier {
 public:
  // One thread of the CTA, before a __syncthreads that precedes any other use.
  HYLRA_DEVICE void init() {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(address(&state_)) : "memory");
    // The barrier's initialisation made visible to the copy engine, which completes it.
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }

  // One thread, once per phase: `bytes` (a positive multiple of 16) from `src` to `dst`, both
  // 16-byte aligned. The barrier's phase completes when they have all landed.
  HYLRA_DEVICE void copy(void* dst, const void* src, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(address(&state_)), "r"(bytes)
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(address(dst)),
        "l"(src), "r"(bytes), "r"(address(&state_))
        : "memory");
  }

  // Any thread: returns once phase `phase` (0 for the first copy) has completed.
  HYLRA_DEVICE void wait(unsigned phase) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "wait:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra wait;\n"
        "}\n" ::"r"(address(&state_)),
        "r"(phase)
        : "memory");
  }

 private:
  HYLRA_DEVICE static unsigned address(const void* smem) {
    return static_cast<unsigned>(__cvta_generic_to_shared(smem));
  }

  std::uint64_t state_;
};

HYLRA_NAMESPACE_END
