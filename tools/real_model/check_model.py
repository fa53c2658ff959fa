"""Sanity check of the forward pass: perplexity on real English and greedy continuations.

    python3 tools/real_model/check_model.py [--cache traces/real_model] [--tokens 1024]

A correct Llama pass over the GPL-3 text gives a perplexity in the teens (the full 7168-token
context of the trace capture gives ~16); a wrong RoPE, norm or head mapping gives hundreds or
more. The greedy continuations should read as sensible English.
"""
from __future__ import annotations

import argparse

import numpy as np

import capture
import gguf_model
from model import Llama, nll
from tokenizer import Tokenizer

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three primary colors.<|im_end|>\n<|im_start|>assistant\n",
    "The GNU General Public License is a free, copyleft license for",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="traces/real_model")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--new", type=int, default=40, help="tokens to generate per prompt")
    a = ap.parse_args()
    cfg, w = gguf_model.load(a.cache)
    tok = Tokenizer(gguf_model.load_tokenizer_fields(a.cache))
    model = Llama(cfg, w)
    ids = tok.encode(capture.read_text("gpl3"))[:a.tokens + 1]
    losses = nll(model.forward_block(ids[:-1]), np.asarray(ids[1:]))
    print(f"perplexity of the first {a.tokens} tokens of GPL-3: {np.exp(losses.mean()):.2f}")
    for p in PROMPTS:
        out = model.generate_greedy(tok.encode(p), a.new, stop_id=tok.eos_id)
        print(f"--- prompt: {p!r}\n    greedy: {tok.decode(out)!r}")


if __name__ == "__main__":
    main()
