"""Cross-check: Python hybrid attention of one trace layer vs hylra's C++ host reference.

For one layer of a captured trace and one selection config, this script
1. computes the layer's own top-k selection (hybrid.py), as an int32 index list [M, Hkv, k_max]
   (token ids at B = 1, block ids at B > 1; -1 padding) — the C++ index contract;
2. computes, in Python, dense attention and gather attention over that list two ways: the float32
   mask path used by the evaluation (hybrid.py) and an independent float64 loop;
3. builds tools/real_model/crosscheck.cpp with g++ against include/ (hylra's trace reader and
   reference::dense_decode / gather_decode), runs it on the same trace and list, and reports the
   largest relative difference (max |a - b| / max |b|) of every pair.
Two implementations of one semantics must agree to float precision (≈ 1e-6).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess

import numpy as np

import capture
import hybrid
from model import softmax

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOLERANCE = 1e-5


def python_side(trace_dir: str, layer: int, cfg: hybrid.SelectConfig, out_dir: str) -> dict:
    """Write indices.npy; return the Python outputs (float32 mask path, float64 loop)."""
    tr = capture.load_trace(trace_dir)
    meta = tr["meta"]
    N, M = meta["num_tokens"], meta["num_queries"]
    q, k, v = tr["q"][layer], tr["k"][layer], tr["v"][layer]
    q_pos = np.arange(N - M, N)
    logits = hybrid.attention_logits(q, k, q_pos, meta["sm_scale"])
    probs = softmax(logits)
    units = hybrid.select_units(hybrid.group_scores(probs, meta["num_kv_heads"]), q_pos, cfg)
    tok = hybrid.token_mask(units, q_pos, cfg.block, N)
    ids = hybrid.mask_to_indices(units, width=cfg.units)          # block ids (token ids at B=1)
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "indices.npy"), ids)
    tok_ids = hybrid.mask_to_indices(tok)
    all_ids = np.broadcast_to(np.arange(N, dtype=np.int32), (M, meta["num_kv_heads"], N))
    return {
        "py32_dense": hybrid.attend(probs, v),
        "py32_gather": hybrid.attend(hybrid.sparse_probs(logits, tok), v),
        "py64_dense": hybrid.gather_attention_ref(q, k, v, q_pos, all_ids, meta["sm_scale"]),
        "py64_gather": hybrid.gather_attention_ref(q, k, v, q_pos, tok_ids, meta["sm_scale"]),
    }


def cpp_side(trace_dir: str, layer: int, block: int, out_dir: str) -> dict:
    """Build and run crosscheck.cpp; return its outputs."""
    exe = os.path.join(out_dir, "crosscheck")
    subprocess.run(["g++", "-std=c++17", "-O2", "-I", os.path.join(REPO, "include"),
                    "-I", "/usr/local/cuda/include", os.path.join(HERE, "crosscheck.cpp"),
                    "-o", exe], check=True)
    subprocess.run([exe, trace_dir, str(layer), os.path.join(out_dir, "indices.npy"),
                    str(block), out_dir], check=True)
    return {"cpp_dense": np.load(os.path.join(out_dir, "cpp_dense_out.npy")),
            "cpp_gather": np.load(os.path.join(out_dir, "cpp_gather_out.npy"))}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def run(trace_dir: str, layer: int, k: int, block: int, out_dir: str, cpp: bool = True) -> dict:
    """Cross-check one layer; returns the largest relative difference of every pair."""
    cfg = hybrid.SelectConfig(k, block)
    out = python_side(trace_dir, layer, cfg, out_dir)
    pairs = [("py32_dense", "py64_dense"), ("py32_gather", "py64_gather")]
    if cpp:
        out.update(cpp_side(os.path.abspath(trace_dir), layer, block, os.path.abspath(out_dir)))
        pairs += [("cpp_dense", "py64_dense"), ("cpp_gather", "py64_gather"),
                  ("py32_dense", "cpp_dense"), ("py32_gather", "cpp_gather")]
    return {"layer": layer, "k": k, "block": block,
            "max_rel_diff": {f"{x} vs {y}": rel(out[x], out[y]) for x, y in pairs},
            "gather_vs_dense": rel(out["py64_gather"], out["py64_dense"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default="traces/real_model/trace_gpl3")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--block", type=int, default=1)
    ap.add_argument("--out", default="traces/real_model/crosscheck")
    ap.add_argument("--no-cpp", action="store_true", help="Python half only")
    a = ap.parse_args()
    res = run(a.trace, a.layer, a.k, a.block, a.out, cpp=not a.no_cpp)
    print(json.dumps(res, indent=1))
    worst = max(res["max_rel_diff"].values())
    if worst > TOLERANCE:
        raise SystemExit(f"cross-check FAILED: {worst:.3g} > {TOLERANCE}")


if __name__ == "__main__":
    main()
