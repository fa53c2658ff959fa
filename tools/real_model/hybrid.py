"""Hybrid-attention semantics for one decode layer (the Python executable spec).

Shapes: q [T,Hq,d] at positions q_pos[T]; k, v [N,Hkv,d]; GQA group g = Hq / Hkv, query head h
uses KV head h // g. Query t attends causally to tokens 0 … q_pos[t].

Selection (DESIGN.md §2):
* score of token n for KV head h = max over the group's query heads of the softmax probability
  (full causal softmax of that query head). The max keeps a token that any head of the group
  needs; probabilities, unlike raw logits, are comparable across heads;
* tokens are pooled into blocks of B (max) — B = 1 is token granularity — and k // B blocks are
  kept, so the token budget is equal across granularities;
* sink blocks (covering tokens < sink) and recent blocks (covering tokens > p - recent) are always
  kept and counted inside the budget; the rest are the highest-scoring blocks, ties toward the
  lower index; NaN scores are never selected; if the row has ≤ k // B blocks, all are kept;
* a kept block contributes all of its tokens, causally clipped at p.

Selections are boolean unit masks [T,Hkv,NB] (NB = ceil(N/B)); `token_mask` expands them and
`mask_to_indices` gives the -1-padded int32 index lists of the C++ contract.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from model import softmax


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """Top-k budget in tokens, block granularity and the always-kept sink / recent tokens."""

    k: int
    block: int = 1
    sink: int = 4
    recent: int = 16

    @property
    def units(self) -> int:
        """Budget in blocks (k // B)."""
        return self.k // self.block

    def validate(self) -> None:
        """The forced sink and recent blocks must leave room in the budget."""
        forced = -(-self.sink // self.block) + -(-self.recent // self.block) + 1
        if self.k % self.block or forced >= self.units:
            raise ValueError(f"{self}: k must be a multiple of block and exceed the forced blocks")

    def tag(self) -> str:
        return f"k{self.k}_b{self.block}"


def attention_logits(q, k, q_pos, sm_scale, dtype=np.float32) -> np.ndarray:
    """Scaled causal logits [T,Hq,N]; positions after q_pos are -inf."""
    T, Hq, _ = q.shape
    N, Hkv, _ = k.shape
    g = Hq // Hkv
    qg = q.astype(dtype).transpose(1, 0, 2).reshape(Hkv, g * T, -1)            # [Hkv,g*T,d]
    kt = k.astype(dtype).transpose(1, 2, 0)                                    # [Hkv,d,N]
    s = (qg @ kt).reshape(Hq, T, N).transpose(1, 0, 2) * dtype(sm_scale)       # [T,Hq,N]
    causal = np.arange(N)[None, None, :] <= q_pos[:, None, None]
    return np.where(causal, s, -np.inf)


def group_scores(probs: np.ndarray, num_kv_heads: int) -> np.ndarray:
    """Selection score [T,Hkv,N]: max over each GQA group's query heads of the probability."""
    T, Hq, N = probs.shape
    return probs.reshape(T, num_kv_heads, Hq // num_kv_heads, N).max(axis=2)


def attend(probs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Output [T,Hq,d] = probs [T,Hq,N] @ v [N,Hkv,d] per GQA group."""
    T, Hq, N = probs.shape
    Hkv = v.shape[1]
    g = Hq // Hkv
    p = probs.transpose(1, 0, 2).reshape(Hkv, g * T, N)                       # [Hkv,g*T,N]
    out = p @ v.astype(probs.dtype).transpose(1, 0, 2)                         # [Hkv,g*T,d]
    return out.reshape(Hq, T, -1).transpose(1, 0, 2)


def sparse_probs(logits: np.ndarray, tok_mask: np.ndarray) -> np.ndarray:
    """Softmax over the selected tokens only (tok_mask [T,Hkv,N] broadcast to the group)."""
    T, Hq, N = logits.shape
    g = Hq // tok_mask.shape[1]
    m = np.repeat(tok_mask, g, axis=1)
    return softmax(np.where(m, logits, -np.inf))


def select_units(scores: np.ndarray, q_pos: np.ndarray, cfg: SelectConfig) -> np.ndarray:
    """Kept blocks [T,Hkv,NB] (bool) for selection scores [T,Hkv,N]; see the module doc."""
    T, Hkv, N = scores.shape
    B = cfg.block
    NB = -(-N // B)
    s = np.where(np.isnan(scores), -np.inf, scores)
    if NB * B != N:
        s = np.concatenate([s, np.full((T, Hkv, NB * B - N), -np.inf, s.dtype)], axis=2)
    pooled = s.reshape(T, Hkv, NB, B).max(axis=3)                              # [T,Hkv,NB]
    u = np.arange(NB)
    p = q_pos[:, None]
    valid = u[None, :] <= p // B                                               # [T,NB]
    forced = valid & ((u[None, :] * B < cfg.sink) | (u[None, :] * B + B - 1 > p - cfg.recent))
    everything = (p[:, 0] // B + 1) <= cfg.units                               # [T]
    remaining = cfg.units - forced.sum(axis=1)                                 # [T]
    key = np.where((valid & ~forced)[:, None, :], pooled, -np.inf)
    chosen = _top_lower_index_ties(key, np.broadcast_to(remaining[:, None], (T, Hkv)))
    keep = forced[:, None, :] | chosen
    return np.where(everything[:, None, None], valid[:, None, :], keep)


def _top_lower_index_ties(key: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mask of the count[r] largest finite entries of each row of key [..., n]; among equal
    values the lower index wins. O(n) per row: partition to the row's threshold value, keep
    everything above it and the first (lowest-index) entries equal to it."""
    n = key.shape[-1]
    kmax = int(min(max(count.max(), 1), n))
    top = -np.partition(-key, kmax - 1, axis=-1)[..., :kmax]                  # kmax largest
    top = -np.sort(-top, axis=-1)                                              # descending
    c = np.clip(count, 1, kmax)[..., None]
    thr = np.take_along_axis(top, c - 1, axis=-1)                              # count-th largest
    thr = np.where(count[..., None] > 0, thr, np.inf)
    above = key > thr
    need = count[..., None] - above.sum(axis=-1, keepdims=True)
    tie = key == thr
    chosen = above | (tie & (np.cumsum(tie, axis=-1) <= need))
    return chosen & (key > -np.inf)


def token_mask(units: np.ndarray, q_pos: np.ndarray, block: int, n_tokens: int) -> np.ndarray:
    """Expand kept blocks [T,Hkv,NB] to kept tokens [T,Hkv,N], causally clipped."""
    tok = np.repeat(units, block, axis=2)[:, :, :n_tokens]
    return tok & (np.arange(n_tokens)[None, None, :] <= q_pos[:, None, None])


def mask_to_indices(tok_mask: np.ndarray, width: int | None = None) -> np.ndarray:
    """int32 [T,Hkv,width] ascending token indices, -1 tail padding (the C++ index contract)."""
    counts = tok_mask.sum(axis=2)
    width = int(counts.max()) if width is None else width
    out = np.full(tok_mask.shape[:2] + (width,), -1, np.int32)
    for t, h in np.ndindex(*tok_mask.shape[:2]):
        idx = np.flatnonzero(tok_mask[t, h])
        out[t, h, :len(idx)] = idx
    return out


def gather_attention_ref(q, k, v, q_pos, indices, sm_scale) -> np.ndarray:
    """float64 gather decode over explicit indices [T,Hkv,width] (-1 = padding), per query.

    Written independently of the mask path, as the Python side of the C++ cross-check.
    """
    T, Hq, d = q.shape
    g = Hq // k.shape[1]
    out = np.zeros((T, Hq, d))
    for t in range(T):
        for h in range(Hq):
            idx = indices[t, h // g]
            idx = idx[(idx >= 0) & (idx <= q_pos[t])]
            s = k[idx, h // g].astype(np.float64) @ q[t, h].astype(np.float64) * sm_scale
            w = np.exp(s - s.max())
            out[t, h] = (w / w.sum()) @ v[idx, h // g].astype(np.float64)
    return out
