#!/usr/bin/env bash
# Configures and builds m2fp4 into build/ (Release, warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DM2FP4_WERROR=ON "$@" >/dev/null
cmake --build build -j "$(nproc)"
