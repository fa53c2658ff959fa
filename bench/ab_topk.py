"""Top-k A/B: BatchedTopK from several builds of the C-ABI library (bench/topk_capi.cu), timed in
one process on the same random normal rows, each build in two rounds (the second in reverse
order), the lower median kept; every result is checked against torch.topk first. A build is a
directory holding bench/libhylra_topk_capi.so: compile bench/topk_capi.cu against another
header tree (an older commit, or a copy with one policy constant changed) into it.

    git worktree add /tmp/hylra-old <commit>
    for tree in /tmp/hylra-old $PWD; do
      mkdir -p $tree/ab/bench
      nvcc -O3 -DNDEBUG -arch=sm_90a -Xcompiler=-fPIC -shared --expt-relaxed-constexpr -std=c++17 \
        -I$tree/include bench/topk_capi.cu -o $tree/ab/bench/libhylra_topk_capi.so
    done
    SHAPES=8:32768:2048,1:131072:2048 python3 bench/ab_topk.py /tmp/hylra-old/ab ab

Prints, per shape and dtype, "default | method = kSampled" cells of "build A / build B / ..." us.
"""
import ctypes
import os
import sys

import torch
import harness

dirs = sys.argv[1:]
libs = []
for d in dirs:
    lib = harness.load_library("hylra_topk_capi", d)
    lib.hylra_topk.restype = ctypes.c_int
    libs.append(lib)
timer = harness.ColdTimer()
shapes = [(8, 8192, 2048), (8, 131072, 2048), (64, 32768, 2048), (64, 131072, 2048), (256, 131072, 2048),
          (64, 131072, 256), (1, 131072, 2048)]
if os.environ.get("SHAPES"):  # rows:n:k,...
    shapes = [tuple(int(x) for x in item.split(":")) for item in os.environ["SHAPES"].split(",")]
for rows, n, k in shapes:
    for dtype, code, dname in [(torch.float32, 2, "fp32"), (torch.bfloat16, 1, "bf16")]:
        inputs = [torch.randn(rows, n, device="cuda", dtype=dtype) for _ in range(max(2, (512 << 20) // (rows * n * 4)))]
        indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
        values = torch.empty(rows, k, dtype=dtype, device="cuda")
        ref = torch.topk(inputs[0], k, dim=1, sorted=False).values.float().sort(dim=1).values
        cells = []
        for variant in (0, 1):
            times = {i: [] for i in range(len(libs))}
            for rnd in range(2):
                order = list(range(len(libs))) if rnd == 0 else list(reversed(range(len(libs))))
                for i in order:
                    lib = libs[i]
                    def call(x, with_values=False, lib=lib):
                        st = lib.hylra_topk(variant, code, harness.ptr(x), ctypes.c_longlong(n), rows, n, ctypes.c_void_p(0), k,
                                            harness.ptr(indices), harness.ptr(values if with_values else None), 0, harness.stream())
                        if st != 0:
                            raise RuntimeError(f"status {st}")
                    if rnd == 0:
                        call(inputs[0], True)
                        if not torch.equal(values.float().sort(dim=1).values, ref):
                            print(f"MISMATCH {dirs[i]} {rows}x{n} {dname} v{variant}", flush=True)
                            sys.exit(1)
                    times[i].append(timer.median_us(call, [(x,) for x in inputs], reps=50))
            cells.append(" / ".join(f"{min(times[i]):.1f}" for i in range(len(libs))))
        print(f"| {rows}x{n}x{k} | {dname} | " + " | ".join(cells) + " |", flush=True)
        del inputs
        torch.cuda.empty_cache()
