"""hylra BatchedTopK against torch.topk(sorted=False) on the same inputs, cold L2 (bench/harness.py).

Shapes rows x N x k from issue 4, fp32 and bf16, random normal scores rotated over several buffers.
Each hylra result is checked first: its selected values must equal torch's as a multiset (the two
may pick different positions among equal scores, never different scores). hylra is timed with its
default method (kCluster) and with method = kSampled; a last table times both on scores correlated
along the row, where the sampled method's sample misleads it.

    HYLRA_BUILD_DIR=build HYLRA_COMMIT=<hash> python3 bench/bench_topk.py
"""
import ctypes
import sys

import torch

import harness

SHAPES = [(8, 8192, 2048), (8, 131072, 2048), (64, 32768, 2048), (64, 131072, 2048),
          (256, 131072, 2048), (64, 131072, 256), (1, 131072, 2048)]
DTYPES = [(torch.float32, 2, "fp32"), (torch.bfloat16, 1, "bf16")]  # hylra::DType codes
# FlashInfer 0.6.18's best kernel on this H200, cold L2 (µs): quoted from issue 4, not measured here.
FLASHINFER_US = {(8, 8192, 2048): (12.7, 10.6), (8, 131072, 2048): (18.4, 14.8), (64, 32768, 2048): (25.8, 21.9),
                 (64, 131072, 2048): (50.5, 40.3), (256, 131072, 2048): (103.0, 89.3),
                 (64, 131072, 256): (49.1, 39.0), (1, 131072, 2048): (14.4, 14.4)}
BUFFERS_BYTES = 512 << 20  # rotate over at least this much input


