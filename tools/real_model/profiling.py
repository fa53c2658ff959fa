"""Offline profiling of a dense trace: per-layer sensitivity and the similarity matrix.

For each selection config (k, block, sink, recent) and each layer l of the trace:
* S_l = the layer's own top-k selection (hybrid.py semantics) for every query and KV head;
* sensitivity rnmse[l] = ||a - b||² / ||b||² over all queries and heads, a = attention output
  over S_l only, b = dense output (HyLRA's RNMSE);
* similarity M[i][j] (i < j) = |S_i ∩ S_j| / (k / B), averaged over queries and KV heads,
  counted in selection units (blocks at B > 1). Sink and recent blocks are in every S_l, so they
  are part of the overlap, exactly as they are part of what a Reuse layer attends to.
"""
from __future__ import annotations

import numpy as np

import hybrid
from model import softmax


def profile_trace(trace: dict, configs: list[hybrid.SelectConfig], max_queries: int | None = None):
    """Return {config.tag(): {"rnmse": [L], "M": [L, L] (upper triangle)}} for a loaded trace."""
    meta = trace["meta"]
    L, N, M = meta["num_layers"], meta["num_tokens"], meta["num_queries"]
    Hkv = meta["num_kv_heads"]
    T = M if max_queries is None else min(M, max_queries)
    q_pos = np.arange(N - T, N)
    packed = {c.tag(): [] for c in configs}
    rnmse = {c.tag(): np.zeros(L) for c in configs}
    for layer in range(L):
        q, k, v = trace["q"][layer][M - T:], trace["k"][layer], trace["v"][layer]
        logits = hybrid.attention_logits(q, k, q_pos, meta["sm_scale"])
        probs = softmax(logits)
        dense = hybrid.attend(probs, v)
        scores = hybrid.group_scores(probs, Hkv)
        for c in configs:
            units = hybrid.select_units(scores, q_pos, c)
            sparse = hybrid.attend(hybrid.sparse_probs(logits, hybrid.token_mask(units, q_pos, c.block, N)), v)
            rnmse[c.tag()][layer] = float(np.sum((sparse - dense) ** 2) / np.sum(dense ** 2))
            packed[c.tag()].append(np.packbits(units, axis=2))
    out = {}
    for c in configs:
        P = packed[c.tag()]
        sim = np.zeros((L, L))
        for i in range(L):
            for j in range(i + 1, L):
                inter = np.bitwise_count(P[i] & P[j]).sum(axis=2)              # [T, Hkv]
                sim[i, j] = float(np.mean(inter / c.units))
        out[c.tag()] = {"rnmse": rnmse[c.tag()].tolist(), "M": sim.tolist()}
    return out
