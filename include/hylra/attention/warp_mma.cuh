// Warp-level building blocks of the decode kernels: 16-byte cp.async into shared memory (with
// zero fill for skipped rows), ldmatrix, and the m16n8k16 tensor-core MMA on half / bfloat16 with
// fp32 accumulation. Fragment layouts are PTX's (ISA section "mma.m16n8k16"): for lane l,
// g = l / 4 and t = l % 4; an A or C fragment holds rows g and g + 8, columns 2t and 2t + 1.
#pragma once

#include <cstdint>
#include <type_traits>

#include "hylra/core/dtype.hpp"

HYLRA_NAMESPACE_BEGIN

// Copies 16 bytes global -> shared without staging in registers; src_bytes = 0 writes zeros and
// reads nothing (a skipped token must not leave stale values that 0 * NaN would turn into NaN).
HYLRA_DEVICE void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}

// An L2 policy for all of an access's lines: evict last (read again soon, e.g. by the next
// kernel).
HYLRA_DEVICE std::uint64_t l2_evict_last_policy() {
  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// A float store that asks L2 to keep its line under the given policy.
HYLRA_DEVICE void store_with_policy(float* gmem, float value, std::uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.f32 [%0], %1, %2;\n" ::"l"(gmem), "f"(value), "l"(policy) : "memory");
}

// The same for a 16-bit value (a half or bfloat16 as its bits).
HYLRA_DEVICE void store_with_policy(std::uint16_t* gmem, std::uint16_t bits, std::uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.b16 [%0], %1, %2;\n" ::"l"(gmem), "h"(bits), "l"(policy) : "memory");
}

HYLRA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
HYLRA_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 b16 matrices; lane l gives the row address of matrix l / 8, row l % 8, and receives in
// frag[i] row l / 4, columns 2 (l % 4) and + 1 of matrix i (transposed with kTranspose).
template <bool kTranspose>
HYLRA_DEVICE void ldmatrix_x4(std::uint32_t (&frag)[4], const void* smem_row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  if constexpr (kTranspose)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
                 : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
                 : "r"(addr));
}

// acc (16x8, fp32) += a (16x16, row-major) * b (16x8, column-major), operands of type T.
template <typename T>
HYLRA_DEVICE void mma_16x8x16(float (&acc)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<T, half>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to T and packed as one 32-bit MMA operand register, `lo` in the low half.
template <typename T>
HYLRA_DEVICE std::uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
  }
}

HYLRA_NAMESPACE_END
