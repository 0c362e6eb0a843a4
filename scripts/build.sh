#!/usr/bin/env bash
# Configures and builds m2fp4 into build/ (Release, warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DM2FP4_WERROR=ON "${launcher[@]}" "$@" >/dev/null
cmake --build build -j "$(nproc)"
