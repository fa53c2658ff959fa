"""End-to-end accuracy of a policy: rerun the last positions of a text with hybrid attention.

The dense KV cache of positions 0 … N-T-1 comes from the trace (it is what an engine holds after
a dense prefill). The last T positions are then run as one block through all 30 layers with the
policy's attention (model.forward_block), so a layer's approximation changes the hidden states,
and hence the Q/K/V, of every later layer — errors propagate as in an engine. Causality makes the
block rerun identical to decoding those T tokens one by one (teacher-forced on the text).

Metrics against the dense rerun, over the T positions: next-token top-1 agreement, mean
KL(dense ‖ hybrid) in nats, and perplexity of the text's next tokens (dense vs hybrid).
"""
from __future__ import annotations

import numpy as np

import hybrid
from model import Llama, nll, softmax
from policies import Policy


def policy_attend(policy: Policy, cfg: hybrid.SelectConfig, num_kv_heads: int, sm_scale: float):
    """An `AttendFn` that executes `policy` layer by layer, with per-layer index slots."""
    slots: dict[int, np.ndarray] = {}

    def attend(layer, q, k, v, q_pos):
        kind = policy.kinds[layer]
        logits = hybrid.attention_logits(q, k, q_pos, sm_scale)
        if kind == "Reuse":
            return hybrid.attend(hybrid.sparse_probs(logits, slots[policy.src[layer]]), v)
        probs = softmax(logits)
        if kind == "Dense":
            return hybrid.attend(probs, v)
        units = hybrid.select_units(hybrid.group_scores(probs, num_kv_heads), q_pos, cfg)
        slots[layer] = hybrid.token_mask(units, q_pos, cfg.block, k.shape[0])
        if kind == "DenseSelect":
            return hybrid.attend(probs, v)
        return hybrid.attend(hybrid.sparse_probs(logits, slots[layer]), v)

    return attend


def rerun(model: Llama, trace: dict, num_eval: int, attend=None, on_layer=None) -> np.ndarray:
    """Logits [T, vocab] of the last T = num_eval positions, on the trace's dense prefix cache."""
    N = trace["meta"]["num_tokens"]
    P = N - num_eval
    prefix = [(k[:P], v[:P]) for k, v in zip(trace["k"], trace["v"])]
    return model.forward_block(trace["tokens"][P:N], kv_prefix=prefix, attend=attend,
                               on_layer=on_layer)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    lg = logits.astype(np.float64)
    m = lg.max(axis=-1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(axis=-1, keepdims=True))


def compare(dense_logits: np.ndarray, logits: np.ndarray, targets: np.ndarray) -> dict:
    """top-1 agreement, mean KL(dense ‖ hybrid) and both perplexities over the positions."""
    ld, lh = log_softmax(dense_logits), log_softmax(logits)
    kl = np.sum(np.exp(ld) * (ld - lh), axis=-1)
    ppl_d = float(np.exp(nll(dense_logits, targets).mean()))
    ppl_h = float(np.exp(nll(logits, targets).mean()))
    return {"top1": float(np.mean(ld.argmax(-1) == lh.argmax(-1))), "kl": float(kl.mean()),
            "ppl_dense": ppl_d, "ppl": ppl_h, "dppl_pct": 100.0 * (ppl_h / ppl_d - 1.0)}


def evaluate(model: Llama, trace: dict, policy: Policy, cfg: hybrid.SelectConfig,
             num_eval: int, dense_logits: np.ndarray) -> dict:
    """Metrics of one policy at one selection config on one trace."""
    meta = trace["meta"]
    attend = policy_attend(policy, cfg, meta["num_kv_heads"], meta["sm_scale"])
    logits = rerun(model, trace, num_eval, attend)
    N = meta["num_tokens"]
    return compare(dense_logits, logits, trace["tokens"][N - num_eval + 1:N + 1])


def dense_reference(model: Llama, trace: dict, num_eval: int) -> tuple[np.ndarray, float]:
    """Dense rerun logits, and the max relative deviation of its Q from the captured trace Q
    (a self-check that the rerun reproduces the prefill that wrote the trace)."""
    meta = trace["meta"]
    dev = []

    def check(layer, q, k, v):
        ref = trace["q"][layer][meta["num_queries"] - num_eval:]
        dev.append(float(np.abs(q - ref).max() / np.abs(ref).max()))

    logits = rerun(model, trace, num_eval, on_layer=check)
    return logits, max(dev)
