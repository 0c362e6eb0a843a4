#!/usr/bin/env bash
# The CUDA backend's checks on a GPU, in one go (issue 11, "How to verify on a GPU").
#
# The GPU machine has nvcc, CMake and ninja but none of the project's Debian libraries, so the
# work is split in two:
#
#   scripts/gpu_check.sh prepare [BUILD_DIR]   # here: build, then pack
#       build-gpu-bundle/bundle.tar.gz (stripped test/bench binaries, the shared libraries they
#       need, tiny checkpoints in bf16/fp8 and quantized NVFP4/MXFP4/IQ4_NL-16, and the CPU
#       path's greedy tokens; compressed to stay under the device tool's 64 MiB carry limit)
#   scripts/gpu_check.sh run                   # there: every GPU test, run --device cuda vs
#       the CPU path on every checkpoint, and the layer benchmark; log in $OUT (or .) /
#       gpu_check.log
#
# With the device tool: prepare here, then
#   run(command="scripts/gpu_check.sh run", carry=["build-gpu-bundle"], timeout_s=540)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACK="$ROOT/build-gpu-bundle/bundle.tar.gz"
BUNDLE="${TMPDIR:-/tmp}/m2fp4-gpu-bundle"  # unpacked here, on either machine
mode="${1:-}"

prepare() {
  local build="${1:-$ROOT/build-cuda}"
  set -e
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DM2FP4_WERROR=ON \
      -DM2FP4_CUDA=ON
  fi
  grep -q "M2FP4_CUDA:BOOL=ON" "$build/CMakeCache.txt" || {
    echo "gpu_check: $build is not a CUDA build (M2FP4_CUDA=OFF)" >&2
    exit 1
  }
  nice cmake --build "$build" -j2 --target test_kernels test_model m2fp4 cuda_layer_bench
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/models"
  cp "$build/tests/test_kernels" "$build/tests/test_model" "$build/m2fp4" \
    "$build/bench/cuda_layer_bench" "$BUNDLE/bin/"
  strip "$BUNDLE"/bin/*
  # Shared libraries except the C library family and the driver (those come from the machine).
  for bin in "$BUNDLE"/bin/*; do
    ldd "$bin" | awk '/=> \//{print $3}'
  done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libcuda.so*) ;;
      *) cp -L "$lib" "$BUNDLE/lib/" ;;
    esac
  done
  # Checkpoints: tiny bf16 / fp8, and the 4-bit recipes (NVFP4 both layouts, MXFP4, IQ4_NL-16).
  local m="$BUNDLE/models" exe="$build/m2fp4"
  "$exe" make-tiny --out "$m/bf16" --dtype bf16 --seed 3 > /dev/null
  "$exe" make-tiny --out "$m/fp8" --dtype fp8 --seed 4 > /dev/null
  "$exe" quantize --model "$m/bf16" --out "$m/nvfp4" --recipe nvfp4 > /dev/null 2>&1
  "$exe" quantize --model "$m/bf16" --out "$m/nvfp4-modelopt" --recipe nvfp4 \
    --format modelopt > /dev/null 2>&1
  "$exe" quantize --model "$m/bf16" --out "$m/mxfp4" --recipe mxfp4 > /dev/null 2>&1
  "$exe" quantize --model "$m/bf16" --out "$m/mxfp4-16" --recipe mxfp4-16 > /dev/null 2>&1
  # The CPU path's greedy tokens, recorded here (the GPU machine reruns them too).
  for dir in "$m"/*/; do
    "$exe" run --model "$dir" --tokens 5,77,300,12,480,9,41,256 --max-tokens 24 --ignore-eos \
      2> /dev/null > "$dir/cpu_greedy.txt"
  done
  rm -rf "$ROOT/build-gpu-bundle"
  mkdir -p "$ROOT/build-gpu-bundle"
  tar -C "$BUNDLE" -czf "$PACK" bin lib models
  ls -la "$PACK"
  echo "gpu_check: bundle ready; carry build-gpu-bundle and run: scripts/gpu_check.sh run"
}

run_checks() {
  local out="${OUT:-.}" status=0
  local log="$out/gpu_check.log"
  [ -f "$PACK" ] || {
    echo "gpu_check: $PACK missing: run 'scripts/gpu_check.sh prepare' first" >&2
    exit 1
  }
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE" && tar -C "$BUNDLE" -xzf "$PACK" || exit 1
  export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local bin="$BUNDLE/bin"
  {
    echo "== device"
    nvidia-smi -L || true
    # A GPU test that skips here means the device was not usable (driver too old for the CUDA 13
    # runtime, no device visible): that is a failure of the check, not a pass.
    echo "== kernel tests"
    "$bin/test_kernels" --gtest_filter='*Cuda*' > "$out/test_kernels.txt" 2>&1 || status=1
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]" "$out/test_kernels.txt"
    echo "== model tests (tiny presets, and the listed checkpoints)"
    local models
    models="$(ls -d "$BUNDLE"/models/*/ | tr '\n' ':')"
    M2FP4_CUDA_MODELS="$models" "$bin/test_model" --gtest_filter='*Cuda*' \
      > "$out/test_model.txt" 2>&1 || status=1
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]" "$out/test_model.txt"
    # On a GPU only the no-device test may skip.
    if grep -h "^\[  SKIPPED \] [A-Za-z]" "$out/test_kernels.txt" "$out/test_model.txt" |
      grep -v "CudaModelNoDevice" | grep -q .; then
      echo "GPU tests were skipped (see $out/test_*.txt): no usable CUDA device"
      status=1
    fi
    grep -h -A3 "^\[  FAILED  \] [A-Za-z]" "$out/test_kernels.txt" "$out/test_model.txt" | head -40
    echo "== m2fp4 run --device cuda vs the CPU path (greedy tokens)"
    for dir in "$BUNDLE"/models/*/; do
      local name cpu gpu
      name="$(basename "$dir")"
      cpu="$("$bin/m2fp4" run --model "$dir" --tokens 5,77,300,12,480,9,41,256 --max-tokens 24 \
        --ignore-eos 2> /dev/null)"
      gpu="$("$bin/m2fp4" run --model "$dir" --tokens 5,77,300,12,480,9,41,256 --max-tokens 24 \
        --ignore-eos --device cuda 2> "$out/run_$name.err")"
      if [ -n "$gpu" ] && [ "$gpu" = "$cpu" ] && [ "$cpu" = "$(cat "$dir/cpu_greedy.txt")" ]; then
        echo "ok   $name: $gpu"
      else
        echo "FAIL $name: cpu [$cpu] recorded [$(cat "$dir/cpu_greedy.txt")] gpu [$gpu]"
        cat "$out/run_$name.err"
        status=1
      fi
    done
    echo "== layer benchmark (full width: hidden 3072, 256 experts of 1536, top-8, 48/8 heads)"
    "$bin/cuda_layer_bench" --expert-format nvfp4 --attn-format fp8 || status=1
    for f in mxfp4 iq4nl16 fp8; do
      "$bin/cuda_layer_bench" --expert-format "$f" --attn-format fp8 --layers 3 --reps 30 ||
        status=1
    done
    "$bin/cuda_layer_bench" --expert-format nvfp4 --attn-format fp8 --kv fp8 --layers 3 \
      --reps 30 || status=1
    echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
  } 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

case "$mode" in
  prepare) prepare "${2:-}" ;;
  run) run_checks ;;
  *)
    echo "usage: scripts/gpu_check.sh prepare [BUILD_DIR] | run" >&2
    exit 2
    ;;
esac
