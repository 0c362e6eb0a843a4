#!/usr/bin/env bash
# llama-benchy (PyPI 0.4.0, unmodified) against `m2fp4 serve` on the bench preset, BF16 and NVFP4,
# and - when bench/llama_cpp.sh can build llama.cpp - against llama-server on GGUFs of the same
# weights, in one run. Everything listens on 127.0.0.1; the book is a local file served on
# loopback. Tables go to OUT_DIR/*.md and are printed.
#
#   bench/serve_bench.sh [OUT_DIR]
#
# Environment (defaults): M2FP4_EXE (build/m2fp4), WORK (~/.cache/m2fp4/serve-bench), THREADS (2),
# PP (512), TG (128), DEPTH ("0 2048"), CONCURRENCY ("1 4 8"), RUNS (2), MODELS ("bf16 nvfp4"),
# LLAMA (auto | off), LLAMA_GGUF ("q4_0"), EXTRA_SERVE_FLAGS (""), PYTHON (.venv/bin/python).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/bench-serve-results}
exe=${M2FP4_EXE:-$repo/build/m2fp4}
work=${WORK:-$HOME/.cache/m2fp4/serve-bench}
threads=${THREADS:-2}
pp=${PP:-512}
tg=${TG:-128}
read -r -a depths <<<"${DEPTH:-0 2048}"
read -r -a concurrency <<<"${CONCURRENCY:-1 4 8}"
runs=${RUNS:-2}
read -r -a models <<<"${MODELS:-bf16 nvfp4}"
llama=${LLAMA:-auto}
read -r -a ggufs <<<"${LLAMA_GGUF:-q4_0}"
python=${PYTHON:-$repo/.venv/bin/python}
benchy=$(dirname "$python")/llama-benchy

die() { echo "serve_bench.sh: $*" >&2; exit 1; }
[ -x "$exe" ] || die "no m2fp4 at $exe (build it, or set M2FP4_EXE)"
[ -x "$benchy" ] || die "no llama-benchy at $benchy (scripts/install-deps.sh --python)"
mkdir -p "$out" "$work"

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_health() {  # URL PID
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || die "server exited (see its log)"
    if curl -sf "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "server at $1 never became healthy"
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The checkpoints: bench preset BF16 and its NVFP4 quantization.
bf16="$work/bench-bf16"
nvfp4="$work/bench-nvfp4"
if [ ! -f "$bf16/config.json" ]; then
  "$exe" make-tiny --out "$bf16" --preset bench --seed 1 --dtype bf16
fi
if [[ " ${models[*]} " == *" nvfp4 "* ]] && [ ! -f "$nvfp4/config.json" ]; then
  nice "$exe" quantize --model "$bf16" --out "$nvfp4" --recipe nvfp4 --calib-samples 16 \
    --max-seq 256 --threads "$threads" --quiet
fi

# The book: the repository's text files, served on loopback.
book_dir="$work/book"
mkdir -p "$book_dir"
cat "$repo"/README.md "$repo"/../shared/specs/*.md "$repo"/README.md > "$book_dir/book.txt" 2>/dev/null ||
  cat "$repo"/README.md "$repo"/README.md "$repo"/README.md > "$book_dir/book.txt"
book_port=$(free_port)
"$python" -m http.server "$book_port" --bind 127.0.0.1 --directory "$book_dir" >/dev/null 2>&1 &
pids+=($!)
book_url="http://127.0.0.1:$book_port/book.txt"

benchy_args=(--pp "$pp" --tg "$tg" --depth "${depths[@]}" --concurrency "${concurrency[@]}"
             --runs "$runs" --enable-prefix-caching --skip-coherence --book-url "$book_url"
             --tokenizer "$bf16" --format md)

run_benchy() {  # NAME BASE_URL SERVED_NAME
  echo "== $1" >&2
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$benchy" --base-url "$2/v1" --model "$3" \
    "${benchy_args[@]}" --save-result "$out/$1.md" >"$out/$1.log" 2>&1 ||
    { tail -30 "$out/$1.log" >&2; die "llama-benchy failed on $1"; }
  cat "$out/$1.md"
}

# vLLM-style command line; the KV cache holds every concurrent request at the largest depth.
max_len=$(( ${depths[-1]} + pp + tg + 64 ))
for m in "${models[@]}"; do
  dir=$bf16
  [ "$m" = nvfp4 ] && dir=$nvfp4
  port=$(free_port)
  # shellcheck disable=SC2086
  "$exe" serve "$dir" --served-model-name "m2fp4-$m" --port "$port" --threads "$threads" \
    --max-num-seqs 8 --max-num-batched-tokens 2048 --max-model-len "$max_len" \
    --kv-cache-memory 2G --enable-prefix-caching --enable-chunked-prefill \
    ${EXTRA_SERVE_FLAGS:-} >"$out/m2fp4-$m.server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_health "http://127.0.0.1:$port/health" "$pid"
  run_benchy "m2fp4-$m" "http://127.0.0.1:$port" "m2fp4-$m"
  curl -s "http://127.0.0.1:$port/metrics" >"$out/m2fp4-$m.metrics.txt" || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done

# llama-server on GGUFs of the same weights (bench/llama_cpp.sh builds llama.cpp and the GGUFs).
if [ "$llama" != off ] && [ -x "$here/llama_cpp.sh" ]; then
  bin=$("$here/llama_cpp.sh" build)
  need_gguf=0
  for g in "${ggufs[@]}"; do [ -f "$work/gguf/$g.gguf" ] || need_gguf=1; done
  if [ "$need_gguf" = 1 ]; then "$here/llama_cpp.sh" gguf "$bf16" "$work/gguf" >&2; fi
  for g in "${ggufs[@]}"; do
    port=$(free_port)
    # The same chat template as m2fp4 serves (the GGUF writer does not store one).
    "$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["chat_template"], end="")' \
      "$bf16/tokenizer_config.json" >"$work/chat_template.jinja"
    "$bin/llama-server" -m "$work/gguf/$g.gguf" --host 127.0.0.1 --port "$port" -t "$threads" \
      -np 8 -c $(( 8 * max_len )) --jinja --chat-template-file "$work/chat_template.jinja" \
      -a "llama-$g" >"$out/llama-$g.server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_health "http://127.0.0.1:$port/health" "$pid"
    run_benchy "llama-server-$g" "http://127.0.0.1:$port" "llama-$g"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
fi
echo "results in $out" >&2
