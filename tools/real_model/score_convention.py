"""Which per-token score should top-k rank by under GQA? Compares three conventions on the traces.

hylra's dense decode exports, per (sequence, KV head), the max over the group's query heads of the
raw logit (include/hylra/attention/scores.hpp): it is final inside one split-KV chunk. This study
(hybrid.py) ranks by the max over the group of the softmax probability, which needs each head's
final log-sum-exp. The sum of probabilities is the third common choice. For every layer of both
captured traces and every (k, B), this script selects with each convention and reports:
* RNMSE of the layer's sparse output against dense (as in profiling.py), mean and worst over layers;
* the overlap of each convention's selection with the max-probability one (selection units).

    python3 tools/real_model/score_convention.py [--cache traces/real_model] [--queries 64]

Writes tools/real_model/results/score_convention.md. Needs the traces of run_all.sh in the cache.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import capture
import hybrid
from model import softmax

TEXTS = ("gpl3", "gfdl_mpl")


def scores_by_convention(logits: np.ndarray, probs: np.ndarray, num_kv_heads: int) -> dict:
    """Selection scores [T,Hkv,N] under each convention."""
    T, Hq, N = probs.shape
    group = (T, num_kv_heads, Hq // num_kv_heads, N)
    return {
        "max probability": probs.reshape(group).max(axis=2),
        "max logit": logits.reshape(group).max(axis=2),
        "sum of probabilities": probs.reshape(group).sum(axis=2),
    }


def study(trace: dict, configs: list[hybrid.SelectConfig], max_queries: int) -> dict:
    """{(config tag, convention): {"rnmse": [L], "overlap": [L]}} for one loaded trace."""
    meta = trace["meta"]
    L, N, M, Hkv = meta["num_layers"], meta["num_tokens"], meta["num_queries"], meta["num_kv_heads"]
    T = min(M, max_queries)
    q_pos = np.arange(N - T, N)
    out: dict = {}
    for layer in range(L):
        q, k, v = trace["q"][layer][M - T:], trace["k"][layer], trace["v"][layer]
        logits = hybrid.attention_logits(q, k, q_pos, meta["sm_scale"])
        probs = softmax(logits)
        dense = hybrid.attend(probs, v)
        conventions = scores_by_convention(logits, probs, Hkv)
        for c in configs:
            units = {name: hybrid.select_units(s, q_pos, c) for name, s in conventions.items()}
            baseline = units["max probability"]
            for name, u in units.items():
                sparse = hybrid.attend(hybrid.sparse_probs(logits, hybrid.token_mask(u, q_pos, c.block, N)), v)
                entry = out.setdefault((c.tag(), name), {"rnmse": [], "overlap": []})
                entry["rnmse"].append(float(np.sum((sparse - dense) ** 2) / np.sum(dense ** 2)))
                entry["overlap"].append(float((u & baseline).sum() / baseline.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="traces/real_model")
    ap.add_argument("--queries", type=int, default=64, help="last positions of each trace to score")
    ap.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[256, 1024, 2048])
    ap.add_argument("--blocks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "score_convention.md"))
    a = ap.parse_args()
    configs = [hybrid.SelectConfig(k=k, block=b) for k in a.ks for b in a.blocks]
    for c in configs:
        c.validate()
    lines = [
        "# Top-k score convention under GQA (SmolLM2-135M, group 3)",
        "",
        f"`python3 tools/real_model/score_convention.py --queries {a.queries}` — per layer, each convention's "
        "own top-k; RNMSE of the sparse output against dense (mean and worst of 30 layers) and the overlap "
        "of its selection with the max-probability one (mean over layers). Sink 4 and recent 16 tokens "
        "forced, as in the study.",
        "",
        "| text | k | B | convention | mean RNMSE | worst RNMSE | overlap with max probability |",
        "|---|---|---|---|---|---|---|",
    ]
    for text in TEXTS:
        trace = capture.load_trace(os.path.join(a.cache, f"trace_{text}"))
        result = study(trace, configs, a.queries)
        for c in configs:
            for name in ("max probability", "max logit", "sum of probabilities"):
                r = result[(c.tag(), name)]
                lines.append(f"| {text} | {c.k} | {c.block} | {name} | {np.mean(r['rnmse']):.4f} | "
                             f"{np.max(r['rnmse']):.4f} | {np.mean(r['overlap']):.3f} |")
        print(f"{text} done", flush=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