def main():
    lib = harness.load_library("hylra_topk_capi")
    lib.hylra_topk.restype = ctypes.c_int
    lib.hylra_topk_variant_name.restype = ctypes.c_char_p
    timer = harness.ColdTimer()
    rows_out = []
    for dtype, code, dname in DTYPES:
        for rows, n, k in SHAPES:
            nbytes = rows * n * dtype.itemsize
            nbuf = max(2, min(8, BUFFERS_BYTES // nbytes))
            inputs = [torch.randn(rows, n, device="cuda").to(dtype) for _ in range(nbuf)]
            indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
            values = torch.empty(rows, k, dtype=dtype, device="cuda")

            def hylra(x, with_values=False, variant=0):
                status = lib.hylra_topk(variant, code, harness.ptr(x), ctypes.c_longlong(n), rows, n, ctypes.c_void_p(0), k,
                                        harness.ptr(indices), harness.ptr(values if with_values else None), 0,
                                        harness.stream())
                if status != 0:
                    raise RuntimeError(f"hylra_topk returned status {status}")

            def launch_shape(variant):
                sampled, ctas, segment, cached = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
                lib.hylra_topk_shape(variant, code, rows, n, k, ctypes.byref(sampled), ctypes.byref(ctas),
                                     ctypes.byref(segment), ctypes.byref(cached))
                if sampled.value:
                    return f"sampled {ctas.value}x{segment.value}"
                return f"{ctas.value}x{segment.value}" + ("" if cached.value else " uncached")

            def torch_topk(x):
                torch.topk(x, k, dim=1, sorted=False)

            for variant, x in [(v, inputs[v % 2]) for v in range(lib.hylra_topk_num_variants())]:
                indices.fill_(-7)  # correctness of every policy on this shape before timing
                hylra(x, with_values=True, variant=variant)
                ref = torch.topk(x, k, dim=1, sorted=False).values
                gathered = torch.gather(x, 1, indices.long())
                ok = (indices >= 0).all() and torch.equal(gathered, values) and torch.equal(
                    values.float().sort(dim=1).values, ref.float().sort(dim=1).values)
                if not ok:
                    print(f"MISMATCH {dname} {rows}x{n}x{k} variant {variant}", file=sys.stderr)
                    sys.exit(1)
            args = [(x,) for x in inputs]
            t_hylra = timer.median_us(hylra, args, reps=100)
            t_torch = timer.median_us(torch_topk, args, reps=100)
            alternatives = [(timer.median_us(lambda x, v=v: hylra(x, variant=v), args, reps=50), launch_shape(v))
                            for v in range(1, lib.hylra_topk_num_variants())]
            fi = FLASHINFER_US[(rows, n, k)][0 if dname == "fp32" else 1]
            rows_out.append((f"{rows}x{n // 1024}Kx{k}", dname, t_hylra, nbytes / t_hylra / 1e3, t_torch,
                             t_torch / t_hylra, fi, fi / t_hylra, launch_shape(0), alternatives))
            print(rows_out[-1], flush=True)
            del inputs

    print()
    print(harness.header("Top-k: hylra BatchedTopK vs torch.topk(sorted=False)"))
    print("hylra = the default call (method kCluster); kSampled = the same call with method = kSampled (variant 1).")
    print("| rows×N×k | dtype | hylra µs | hylra GB/s | torch.topk µs | × torch | FlashInfer µs (issue) | × FlashInfer | method: CTAs/row × keys/CTA | kSampled µs | kSampled × torch | kSampled × FlashInfer | its method |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, dname, th, gbs, tt, ratio, fi, fratio, split, alternatives in rows_out:
        ts, sampled_split = alternatives[0]
        print(f"| {shape} | {dname} | {th:.1f} | {gbs:.0f} | {tt:.1f} | {ratio:.1f} | {fi} | {fratio:.2f} | {split} | "
              f"{ts:.1f} | {tt / ts:.1f} | {fi / ts:.2f} | {sampled_split} |")
    print()
    names = [lib.hylra_topk_variant_name(v).decode() for v in range(lib.hylra_topk_num_variants())]
    print("Alternative policies (bench/topk_capi.cu), µs (median of 50) and CTAs/row × keys/CTA:")
    print("| rows×N×k | dtype | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for shape, dname, th, *_, split, alternatives in rows_out:
        print(f"| {shape} | {dname} | {th:.1f} ({split}) | " +
              " | ".join(f"{t:.1f} ({s})" for t, s in alternatives) + " |")

    correlated_rows(lib, timer)


def correlated(rows, n, length, dtype):
    """Normal scores correlated over about `length` positions: 90 % of the variance from a normal
    sequence of n / length points interpolated linearly, 10 % white noise. Attention scores have
    such local structure; the sampled method samples 128-byte runs, so its effective sample shrinks."""
    white = torch.randn(rows, n, device="cuda")
    if length <= 1:
        return white.to(dtype)
    coarse = torch.randn(rows, 1, n // length + 1, device="cuda")
    smooth = torch.nn.functional.interpolate(coarse, size=n, mode="linear", align_corners=True).view(rows, n)
    smooth = smooth / smooth.std(dim=1, keepdim=True)
    return (0.9 ** 0.5 * smooth + 0.1 ** 0.5 * white).to(dtype)


def correlated_rows(lib, timer):
    """The sampled method (method = kSampled) against the default (kCluster) on position-correlated
    rows: time, and rows its sample misled, which the cluster method then selects (checked against torch.topk first)."""
    rows, n, k = 64, 131072, 2048
    lib.hylra_topk_fallback_rows.restype = ctypes.c_int
    print()
    print(f"Position-correlated scores, {rows}x{n // 1024}Kx{k} (see correlated()), µs (median of 50):")
    print("| correlation length | dtype | default (kCluster) µs | kSampled µs | rows kSampled sent to the fallback |")
    print("|---|---|---|---|---|")
    for dtype, code, dname in DTYPES:
        for length in (1, 64, 1024, 16384):
            inputs = [correlated(rows, n, length, dtype) for _ in range(4)]
            indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
            values = torch.empty(rows, k, dtype=dtype, device="cuda")

            def hylra(x, variant=0, with_values=False):
                status = lib.hylra_topk(variant, code, harness.ptr(x), ctypes.c_longlong(n), rows, n, ctypes.c_void_p(0), k,
                                        harness.ptr(indices), harness.ptr(values if with_values else None), 0,
                                        harness.stream())
                if status != 0:
                    raise RuntimeError(f"hylra_topk returned status {status}")

            hylra(inputs[0], variant=1, with_values=True)
            fallbacks = lib.hylra_topk_fallback_rows(1, code, rows, n, k)
            ref = torch.topk(inputs[0], k, dim=1, sorted=False).values
            if not torch.equal(values.float().sort(dim=1).values, ref.float().sort(dim=1).values):
                print(f"MISMATCH correlated {dname} length {length}", file=sys.stderr)
                sys.exit(1)
            args = [(x,) for x in inputs]
            t_default = timer.median_us(hylra, args, reps=50)
            t_sampled = timer.median_us(lambda x: hylra(x, variant=1), args, reps=50)
            print(f"| {length} | {dname} | {t_default:.1f} | {t_sampled:.1f} | {fallbacks} of {rows} |", flush=True)
            del inputs


if __name__ == "__main__":
    main()
