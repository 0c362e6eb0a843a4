#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/ and runs each for SECONDS,
# printing executions and coverage per target. Opt-in, not part of CI.
#   scripts/fuzz.sh SECONDS [target...]     targets: safetensors config tokenizer_json tokenize
#                                                    template output_parser (default: all)
# Environment: FUZZ_JOBS (targets run at once, default 1), FUZZ_BUILD_DIR (default build-fuzz),
# FUZZ_WORK_DIR (working corpora and crash files, default build-fuzz/runs), FUZZ_ARGS (extra
# libFuzzer flags), FUZZ_SKIP_BUILD=1 (run the binaries already built). Each target starts
# from fuzz/corpus/<target>/ (never written to) plus its working corpus; a crash, leak, timeout
# or out-of-memory input is saved in the work directory as crash-*/leak-*/timeout-*/oom-* and
# the script exits non-zero. A target that does not build is reported; the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh  # clang and its libFuzzer/sanitizer runtimes
repo=$PWD

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
seconds=$1
shift
all_targets=(safetensors config tokenizer_json tokenize template output_parser)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "unknown fuzz target '$t' (have: ${all_targets[*]})" >&2; exit 2; }
done

build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
work_dir=$(realpath -m "${FUZZ_WORK_DIR:-$build_dir/runs}")
jobs=${FUZZ_JOBS:-1}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DM2FP4_FUZZ=ON \
  -DM2FP4_TESTS=OFF -DM2FP4_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  "${launcher[@]}" >/dev/null
# Each target is built on its own: one that does not compile is reported and the others still run.
# FUZZ_SKIP_BUILD=1 runs the binaries already in the build folder.
declare -A build_failed=()
for t in "${targets[@]}"; do
  [[ ${FUZZ_SKIP_BUILD:-0} == 1 && -x $build_dir/fuzz/fuzz_$t ]] && continue
  if ! cmake --build "$build_dir" -j "${FUZZ_BUILD_JOBS:-2}" --target "fuzz_$t" >"$build_dir/fuzz_$t.build.log" 2>&1; then
    echo "fuzz_$t does not build (see $build_dir/fuzz_$t.build.log)" >&2
    build_failed[$t]=1
  fi
done

run_one() {
  local t=$1
  local dir="$work_dir/$t"
  mkdir -p "$dir/corpus"
  local dict=()
  [[ -f fuzz/$t.dict ]] && dict=(-dict="$PWD/fuzz/$t.dict")
  # -timeout: one input may take at most 10 s; -rss_limit_mb: 2 GB per process.
  # shellcheck disable=SC2086
  (cd "$dir" && nice "$repo/$build_dir/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "${dict[@]}" ${FUZZ_ARGS:-} \
    corpus "$repo/fuzz/corpus/$t" >log.txt 2>&1)
}

summary() {
  local t=$1 log="$work_dir/$1/log.txt" rc=$2
  local last runs time cov ft
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  time=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | tr -dc '0-9' || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | tr -dc '0-9' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | tr -dc '0-9' || true)
  local status=ok
  [[ $rc -ne 0 ]] && status="FAILED (rc $rc; see $log)"
  printf '%-15s executions %-10s seconds %-6s cov %-6s ft %-7s corpus %-6s %s\n' "$t" \
    "${runs:-?}" "${time:-$seconds}" "${cov:-?}" "${ft:-?}" \
    "$(find "$work_dir/$t/corpus" -type f | wc -l)" "$status"
}

declare -A pids=()
failed=0
results=()
for t in "${targets[@]}"; do
  [[ -n ${build_failed[$t]:-} ]] && continue
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do sleep 1; done
  run_one "$t" & pids[$t]=$!
done
for t in "${targets[@]}"; do
  if [[ -n ${build_failed[$t]:-} ]]; then
    results+=("$(printf '%-15s BUILD FAILED (see %s)' "$t" "$build_dir/fuzz_$t.build.log")")
    failed=1
    continue
  fi
  rc=0
  wait "${pids[$t]}" || rc=$?
  [[ $rc -ne 0 ]] && failed=1
  results+=("$(summary "$t" "$rc")")
done
printf '%s\n' "${results[@]}"
exit $failed
