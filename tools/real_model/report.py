"""Markdown table, headline and plot of the policy comparison (from pipeline.py's results)."""
from __future__ import annotations

import os
from collections import defaultdict

TARGET = 0.99


def family(name: str) -> str:
    """Policy family of a (possibly merged "A = B") policy name, for the plot legend."""
    first = name.split(" = ")[0]
    return first.split(" ")[0].split("-")[0] if not first.startswith("Select") else "Select-all"


def _pooled(rows: list[dict]) -> dict:
    """Per (k, block, policy): metrics of each text and top-1 pooled over the texts."""
    by = defaultdict(dict)
    for r in rows:
        by[(r["k"], r["block"], r["policy"])][r["text"]] = r
    out = {}
    for key, per_text in by.items():
        any_r = next(iter(per_text.values()))
        out[key] = {"per_text": per_text, "pattern": any_r["pattern"],
                    "producers": any_r["producers"], "layers": any_r["layers"],
                    "top1": sum(r["top1"] for r in per_text.values()) / len(per_text),
                    "kl": sum(r["kl"] for r in per_text.values()) / len(per_text)}
    return out


def _jump3(pooled: dict, k: int, b: int):
    return next((v for (kk, bb, n), v in pooled.items()
                 if (kk, bb) == (k, b) and "Jump-3" in n.split(" = ")), None)


def headline(pooled: dict, target: float) -> list[str]:
    """Per config: the policy with pooled top-1 ≥ target and the most Reuse layers, vs Jump-3.

    Policies without a Reuse layer (all producers) are no candidates: they are dense or
    Select-all, whatever their θ."""
    lines = []
    for k, b in sorted({(k, b) for k, b, _ in pooled}):
        cands = [(v["layers"] - v["producers"], v["top1"], name)
                 for (kk, bb, name), v in pooled.items()
                 if (kk, bb) == (k, b) and v["producers"] < v["layers"] and v["top1"] >= target]
        j3 = _jump3(pooled, k, b)
        j3s = f"{j3['top1']:.1%}, {j3['layers'] - j3['producers']} reuse" if j3 else "n/a"
        sel = next((v for (kk, bb, n), v in pooled.items()
                    if (kk, bb) == (k, b) and "Select-all" in n.split(" = ")), None)
        sels = f"{sel['top1']:.1%}" if sel else "n/a"
        if cands:
            reuse, top1, name = max(cands, key=lambda c: (c[0], c[1]))
            lines.append(f"| {k} | {b} | {name} | {reuse} | {top1:.1%} | {j3s} | {sels} |")
        else:
            lines.append(f"| {k} | {b} | none | – | – | {j3s} | {sels} |")
    return [f"| k | B | most reuse layers with top-1 ≥ {target:.0%} | reuse layers | top-1 |"
            " Jump-3 | Select-all (no reuse) |", "|---|---|---|---|---|---|---|"] + lines


def matched_budget(pooled: dict) -> list[str]:
    """Per config: the most accurate policy with at most as many producers as Jump-3."""
    lines = []
    for k, b in sorted({(k, b) for k, b, _ in pooled}):
        j3 = _jump3(pooled, k, b)
        if j3 is None:
            continue
        cands = [(v["top1"], -v["kl"], -v["producers"], name, v)
                 for (kk, bb, name), v in pooled.items()
                 if (kk, bb) == (k, b) and v["producers"] <= j3["producers"]
                 and "Jump-3" not in name.split(" = ")]
        if not cands:
            continue
        top1, _, _, name, v = max(cands, key=lambda c: c[:3])
        lines.append(f"| {k} | {b} | {j3['producers']} | {j3['top1']:.1%} | {j3['kl']:.4f} | "
                     f"{name} | {v['producers']} | {top1:.1%} | {v['kl']:.4f} |")
    return ["| k | B | Jump-3 producers | Jump-3 top-1 | Jump-3 KL | best other policy with ≤ as"
            " many producers | producers | top-1 | KL |", "|---|---|---|---|---|---|---|---|---|"
            ] + lines


def table(pooled: dict, texts: list[str]) -> list[str]:
    """One row per (k, block, policy), sorted by config then by number of producers."""
    head = ("| k | B | policy | pattern | producers | top-1 pooled | "
            + " | ".join(f"top-1 {t} | KL {t} | ΔPPL% {t}" for t in texts) + " |")
    lines = [head, "|" + "---|" * (6 + 3 * len(texts))]
    for (k, b, name), v in sorted(pooled.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                  kv[1]["producers"], kv[0][2])):
        cells = []
        for t in texts:
            r = v["per_text"].get(t)
            cells += ([f"{r['top1']:.1%}", f"{r['kl']:.4f}", f"{r['dppl_pct']:+.2f}"]
                      if r else ["–"] * 3)
        lines.append(f"| {k} | {b} | {name} | `{v['pattern']}` | {v['producers']} | "
                     f"{v['top1']:.1%} | " + " | ".join(cells) + " |")
    return lines


