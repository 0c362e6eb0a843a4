// m2fp4 quantize: a MiniMax-M2 checkpoint to NVFP4 / MXFP4 / IQ4_NL x16, one layer at a time.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "engine/quantize_model.h"

namespace m2fp4::cli {

int cmd_quantize(int argc, char** argv) {
  CLI::App app(
      "Quantize a MiniMax-M2 checkpoint (BF16/F32 or the official FP8 release), streaming one "
      "decoder layer at a time, with calibration of input, expert and KV-cache scales.",
      "m2fp4 quantize");
  QuantizeOptions o;
  std::string recipe, format;
  double max_shard_mb = 5000.0;
  double starved_abort = -1.0;
  app.add_option("--model", o.model_dir, "source checkpoint folder")->required();
  app.add_option("--out", o.out_dir,
                 "output folder (new or empty; or the unfinished run to "
                 "--resume)")
      ->required();
  app.add_option("--recipe", recipe, "nvfp4 | nvfp4-experts-fp8kv | mxfp4 | mxfp4-16")->required();
  app.add_option("--format", format,
                 "compressed-tensors | modelopt (default: modelopt for nvfp4-experts-fp8kv, "
                 "compressed-tensors otherwise)");
  app.add_option("--calib", o.calibration.calib_file,
                 "JSONL calibration data: {\"messages\": [...]} or {\"text\": \"...\"} per line "
                 "(default: built-in text)")
      ->check(CLI::ExistingFile);
  app.add_option("--calib-samples", o.calibration.max_samples, "calibration samples to use")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-seq", o.calibration.max_seq, "tokens per sample (longer are truncated)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--all-experts", o.all_experts,
               "send every calibration token through every expert (outputs still use the "
               "routed top-k)");
  app.add_option("--ignore", o.ignore,
                 "keep these modules unquantized: exact name, fnmatch wildcard, or re:REGEX "
                 "(repeatable)");
  std::string lm_head = "keep";
  app.add_option("--lm-head", lm_head,
                 "lm_head's format: keep | bf16 (the model dtype) | fp8 (E4M3, 128x128 block "
                 "scales) | nvfp4 | mxfp4 | mxfp4-16 (weight-only; llama-quantize's "
                 "--output-tensor-type)")
      ->capture_default_str();
  app.add_option("--starved-abort", starved_abort,
                 "fail when more than PCT% of a layer's experts are starved")
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--starved-min-tokens", o.starved_min_tokens,
                 "an expert reached by fewer calibration tokens than this is starved")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "samples between amax checkpoints inside a layer (0: at layer ends only)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--resume", o.resume, "continue the unfinished run in --out");
  app.add_option("--threads", o.threads,
                 "worker threads (0: all cores); with 2 or more, the encoding and writing run on "
                 "a second pool of as many threads alongside the calibration, filling its idle "
                 "cores")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-shard-size", max_shard_mb, "largest output shard in MB (0: one file)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  bool quiet = false;
  app.add_flag("--quiet", quiet, "no progress output");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;

  return run_guarded(app.get_name(), [&] {
    o.recipe = parse_recipe(recipe);
    if (!format.empty()) o.layout = parse_layout(format);
    o.lm_head = parse_lm_head_scheme(lm_head);
    if (starved_abort >= 0.0) o.starved_abort_percent = starved_abort;
    o.max_shard_bytes = static_cast<uint64_t>(max_shard_mb * 1e6);
    o.progress = quiet ? nullptr : stderr;
    const QuantizeReport report = run_quantize(o);
    std::fputs(format_quantize_report(report).c_str(), stdout);
    return 0;
  });
}

}  // namespace m2fp4::cli
