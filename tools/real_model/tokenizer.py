"""Byte-level BPE tokenizer built from the GGUF vocabulary and merges (GPT-2 style).

The GGUF says `tokenizer.ggml.model = gpt2`, `tokenizer.ggml.pre = smollm`. That is the
Hugging Face tokenizer of SmolLM2: pre-tokenize with `Digits(individual_digits=True)` then the
GPT-2 byte-level regex, map bytes to the printable GPT-2 alphabet, and apply BPE merges by rank.
Control tokens (`<|im_start|>`, `<|endoftext|>`, ...) are matched literally before BPE.
No BOS is added (`add_bos_token = False`).
"""
from __future__ import annotations

import functools

import regex

# GPT-2 pre-tokenizer pattern, used after splitting every digit into its own piece.
_GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
_DIGIT = regex.compile(r"\p{N}")
_CONTROL = 3  # llama.cpp token type of control tokens


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Tokenizer:
    """Encode text to token ids and decode ids to text with the model's own BPE."""

    def __init__(self, fields: dict):
        self.tokens: list[str] = fields["tokens"]
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(fields["merges"])}
        self.eos_id = fields["eos_id"]
        self.byte_enc = _bytes_to_unicode()
        self.byte_dec = {c: b for b, c in self.byte_enc.items()}
        specials = [t for t, ty in zip(self.tokens, fields["token_type"]) if ty == _CONTROL]
        specials.sort(key=len, reverse=True)
        self.special_re = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")

    @functools.lru_cache(maxsize=1 << 16)
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Merge the characters of one pre-token by lowest merge rank until none applies."""
        parts = list(piece)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return tuple(self.vocab[p] for p in parts)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        pieces: list[str] = []
        pos = 0
        for m in _DIGIT.finditer(text):  # Digits(individual_digits=True)
            pieces += [text[pos:m.start()], m.group()]
            pos = m.end()
        pieces.append(text[pos:])
        for piece in pieces:
            for word in _GPT2_PATTERN.findall(piece):
                mapped = "".join(self.byte_enc[b] for b in word.encode("utf-8"))
                ids.extend(self._bpe(mapped))
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; control-token strings become their single ids."""
        ids: list[int] = []
        for i, chunk in enumerate(self.special_re.split(text)):
            if i % 2:
                ids.append(self.vocab[chunk])
            elif chunk:
                ids.extend(self._encode_ordinary(chunk))
        return ids

    def decode(self, ids) -> str:
        """Text of `ids` (byte-level decoding; invalid UTF-8 is replaced)."""
        chars = "".join(self.tokens[i] for i in ids)
        data = bytes(self.byte_dec.get(c, ord("?")) for c in chars if c in self.byte_dec)
        return data.decode("utf-8", errors="replace")
