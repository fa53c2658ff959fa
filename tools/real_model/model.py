"""Llama forward pass in numpy (float32) with a pluggable attention function.

One code path serves everything: `forward_block` runs a block of consecutive tokens through all
layers on top of per-layer KV prefixes, calling `attend(layer, q, k, v, q_pos)` for the attention
of each layer, where `k`, `v` hold the prefix plus the block (post-RoPE keys). Prefill is a
block with an empty prefix and dense attention; the hybrid evaluation reruns the last M tokens
of a text as one block with a policy's attention. Because attention is causal, processing the
block layer by layer is exactly equivalent to decoding its tokens one at a time.

Architecture (SmolLM2 / Llama): RMSNorm → Q/K/V projections → rotate-half RoPE (theta from the
GGUF) → GQA attention → output projection → residual; RMSNorm → SwiGLU MLP → residual; final
RMSNorm; LM head tied to the token embedding.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gguf_model import ModelConfig

# attend(layer, q[T,Hq,d], k[N,Hkv,d], v[N,Hkv,d], q_pos[T]) -> out[T,Hq,d]
AttendFn = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x²) + eps) · w, along the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax; rows that are all -inf give zeros, not NaN."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(s > 0, s, 1)


def dense_causal_attention(q, k, v, q_pos, sm_scale, chunk=512):
    """Full causal attention: query t (at position q_pos[t]) attends to keys 0..q_pos[t].

    q [T,Hq,d], k/v [N,Hkv,d]; GQA: query head h uses KV head h // (Hq/Hkv). Rows are chunked
    to bound the score matrix to chunk × N per head, and each chunk reads only the keys it can
    see. Complexity O(T·N·Hq·d).
    """
    T, Hq, d = q.shape
    Hkv = k.shape[1]
    g = Hq // Hkv
    out = np.empty_like(q)
    keys = np.arange(k.shape[0])
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        n = int(q_pos[c0:c1].max()) + 1                                 # causal key limit
        mask = keys[None, :n] <= q_pos[c0:c1, None]                     # [c, n]
        for h in range(Hkv):
            qh = q[c0:c1, h * g:(h + 1) * g, :].transpose(1, 0, 2)      # [g, c, d]
            s = (qh @ k[:n, h, :].T) * sm_scale                          # [g, c, n]
            p = softmax(np.where(mask[None], s, -np.inf))
            out[c0:c1, h * g:(h + 1) * g, :] = (p @ v[:n, h, :]).transpose(1, 0, 2)
    return out


class Llama:
    """SmolLM2-135M forward pass; weights in HF orientation ([out, in])."""

    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        self.w = weights
        self.sm_scale = 1.0 / np.sqrt(cfg.head_dim)
        half = cfg.head_dim // 2
        self.inv_freq = cfg.rope_theta ** (-np.arange(half, dtype=np.float64) * 2 / cfg.head_dim)

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Rotate-half RoPE: pairs (i, i + d/2) rotated by angle pos · theta^(-2i/d)."""
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]        # [T, d/2]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def qkv(self, layer: int, x: np.ndarray, pos: np.ndarray):
        """Post-RoPE q [T,Hq,d], k [T,Hkv,d] and v [T,Hkv,d] of `layer` for hidden states x."""
        c, p = self.cfg, f"blk.{layer}."
        h = rms_norm(x, self.w[p + "attn_norm.weight"], c.rms_eps)
        T = x.shape[0]
        q = (h @ self.w[p + "attn_q.weight"].T).reshape(T, c.num_qo_heads, c.head_dim)
        k = (h @ self.w[p + "attn_k.weight"].T).reshape(T, c.num_kv_heads, c.head_dim)
        v = (h @ self.w[p + "attn_v.weight"].T).reshape(T, c.num_kv_heads, c.head_dim)
        return self.rope(q, pos), self.rope(k, pos), v

    def finish_layer(self, layer: int, x: np.ndarray, attn: np.ndarray) -> np.ndarray:
        """Output projection + residual, then the SwiGLU MLP block + residual."""
        c, p = self.cfg, f"blk.{layer}."
        x = x + attn.reshape(x.shape[0], -1) @ self.w[p + "attn_output.weight"].T
        h = rms_norm(x, self.w[p + "ffn_norm.weight"], c.rms_eps)
        gate = h @ self.w[p + "ffn_gate.weight"].T
        up = h @ self.w[p + "ffn_up.weight"].T
        act = gate / (1.0 + np.exp(-gate)) * up
        return x + act @ self.w[p + "ffn_down.weight"].T

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Final RMSNorm and tied LM head: [T, vocab]."""
        h = rms_norm(x, self.w["output_norm.weight"], self.cfg.rms_eps)
        return h @ self.w["token_embd.weight"].T

    def dense_attend(self, layer, q, k, v, q_pos):
        """Default `AttendFn`: dense causal attention."""
        return dense_causal_attention(q, k, v, q_pos, self.sm_scale)

    def forward_block(self, tokens, kv_prefix=None, attend: AttendFn | None = None,
                      on_layer=None) -> np.ndarray:
        """Run `tokens` (positions len(prefix) …) through the model; return logits [T, vocab].

        kv_prefix: per layer (k [P,Hkv,d], v [P,Hkv,d]) of the preceding positions, or None.
        attend: attention of each layer (dense causal by default).
        on_layer(layer, q, k_full, v_full): optional observer (trace capture, caches).
        """
        c = self.cfg
        attend = attend or self.dense_attend
        P = 0 if kv_prefix is None else kv_prefix[0][0].shape[0]
        pos = np.arange(P, P + len(tokens))
        x = self.w["token_embd.weight"][np.asarray(tokens)]
        for layer in range(c.num_layers):
            q, k, v = self.qkv(layer, x, pos)
            if kv_prefix is not None:
                k = np.concatenate([kv_prefix[layer][0], k])
                v = np.concatenate([kv_prefix[layer][1], v])
            if on_layer is not None:
                on_layer(layer, q, k, v)
            x = self.finish_layer(layer, x, attend(layer, q, k, v, pos))
        return self.logits(x)

    def generate_greedy(self, prompt_ids: list[int], max_new: int, stop_id: int | None = None):
        """Greedy decoding with a KV cache, one token per step; returns the new token ids."""
        cache: list = [None] * self.cfg.num_layers

        def keep(layer, q, k, v):
            cache[layer] = (k, v)

        logits = self.forward_block(prompt_ids, on_layer=keep)
        out = []
        for _ in range(max_new):
            nxt = int(np.argmax(logits[-1]))
            if nxt == stop_id:
                break
            out.append(nxt)
            logits = self.forward_block([nxt], kv_prefix=list(cache), on_layer=keep)
        return out


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position negative log-likelihood (nats) of `targets` under `logits`."""
    lg = logits.astype(np.float64)
    m = lg.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(lg - m).sum(axis=-1))
    return lse - lg[np.arange(len(targets)), targets]
