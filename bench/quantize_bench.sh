#!/usr/bin/env bash
# Quantize throughput (GB of source tensors per second) and peak RSS of `m2fp4 quantize` on the
# bench preset (make-tiny --preset bench: hidden 1024, 8 layers, 64 experts, ~1.8 GB BF16).
#
#   bench/quantize_bench.sh [M2FP4_EXE] [WORK_DIR] [RECIPES...]
#
# Defaults: build/m2fp4, a temporary folder, the round-to-nearest recipes (nvfp4,
# nvfp4-experts-fp8kv, mxfp4); add mxfp4-16 to time the IQ4_NL scale search too. Environment:
# THREADS (default: all cores), CALIB_SAMPLES (16), MAX_SEQ (256), DTYPE (bf16 | fp8),
# LM_HEAD (keep | fp8 | ...: quantize --lm-head).
# Prints one line per recipe: seconds, GB/s overall and for quantize+write, peak RSS (the
# process's own getrusage and /usr/bin/time's maxrss when available), then the run's phases
# (setup, calibration, quantize, write seconds).
set -euo pipefail

exe=${1:-build/m2fp4}
work=${2:-$(mktemp -d)}
shift $(( $# > 2 ? 2 : $# ))
recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then recipes=(nvfp4 nvfp4-experts-fp8kv mxfp4); fi
threads=${THREADS:-0}
samples=${CALIB_SAMPLES:-16}
max_seq=${MAX_SEQ:-256}
dtype=${DTYPE:-bf16}
lm_head=${LM_HEAD:-keep}
lm_head_args=()  # only when asked, so that builds without --lm-head still run
if [ -n "${LM_HEAD:-}" ]; then lm_head_args=(--lm-head "$LM_HEAD"); fi

src="$work/bench-$dtype"
if [ ! -f "$src/config.json" ]; then
  "$exe" make-tiny --out "$src" --preset bench --seed 1 --dtype "$dtype" > /dev/null
fi
echo "source: $src ($(du -shL "$src" | cut -f1)), threads=${threads}, calib ${samples}x${max_seq}," \
  "lm_head ${lm_head}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-22s %-19s %8s %10s %12s %12s\n" recipe layout seconds "GB/s" "GB/s(q+w)" "peak RSS"
for recipe in "${recipes[@]}"; do
  out="$work/out-$recipe"
  rm -rf "$out"
  report=$(mktemp)
  timer=()
  if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f "%M" -o "$report.rss"); fi
  "${timer[@]}" "$exe" quantize --model "$src" --out "$out" --recipe "$recipe" --quiet \
      --threads "$threads" --calib-samples "$samples" --max-seq "$max_seq" \
      "${lm_head_args[@]}" > "$report"
  layout=$(sed -n 's/^recipe *[^ ]* (\(.*\) layout)$/\1/p' "$report")
  secs=$(sed -n 's/^time *\([0-9.]*\) s .*/\1/p' "$report")
  gbs=$(sed -n 's/.*: \([0-9.]*\) GB\/s of source tensors overall.*/\1/p' "$report")
  gbs_qw=$(sed -n 's/.*, \([0-9.]*\) GB\/s quantize+write.*/\1/p' "$report")
  rss=$(sed -n 's/^memory *peak RSS \([0-9.]* [MG]B\).*/\1/p' "$report")
  printf "%-22s %-19s %8s %10s %12s %12s\n" "$recipe" "$layout" "$secs" "$gbs" "$gbs_qw" "$rss"
  if [ -f "$report.rss" ]; then echo "    (/usr/bin/time maxrss: $(cat "$report.rss") KB)"; fi
  phases=$(sed -n 's/^phases *//p' "$report")  # builds before the phases line print none
  if [ -n "$phases" ]; then echo "    phases: $phases"; fi
  cpu=$(sed -n 's/^cpu *//p' "$report")  # process CPU seconds: what a shared host's clock hides
  if [ -n "$cpu" ]; then echo "    cpu: $cpu"; fi
  rm -f "$report" "$report.rss"
  rm -rf "$out"
done
