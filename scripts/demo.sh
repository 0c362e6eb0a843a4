#!/usr/bin/env bash
# The main job on the built-in tiny model: make a tiny MiniMax-M2 checkpoint and generate from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=tiny-model
build/m2fp4 make-tiny --out "$out" --preset tiny --seed 1
build/m2fp4 inspect --model "$out"
build/m2fp4 run --model "$out" --tokens 1,2,3,4,5 --max-tokens 16
