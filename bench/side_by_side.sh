#!/usr/bin/env bash
# m2fp4 against llama.cpp on the same weights, interleaved round by round (issue 10): decode
# tg128 and prefill pp512 for each pair of formats, 2 threads, weights in ordinary memory on both
# sides (m2fp4 bench reads them like `run`; llama-bench -lm none = no mmap), the bandwidth probe
# beside every row, per-round figures and median ratios. Judge by the ratio: both programs see
# the same host in the same minute.
#
#   bench/side_by_side.sh [options]
#     --build DIR        m2fp4 build folder (build): DIR/m2fp4 and DIR/bench/bandwidth_bench
#     --preset NAME      make-tiny preset of the source weights (bench | wide | tiny)
#     --work DIR         checkpoints and GGUFs, reused between runs (/tmp/m2fp4-side-by-side)
#     --rounds N         rounds (5)
#     --threads N        threads on both sides (2)
#     --pairs LIST       comma list of bf16, mxfp4, nvfp4, iq4nl (all four)
#     --tests LIST       comma list of tg, pp (both)
#     -p N / -n N        prompt tokens of pp, generated tokens of tg (512 / 128)
#     --markdown FILE    also write the medians table as markdown
#     --llama-args ARGS  extra llama-bench arguments (e.g. "--poll 0"), recorded in the table
#     --lm-head fp8|keep lm_head of the m2fp4 4-bit checkpoints (fp8): fp8 = `quantize --lm-head
#                        fp8` (E4M3 + a scale per 128x128, 8.25 bits), like for like with
#                        llama-quantize's Q6_K (6.56 bits, Q4_0) / Q8_0 (8.5 bits, MXFP4_MOE)
#                        output.weight; keep = the model dtype (BF16), the published checkpoints'
#                        choice and this script's pairing before. Each side's MB read per decode
#                        token (and its lm_head type) is printed with the table.
#
# The pairs: m2fp4 BF16 vs GGUF BF16; m2fp4 mxfp4 vs MXFP4_MOE; m2fp4 nvfp4 vs Q4_0; m2fp4
# mxfp4-16 (IQ4_NL x16 blocks) vs IQ4_NL. The m2fp4 checkpoints come from `m2fp4 quantize`, the
# GGUFs from bench/llama_cpp.sh (hf_to_gguf.py + llama-quantize with its default per-tensor
# choices: the sizes printed show what each side reads).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=build
preset=bench
work=/tmp/m2fp4-side-by-side
rounds=5
threads=2
pairs=bf16,mxfp4,nvfp4,iq4nl
tests=tg,pp
n_prompt=512
n_gen=128
markdown=
llama_args=
lm_head=fp8
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    --markdown) markdown=$2; shift 2 ;;
    --llama-args) llama_args=$2; shift 2 ;;
    --lm-head) lm_head=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "side_by_side.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$lm_head" in fp8|keep) ;; *) echo "side_by_side.sh: --lm-head fp8 or keep" >&2; exit 2 ;; esac
exe="$build/m2fp4"
probe="$build/bench/bandwidth_bench"
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$exe" ] || { echo "side_by_side.sh: no $exe (build it first)" >&2; exit 2; }
[ -x "$probe" ] || { echo "side_by_side.sh: no $probe (cmake --build $build --target bandwidth_bench)" >&2; exit 2; }

dir="$work/$preset"
mkdir -p "$dir"
src="$dir/bf16"
if [ ! -f "$src/config.json" ]; then
  echo "making the $preset preset in $src" >&2
  nice "$exe" make-tiny --out "$src" --preset "$preset" --seed 1 >&2
fi
declare -A recipe_of=([mxfp4]=mxfp4 [nvfp4]=nvfp4 [iq4nl]=mxfp4-16)
declare -A gguf_type_of=([mxfp4]=MXFP4_MOE [nvfp4]=Q4_0 [iq4nl]=IQ4_NL)
gguf_types=(BF16)
IFS=, read -r -a pair_list <<<"$pairs"
for pair in "${pair_list[@]}"; do
  [ "$pair" = bf16 ] || gguf_types+=("${gguf_type_of[$pair]:-}")
  case "$pair" in
    bf16) ;;
    mxfp4|nvfp4|iq4nl)
      recipe=${recipe_of[$pair]}
      folder=$recipe
      [ "$lm_head" = fp8 ] && folder=$recipe-lmfp8
      if [ ! -f "$dir/$folder/config.json" ]; then
        echo "m2fp4 quantize --recipe $recipe --lm-head $lm_head" >&2
        nice "$exe" quantize --model "$src" --out "$dir/$folder" --recipe "$recipe" --quiet \
          --lm-head "$lm_head" --calib-samples 16 --max-seq 256 >"$dir/$folder.report"
      fi ;;
    *) echo "side_by_side.sh: unknown pair $pair (bf16, mxfp4, nvfp4, iq4nl)" >&2; exit 2 ;;
  esac
done
"$here/llama_cpp.sh" gguf "$src" "$dir/gguf" "${gguf_types[@]}" >&2
bin=$("$here/llama_cpp.sh" build)

exec "$python" "$here/side_by_side.py" --exe "$exe" --probe "$probe" --llama-bench "$bin/llama-bench" \
  --dir "$dir" --rounds "$rounds" --threads "$threads" --pairs "$pairs" --tests "$tests" \
  -p "$n_prompt" -n "$n_gen" ${markdown:+--markdown "$markdown"} --llama-args "$llama_args" \
  --lm-head "$lm_head"
