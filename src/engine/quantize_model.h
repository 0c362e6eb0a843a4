// `m2fp4 quantize`: a MiniMax-M2 checkpoint (BF16, F32 or the official FP8 release) to NVFP4,
// MXFP4 or IQ4_NL x16 in the compressed-tensors or modelopt layout, streaming one decoder layer
// at a time (design.md, quantize flow):
//
//   embed the calibration samples -> for each layer: map its weights, run every sample's
//   residual stream through it while observers record amaxes (§7), quantize it by the recipe,
//   write it, drop its pages -> final norm, lm_head -> config files -> move into OUT.
//
// Resident memory is one layer of source weights plus the calibration activations. Every step is
// checkpointed in OUT/.m2fp4-work (see quantize_work.h) so that `--resume` after a kill at any
// point produces the same bytes as an uninterrupted run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/quantize_calibration.h"
#include "quant/recipe.h"

namespace m2fp4 {

struct QuantizeOptions {
  std::string model_dir;
  std::string out_dir;
  QuantRecipe recipe = QuantRecipe::kNvfp4;
  std::optional<ExportLayout> layout;  // default: default_layout(recipe)
  CalibrationOptions calibration;
  bool all_experts = false;
  std::vector<std::string> ignore;
  WeightScheme lm_head = WeightScheme::kNone;  // --lm-head (kNone: the model dtype)
  std::optional<double> starved_abort_percent;
  int64_t starved_min_tokens = 8;  // experts reached by fewer calibration tokens are "starved"
  int64_t checkpoint_every = 16;   // samples between amax-only checkpoints inside a layer (0: off)
  bool resume = false;
  int threads = 0;  // 0: all cores
  uint64_t max_shard_bytes = 5'000'000'000;
  std::FILE* progress = stderr;  // nullptr: silent
  // The last layer's expert matmuls are skipped when no exported scale needs their outputs (no
  // calibrated w2 input scale there): the output and report are the same either way (tests
  // compare both).
  bool skip_unread_experts = true;
};

struct QuantizeReport {
  std::string recipe;
  std::string layout;
  std::string source_dir;
  std::string source_format;  // bf16 / float32 / FP8 block-128
  std::string out_dir;
  uint64_t source_bytes = 0;  // source tensors read
  uint64_t output_bytes = 0;  // tensor bytes written
  size_t shards = 0;
  int64_t quantized_modules = 0;
  int64_t kept_modules = 0;
  std::string lm_head = "kept";  // --lm-head scheme name, or "kept"
  std::string calibration_source;
  int64_t samples = 0;
  int64_t calibration_tokens = 0;
  int64_t max_seq = 0;
  bool all_experts = false;
  int64_t n_layers = 0;
  int64_t n_experts = 0;
  int64_t starved_min_tokens = 0;
  std::vector<std::pair<int64_t, std::vector<int64_t>>> starved;  // layer -> starved experts
  std::vector<std::pair<int64_t, int64_t>> filled;  // layer -> experts given the layer max amax
  std::vector<std::string> dropped;                 // source tensors not exported
  int64_t resumed_at_layer = -1;                    // -1: a fresh run
  double seconds = 0;
  double calibration_seconds = 0;
  double export_seconds = 0;
  double write_seconds = 0;    // of export_seconds: handing quantized tensors to the output files
  double overlap_seconds = 0;  // of export_seconds: alongside calibration (another thread)
  // Process CPU time (user + system, all threads) of the run and of its phases.
  double cpu_seconds = 0;
  double calibration_cpu_seconds = 0;
  double export_cpu_seconds = 0;
  uint64_t activation_bytes = 0;
  int64_t peak_rss_bytes = 0;
};

// Runs the whole flow; throws m2fp4::Error with one clear message for bad input (not a MiniMax-M2
// checkpoint, an already quantized source, malformed calibration data, --resume without a run,
// too many starved experts with --starved-abort, ...). OUT is left without config.json on
// failure, with its work folder for --resume.
QuantizeReport run_quantize(const QuantizeOptions& options);

std::string format_quantize_report(const QuantizeReport& report);

// Peak resident set size of this process so far (getrusage), in bytes.
int64_t peak_rss_bytes();
// This process's user + system CPU seconds so far (all threads).
double process_cpu_seconds();

}  // namespace m2fp4
