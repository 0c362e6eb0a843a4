#!/usr/bin/env bash
# llama.cpp as the yardstick (issue 10): build it once from the llama-cpp-python sdist on PyPI (its
# vendor/llama.cpp), write GGUFs of the same weights as an m2fp4 checkpoint, and check that
# llama.cpp computes the same model as m2fp4 before any speed ratio is trusted.
#
#   bench/llama_cpp.sh build                       build llama.cpp (once; prints the bin folder)
#   bench/llama_cpp.sh gguf CHECKPOINT OUT_DIR [TYPE...]
#                                                  OUT_DIR/bf16.gguf and one llama-quantize output
#                                                  per type (Q4_0 MXFP4_MOE IQ4_NL), e.g. q4_0.gguf
#   bench/llama_cpp.sh verify CHECKPOINT OUT_DIR [M2FP4_EXE]
#                                                  greedy tokens and perplexity, llama.cpp vs m2fp4
#
# Environment: LLAMA_CPP_PYTHON_VERSION (0.3.36), M2FP4_CACHE (~/.cache/m2fp4), PYTHON (the
# repo's .venv python; needs numpy and gguf from tests/requirements.txt), JOBS (2).
# The build is CPU only, -DGGML_NATIVE=ON, and only the tools used here, under nice.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
cache=${M2FP4_CACHE:-$HOME/.cache/m2fp4}
prefix="$cache/llama.cpp-$version"
bin="$prefix/build/bin"
python=${PYTHON:-$repo/.venv/bin/python}
jobs=${JOBS:-2}
targets=(llama-bench llama-quantize llama-server llama-perplexity llama-simple llama-tokenize)

die() { echo "llama_cpp.sh: $*" >&2; exit 1; }

build() {
  local have_all=1 t
  for t in "${targets[@]}"; do [ -x "$bin/$t" ] || have_all=0; done
  if [ "$have_all" = 1 ]; then echo "$bin"; return; fi
  mkdir -p "$prefix"
  local src="$prefix/src"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    local dl="$prefix/download"
    mkdir -p "$dl"
    local sdist="$dl/llama_cpp_python-$version.tar.gz"
    if [ ! -f "$sdist" ]; then
      "$python" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$version" -d "$dl" >&2
    fi
    [ -f "$sdist" ] || die "no sdist at $sdist"
    tar -xzf "$sdist" -C "$dl"
    rm -rf "$src"
    mv "$dl/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$dl/llama_cpp_python-$version"
  fi
  local launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache
                                                  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  cmake -S "$src" -B "$prefix/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >&2
  nice cmake --build "$prefix/build" -j "$jobs" --target "${targets[@]}" >&2
  echo "$bin"
}

gguf() {
  local ckpt=${1:?checkpoint folder} out=${2:?output folder}
  shift 2
  local types=("$@")
  if [ ${#types[@]} -eq 0 ]; then types=(Q4_0 MXFP4_MOE IQ4_NL); fi
  [ -f "$ckpt/config.json" ] || die "$ckpt has no config.json"
  build >/dev/null
  mkdir -p "$out"
  if [ ! -f "$out/bf16.gguf" ]; then
    "$python" "$here/hf_to_gguf.py" "$ckpt" "$out/bf16.gguf.part"
    mv "$out/bf16.gguf.part" "$out/bf16.gguf"
  fi
  local type
  for type in "${types[@]}"; do
    [ "$type" = BF16 ] && continue  # bf16.gguf itself
    local name
    name=$(echo "$type" | tr 'A-Z' 'a-z')
    if [ ! -f "$out/$name.gguf" ]; then
      nice "$bin/llama-quantize" "$out/bf16.gguf" "$out/$name.gguf.part" "$type" 2 >"$out/$name.log" 2>&1 ||
        { tail -20 "$out/$name.log" >&2; die "llama-quantize $type failed"; }
      mv "$out/$name.gguf.part" "$out/$name.gguf"
    fi
  done
  ls -l "$out"/*.gguf
}

verify() {
  local ckpt=${1:?checkpoint folder} out=${2:?gguf folder} exe=${3:-$repo/build/m2fp4}
  build >/dev/null
  "$python" "$here/verify_gguf.py" --m2fp4 "$exe" --llama-bin "$bin" --checkpoint "$ckpt" \
    --gguf "$out/bf16.gguf"
}

case "${1:-}" in
  build) build ;;
  gguf) shift; gguf "$@" ;;
  verify) shift; verify "$@" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
