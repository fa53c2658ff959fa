#!/usr/bin/env bash
# The test command: set up, build every test, example, benchmark and tool, run the tests.
# GPU tests run where a GPU is present and report "skipped" elsewhere.
#   tools/test.sh [extra ctest arguments, e.g. -L cpu]
# Environment: BUILD_DIR (default build), CUDAARCHS (default 90; 90a on an H100/H200 for the
# Hopper-only paths), HYLRA_CMAKE_ARGS (extra configure arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-deps.sh --with-tests
export PATH="$PATH:/usr/local/cuda/bin"
build=${BUILD_DIR:-build}
prefix=()
[ -d .deps ] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.deps")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" ${HYLRA_CMAKE_ARGS:-}
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure "$@"
