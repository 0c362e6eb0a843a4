#!/usr/bin/env bash
# Installs dependencies (Debian packages + Python test peers), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --python
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
cd ..
# Clang builds everything as well (the sanitizers and fuzzers use clang; GCC accepts code clang 14
# rejects), warnings as errors, and runs the C++ tests (the Python peers ran above on GCC's build).
if command -v clang++ >/dev/null; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  CC=clang CXX=clang++ cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DM2FP4_WERROR=ON -DM2FP4_CUDA=OFF "${launcher[@]}" >/dev/null
  cmake --build build-clang -j "$(nproc)"
  ctest --test-dir build-clang --output-on-failure -j "$(nproc)" --timeout 900 -LE python
fi