def plot(pooled: dict, path: str, n_tokens: int) -> None:
    """Pooled top-1 (top row) and mean KL (bottom row) vs the fraction of producing layers,
    one column per block size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = sorted({b for _, b, _ in pooled})
    ks = sorted({k for k, _, _ in pooled})
    markers = {"HyLRA": "o", "Jump": "s", "Anchors": "^", "Select-all": "*"}
    colors = dict(zip(ks, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(2, len(blocks), figsize=(5 * len(blocks), 8), sharey="row",
                             squeeze=False)
    for col, b in enumerate(blocks):
        for (k, bb, name), v in pooled.items():
            if bb != b or v["kl"] == 0.0:  # policies numerically equal to dense
                continue
            x = v["producers"] / v["layers"]
            style = dict(color=colors[k], marker=markers.get(family(name), "x"), s=45, alpha=0.8)
            axes[0][col].scatter(x, v["top1"], **style)
            axes[1][col].scatter(x, v["kl"], **style)
        axes[0][col].axhline(TARGET, color="gray", lw=0.8, ls="--")
        axes[0][col].set_title(f"block granularity B = {b}")
        axes[1][col].set_yscale("log")
        axes[1][col].set_xlabel("fraction of producing layers (Dense / DenseSelect / Select)")
        for r in (0, 1):
            axes[r][col].grid(alpha=0.3)
    axes[0][0].set_ylabel("next-token top-1 agreement with dense")
    axes[1][0].set_ylabel("mean KL(dense ‖ hybrid) [nats]")
    handles = [plt.Line2D([], [], color=colors[k], marker="o", ls="", label=f"k = {k}") for k in ks]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="", label=f) for f, m in markers.items()]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle(f"SmolLM2-135M, N = {n_tokens}: accuracy vs producing layers (pooled over 2 texts)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict, out_dir: str) -> str:
    """Write table.md and the PNG; return the markdown (also printed by the pipeline)."""
    s = result["settings"]
    pooled = _pooled(result["rows"])
    texts = list(result["texts"])
    sens = sorted({tuple(v) for v in result["sensitive"].values()})
    md = ["# Real-model policy comparison (SmolLM2-135M-Instruct)", "",
          f"Model `{result['model']}`; texts " +
          ", ".join(f"`{t}` = {' + '.join(p)}" for t, p in result["texts"].items()) +
          f"; N = {s['tokens']}, last T = {s['eval_positions']} positions rerun with the policy;"
          f" sink {s['sink']}, recent {s['recent']}; producers `{s['producer']}`;"
          f" policies solved on `{texts[0]}` only (calibration), `{texts[1]}` is held out;"
          f" sensitive = RNMSE > {s['tau']} (sets seen: {sens}).",
          "", "Pattern letters: D Dense, F DenseSelect, S Select, R Reuse (of the most recent"
          " producer). Top-1 = next-token argmax agreement with dense; KL = mean"
          " KL(dense ‖ hybrid) in nats; ΔPPL% = perplexity change on the text's next tokens.",
          "", "Reproduce: `tools/real_model/run_all.sh` (from an empty cache).", "",
          "Cross-check of calibration-trace layers against hylra's C++ reference"
          " (`crosscheck.py`), largest relative difference: " + "; ".join(
              f"k={c['k']} B={c['block']} layer {c['layer']}: "
              + ", ".join(f"{p} {d:.1e}" for p, d in c["max_rel_diff"].items())
              for c in result.get("crosscheck", [])), "",
          "## Headline", "", "Top-1 and KL are pooled over both texts (2 × T positions)."
          " Policies without a Reuse layer are no candidates.", ""]
    md += headline(pooled, TARGET) + [""] + headline(pooled, 0.95) + [""]
    md += ["At the producer budget of Jump-3 (or below):", ""] + matched_budget(pooled)
    md += ["", "## All runs", ""] + table(pooled, texts)
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    plot(pooled, os.path.join(out_dir, "accuracy_vs_producers.png"), s["tokens"])
    return text


if __name__ == "__main__":
    import json
    import sys

    # python3 report.py [results.json]: rewrite table.md and the plot from saved results.
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                              "results", "results.json")
    with open(src) as f:
        print(write(json.load(f), os.path.dirname(os.path.abspath(src))))
