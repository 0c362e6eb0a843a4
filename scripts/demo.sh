#!/usr/bin/env bash
# The main job on the built-in tiny model: make a tiny random MiniMax-M2 checkpoint (real
# architecture, tokenizer and chat template), generate from it, quantize it to NVFP4 with
# calibration, compare the quantized model with its source, and generate from the quantized one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=tiny-model
rm -rf "$out" "$out-nvfp4"
build/m2fp4 make-tiny --out "$out" --preset tiny --seed 1
build/m2fp4 inspect --model "$out"
build/m2fp4 run --model "$out" --tokens 1,2,3,4,5 --max-tokens 16
build/m2fp4 run --model "$out" --prompt "Hello! What can you do?" --max-tokens 24
build/m2fp4 quantize --model "$out" --out "$out-nvfp4" --recipe nvfp4-experts-fp8kv \
  --calib-samples 8 --max-seq 128
build/m2fp4 inspect --model "$out-nvfp4"
build/m2fp4 eval --model "$out-nvfp4" --reference "$out" --text README.md --ctx 128 --chunks 4
build/m2fp4 run --model "$out-nvfp4" --prompt "Hello! What can you do?" --max-tokens 24 \
  --kv-cache-dtype fp8
