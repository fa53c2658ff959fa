#!/usr/bin/env bash
# Installs what building hylra needs on a fresh Debian machine that has the CUDA toolkit:
# cmake, ninja and (for the tests) doctest. Does nothing for what is already there. Where doctest
# was staged into .deps/ (GPU machines without a package registry), that copy is used instead.
#   tools/setup-deps.sh [--with-tests]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
if [ "${1:-}" = "--with-tests" ] && [ ! -f /usr/include/doctest/doctest.h ] && [ ! -f .deps/include/doctest/doctest.h ]; then
  need+=(doctest-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "the CUDA toolkit (nvcc) is required: https://developer.nvidia.com/cuda-downloads" >&2
  exit 1
fi
