#!/usr/bin/env bash
# The issue-5 table on the bench preset: for each recipe, checkpoint size, PPL / KLD / top-1 of the
# quantized model against its BF16 source (m2fp4 eval), quantize GB/s and peak RSS (m2fp4 quantize
# report), then decode and prefill tok/s of every format and BF16 measured interleaved in one run
# (bench/model_bench), each next to the bandwidth measured with it.
#
#   bench/quant_table.sh [BUILD_DIR] [WORK_DIR] [EVAL_TEXT]
set -euo pipefail
build=${1:-build}
work=${2:-/tmp/m2fp4-quant-table}
text=${3:-$(dirname "$0")/../../shared/specs/minimax-m2-architecture.md}
exe="$build/m2fp4"
mkdir -p "$work"
src="$work/bf16"
[ -f "$src/config.json" ] || "$exe" make-tiny --out "$src" --preset bench --seed 1 >/dev/null

recipes=("nvfp4:compressed-tensors" "nvfp4:modelopt"
         "nvfp4-experts-fp8kv:modelopt" "nvfp4-experts-fp8kv:compressed-tensors"
         "mxfp4:compressed-tensors" "mxfp4:modelopt"
         "mxfp4-16:compressed-tensors" "mxfp4-16:modelopt")
models=("$src")
printf "%-34s %9s %10s %10s %10s %8s %9s %9s\n" recipe:layout "size MB" "PPL" "KLD mean" "KLD max" \
  "top-1" "quant GB/s" "peak RSS"
printf "%-34s %9s %10s\n" "bf16 (source)" "$(du -sm "$src" | cut -f1)" \
  "$("$exe" eval --model "$src" --reference "$src" --text "$text" --ctx 256 --chunks 4 --json |
     python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["ppl_reference"])')"
for rf in "${recipes[@]}"; do
  recipe=${rf%%:*}
  layout=${rf##*:}
  out="$work/$recipe-$layout"
  if [ ! -f "$out/config.json" ]; then
    "$exe" quantize --model "$src" --out "$out" --recipe "$recipe" --format "$layout" --quiet \
      --calib-samples 16 --max-seq 256 >"$work/$recipe-$layout.report"
  fi
  gbs=$(sed -n 's/.*: \([0-9.]*\) GB\/s of source tensors overall.*/\1/p' "$work/$recipe-$layout.report")
  rss=$(sed -n 's/^memory *peak RSS \([0-9.]* [MG]B\).*/\1/p' "$work/$recipe-$layout.report")
  "$exe" eval --model "$out" --reference "$src" --text "$text" --ctx 256 --chunks 4 --json |
    python3 -c '
import json, sys
e = json.load(sys.stdin)
print("%-34s %9s %10.2f %10.5f %10.5f %7.1f%% %9s %9s" % (sys.argv[1], sys.argv[2], e["ppl_model"],
      e["kld_mean"], e["kld_max"], 100 * e["top1_agreement"], sys.argv[3], sys.argv[4]))' \
    "$recipe:$layout" "$(du -sm "$out" | cut -f1)" "$gbs" "$rss"
  models+=("$out")
done
echo
"$build/bench/model_bench" --model "$(IFS=,; echo "${models[*]}")" --decode-tokens 32 \
  --prefill-tokens 256 --rounds 1 --threads 2
