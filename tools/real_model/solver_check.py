"""Check the Python policy solvers against hylra's C++ solvers (tools/hylra-policy) on the profile.

    python3 tools/real_model/solver_check.py [--profile traces/real_model/profile_gpl3.json]

Builds tools/hylra-policy/main.cpp with g++ (host-only code) unless --cli names a binary, then for
every profiled config solves HyLRA θ and K anchors both ways and compares which layers reuse
which source. The C++ CLI runs with `--sensitive-kind dense-select`: sensitive layers are
producers, which is the Python convention; producer kinds differ by name only (the CLI's tolerant
producers are Select, ours DenseSelect), so the comparison is on the Reuse sources.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np

import policies
from crosscheck import REPO


def cpp_sources(cli, M, sensitive, k, block, args) -> list[int] | None:
    """Per layer the Reuse source (-1 if not Reuse) of the C++ solver, or None if infeasible."""
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "M.npy"), np.asarray(M, np.float64))
        out = os.path.join(d, "policy.json")
        sens = ",".join(str(i) for i, s in enumerate(sensitive) if s)
        cmd = [cli, "--input", os.path.join(d, "M.npy"), "--sensitive-kind", "dense-select",
               "--k", str(k), "--block-size", str(block), "--quiet", "--output", out] + args
        if sens:
            cmd += ["--sensitive-layers", sens]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return None
        with open(out) as f:
            layers = json.load(f)["layers"]
    return [l.get("source", -1) if l["kind"] == "Reuse" else -1 for l in layers]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="traces/real_model/profile_gpl3.json")
    ap.add_argument("--cli", help="hylra-policy binary (default: build it with g++)")
    ap.add_argument("--tau", type=float, default=0.05)
    a = ap.parse_args()
    cli = a.cli
    if cli is None:
        cli = os.path.join(tempfile.gettempdir(), "hylra-policy-g++")
        subprocess.run(["g++", "-std=c++17", "-O1", "-I", os.path.join(REPO, "include"), "-I",
                        "/usr/local/cuda/include", os.path.join(REPO, "tools/hylra-policy/main.cpp"),
                        "-o", cli], check=True)
    with open(a.profile) as f:
        prof = json.load(f)
    same = differ = 0
    for tag, p in sorted(prof.items()):
        k, block = (int(x[1:]) for x in tag.split("_"))
        M = np.array(p["M"])
        sensitive = [r > a.tau for r in p["rnmse"]]
        cases = [(f"theta {t}", policies.threshold(M, sensitive, t), ["--solver", "threshold",
                  "--theta", str(t)]) for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
        cases += [(f"anchors {K}", policies.anchors(M, sensitive, K), ["--solver", "anchors",
                   "--anchors", str(K)]) for K in (6, 10)]
        for name, pol, args in cases:
            ours = None if pol is None else [s if kd == "Reuse" else -1
                                              for kd, s in zip(pol.kinds, pol.src)]
            theirs = cpp_sources(cli, M, sensitive, k, block, args)
            if ours == theirs:
                same += 1
            else:
                differ += 1
                print(f"{tag} {name}: python {ours}\n{' ' * len(tag)} {' ' * len(name)}  c++    {theirs}")
    print(f"solver check: {same} identical, {differ} different")


if __name__ == "__main__":
    main()
