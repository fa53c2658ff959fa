"""Per-layer hybrid-attention policies and the solvers that derive them from a profile.

A policy gives every layer a kind — Dense, DenseSelect, Select or Reuse(src) — (DESIGN.md §2).
One-letter pattern: D = Dense, F = DenseSelect (full attention + exports top-k), S = Select,
R = Reuse of the most recent producer. Validity: a Reuse source is an earlier producer
(DenseSelect or Select); the first non-Dense layer is a producer; sensitive layers are Dense or
DenseSelect.

All solvers share one convention so that they are comparable: the producers of a policy form a
set P that contains layer 0 and every sensitive layer; each layer outside P reuses the most recent
producer before it. Sensitive producers are DenseSelect (they attend densely anyway; exporting
their top-k costs no extra pass); the other producers have kind `producer` (DenseSelect, as in
HyLRA's "reset" layers, or Select); a sensitive producer that serves no Reuse layer is Dense.
The cost measure is |P|, the number of layers that attend densely or select; every other layer
skips its own selection.

Solvers (exact; L = 30 makes every DP trivial):
* `threshold`  — HyLRA: fewest producers such that every reuse edge has M[src][j] ≥ θ, ties
  broken by the largest total similarity of the reuse edges; DP over the last producer, O(L³);
* `jump`       — Jump-n: a producer every n layers (0, n, 2n, …) plus the sensitive layers;
* `anchors`    — K anchors (Kascade-style): exactly K producers maximising the total similarity
  of the served layers; DP over (count, last producer), O(K·L³);
* `select_all` — Select in every non-sensitive layer (sensitive layers Dense): no reuse;
* `dense`      — the baseline.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

KINDS = ("Dense", "DenseSelect", "Select", "Reuse")
LETTER = {"Dense": "D", "DenseSelect": "F", "Select": "S", "Reuse": "R"}


@dataclasses.dataclass(frozen=True)
class Policy:
    """Kinds per layer; src[l] is the source layer of a Reuse layer, else -1."""

    name: str
    kinds: tuple[str, ...]
    src: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return len(self.kinds)

    def producers(self) -> int:
        """Layers that attend densely or select (everything except Reuse)."""
        return sum(k != "Reuse" for k in self.kinds)

    def pattern(self) -> str:
        return "".join(LETTER[k] for k in self.kinds)

    def validate(self, sensitive) -> None:
        """Raise ValueError if the policy breaks a rule of the module doc."""
        seen_producers = set()
        first_non_dense = True
        for l, (kind, src) in enumerate(zip(self.kinds, self.src)):
            if kind not in KINDS:
                raise ValueError(f"layer {l}: unknown kind {kind}")
            if sensitive[l] and kind not in ("Dense", "DenseSelect"):
                raise ValueError(f"layer {l}: sensitive layer must be Dense or DenseSelect")
            if kind != "Dense" and first_non_dense and kind == "Reuse":
                raise ValueError(f"layer {l}: first non-Dense layer must be a producer")
            if kind != "Dense":
                first_non_dense = False
            if kind == "Reuse" and src not in seen_producers:
                raise ValueError(f"layer {l}: Reuse source {src} is not an earlier producer")
            if kind in ("DenseSelect", "Select"):
                seen_producers.add(l)

    def to_json(self) -> str:
        layers = [{"kind": k} if k != "Reuse" else {"kind": k, "src": s}
                  for k, s in zip(self.kinds, self.src)]
        return json.dumps({"name": self.name, "pattern": self.pattern(), "layers": layers})


def from_producers(name: str, producers, sensitive, producer: str = "DenseSelect") -> Policy:
    """Policy for a producer set: see the module doc for kinds and sources."""
    L = len(sensitive)
    P = sorted(set(producers) | {0} | {l for l in range(L) if sensitive[l]})
    kinds, src, last = [], [], -1
    for l in range(L):
        if l in P:
            kinds.append("DenseSelect" if sensitive[l] else producer)
            src.append(-1)
            last = l
        else:
            kinds.append("Reuse")
            src.append(last)
    for l in P:  # a sensitive producer nobody reuses needs no top-k
        if sensitive[l] and l not in src:
            kinds[l] = "Dense"
    return Policy(name, tuple(kinds), tuple(src))


def _segment_gain(M, sensitive, i, j, theta):
    """Similarity gained if producer i serves layers i+1 … j-1; None if not allowed."""
    layers = range(i + 1, j)
    if any(sensitive[m] or M[i][m] < theta for m in layers):
        return None
    return float(sum(M[i][m] for m in layers))


def _best_producer_path(M, sensitive, theta=-np.inf, count=None):
    """Producer set (sorted) from layer 0 to the end; lexicographic (fewest, max similarity).

    With `count`, exactly `count` producers, maximising similarity. Returns None if infeasible.
    State: (producers so far, last producer); O(L³) per count.
    """
    L = len(sensitive)
    counts = range(1, L + 1) if count is None else [count]
    best = None
    for c in counts:
        # f[n][i]: best similarity with n producers, the last at i; back[n][i]: previous one.
        f = np.full((c + 1, L), -np.inf)
        back = np.full((c + 1, L), -1, int)
        f[1][0] = 0.0
        for n in range(2, c + 1):
            for j in range(1, L):
                for i in range(j):
                    if f[n - 1][i] == -np.inf:
                        continue
                    g = _segment_gain(M, sensitive, i, j, theta)
                    if g is not None and f[n - 1][i] + g > f[n][j]:
                        f[n][j], back[n][j] = f[n - 1][i] + g, i
        for i in range(L):
            if f[c][i] == -np.inf:
                continue
            g = _segment_gain(M, sensitive, i, L, theta)
            if g is not None and (best is None or f[c][i] + g > best[0]):
                best = (f[c][i] + g, c, i, back)
        if best is not None:
            break
    if best is None:
        return None
    _, c, i, back = best
    path = [i]
    for n in range(c, 1, -1):
        path.append(int(back[n][path[-1]]))
    return sorted(path)


def threshold(M, sensitive, theta: float, producer="DenseSelect") -> Policy:
    """HyLRA threshold policy (always feasible: all layers producers satisfies any θ)."""
    path = _best_producer_path(M, sensitive, theta=theta)
    return from_producers(f"HyLRA θ={theta:g}", path, sensitive, producer)


def anchors(M, sensitive, K: int, producer="DenseSelect") -> Policy | None:
    """K anchors; None if K is below the number of forced producers."""
    path = _best_producer_path(M, sensitive, count=K)
    return None if path is None else from_producers(f"Anchors K={K}", path, sensitive, producer)


def jump(L: int, n: int, sensitive, producer="DenseSelect") -> Policy:
    """Jump-n baseline: producers at layers 0, n, 2n, … (plus sensitive layers)."""
    return from_producers(f"Jump-{n}", range(0, L, n), sensitive, producer)


def select_all(sensitive) -> Policy:
    """Every non-sensitive layer selects its own top-k; sensitive layers Dense."""
    kinds = tuple("Dense" if s else "Select" for s in sensitive)
    return Policy("Select-all", kinds, (-1,) * len(kinds))


def dense(L: int) -> Policy:
    return Policy("Dense", ("Dense",) * L, (-1,) * L)
