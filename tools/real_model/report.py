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
                    "top1": sum(r["top1"] for r in per_text.values()) / len(per_text)}
    return out


def headline(pooled: dict) -> list[str]:
    """Per config: the policy with pooled top-1 ≥ 99 % and the most Reuse layers, vs Jump-3."""
    lines = []
    configs = sorted({(k, b) for k, b, _ in pooled})
    for k, b in configs:
        cands = [(v["layers"] - v["producers"], v["top1"], name)
                 for (kk, bb, name), v in pooled.items()
                 if (kk, bb) == (k, b) and name != "Dense" and v["top1"] >= TARGET]
        jump3 = next((v for (kk, bb, n), v in pooled.items()
                      if (kk, bb) == (k, b) and "Jump-3" in n.split(" = ")), None)
        j3 = (f"Jump-3: {jump3['top1']:.1%} with {jump3['layers'] - jump3['producers']} reuse layers"
              if jump3 else "Jump-3: n/a")
        if cands:
            reuse, top1, name = max(cands, key=lambda c: (c[0], c[1]))
            lines.append(f"| {k} | {b} | {name} | {reuse} | {top1:.1%} | {j3} |")
        else:
            lines.append(f"| {k} | {b} | none reaches {TARGET:.0%} | – | – | {j3} |")
    return ["| k | B | best policy with top-1 ≥ 99 % | reuse layers | top-1 | vs Jump-3 |",
            "|---|---|---|---|---|---|"] + lines


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


def plot(pooled: dict, path: str) -> None:
    """Pooled top-1 agreement vs fraction of producing layers, one panel per block size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = sorted({b for _, b, _ in pooled})
    ks = sorted({k for k, _, _ in pooled})
    markers = {"HyLRA": "o", "Jump": "s", "Anchors": "^", "Select-all": "*", "Dense": "D"}
    colors = dict(zip(ks, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(blocks), figsize=(5 * len(blocks), 4.2), sharey=True,
                             squeeze=False)
    for ax, b in zip(axes[0], blocks):
        for (k, bb, name), v in pooled.items():
            if bb != b:
                continue
            ax.scatter(v["producers"] / v["layers"], v["top1"], c=colors[k],
                       marker=markers.get(family(name), "x"), s=45, alpha=0.8)
        ax.axhline(TARGET, color="gray", lw=0.8, ls="--")
        ax.set_title(f"block granularity B = {b}")
        ax.set_xlabel("fraction of producing layers (Dense / DenseSelect / Select)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("next-token top-1 agreement with dense")
    handles = [plt.Line2D([], [], color=colors[k], marker="o", ls="", label=f"k = {k}") for k in ks]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="", label=f) for f, m in markers.items()]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle("SmolLM2-135M, N = 7168: accuracy vs producing layers (top-1 pooled over 2 texts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
          "## Headline", ""] + headline(pooled) + ["", "## All runs", ""] + table(pooled, texts)
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    plot(pooled, os.path.join(out_dir, "accuracy_vs_producers.png"))
    return text
