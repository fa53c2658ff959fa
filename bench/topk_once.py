"""Calls BatchedTopK (the default method) twice per shape from each given build of the C-ABI
library, for a profiler to look at single launches (bench/RESULTS.md, session 15):

    ncu --clock-control none --kernel-name regex:cluster_select \
        --metrics smsp__average_warp_latency_per_inst_issued.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio \
        python3 bench/topk_once.py <build dir> [<build dir> ...]

A build dir holds bench/libhylra_topk_capi.so (see ab_topk.py).
"""
import ctypes
import sys

import torch

import harness

SHAPES = [(1, 131072, torch.float32, 2), (8, 8192, torch.bfloat16, 1), (64, 131072, torch.bfloat16, 1)]  # rows, N, dtype, C-ABI code
K = 2048

for build in sys.argv[1:]:
    lib = harness.load_library("hylra_topk_capi", build)
    for rows, n, dtype, code in SHAPES:
        scores = torch.randn(rows, n, device="cuda", dtype=dtype)
        indices = torch.empty(rows, K, dtype=torch.int32, device="cuda")
        for _ in range(2):
            status = lib.hylra_topk(0, code, harness.ptr(scores), ctypes.c_longlong(n), rows, n, ctypes.c_void_p(0), K,
                                    harness.ptr(indices), ctypes.c_void_p(0), 0, harness.stream())
            if status != 0:
                raise RuntimeError(f"status {status}")
    torch.cuda.synchronize()
