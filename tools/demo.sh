#!/usr/bin/env bash
# The demo command: set up, build the examples, run the demo.
#   tools/demo.sh [k] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-deps.sh
export PATH="$PATH:/usr/local/cuda/bin"
build=${BUILD_DIR:-build-demo}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYLRA_BUILD_TESTS=OFF \
  -DHYLRA_BUILD_BENCHMARKS=OFF -DHYLRA_BUILD_TOOLS=OFF >/dev/null
cmake --build "$build" --target 01_synthetic_profile >/dev/null
"$build/examples/01_synthetic_profile" "$@"
