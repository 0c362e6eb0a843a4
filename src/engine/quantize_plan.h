// The export plan of a quantize run: every Linear module of the source MiniMax-M2 checkpoint
// with the scheme the recipe and --ignore give it, and every output tensor in write order, each
// tied to the source tensor(s) it comes from. Fixed before any work starts, so that the shards'
// headers, the index and a resumed run all agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"
#include "quant/nvfp4.h"
#include "quant/quant_config_json.h"
#include "quant/recipe.h"

namespace m2fp4 {

struct LinearModule {
  std::string name;  // e.g. model.layers.3.block_sparse_moe.experts.7.w1 (weight: name.weight)
  LinearKind kind = LinearKind::kAttentionQkv;
  int64_t layer = -1;   // -1: lm_head
  int64_t expert = -1;  // expert modules only
  int64_t rows = 0;
  int64_t cols = 0;
  WeightScheme scheme = WeightScheme::kNone;
  bool input_scale = false;  // NVFP4 W4A4 static input scale
  // Modules sharing the NVFP4 weight global scale and input scale (q/k/v; w1/w3 of an expert):
  // the same non-empty key.
  std::string fused_group;
};

enum class ExportItemKind {
  kCopy,        // source tensor bytes unchanged
  kModelDtype,  // unquantized Linear weight converted to the model dtype (FP8 dequantized)
  kQuantized,   // a quantized Linear's tensors
  kKvScales,    // the layer's k_scale and v_scale
};

struct ExportItem {
  ExportItemKind kind = ExportItemKind::kCopy;
  int64_t layer = -1;   // -1: outside the decoder layers
  std::string source;   // source tensor (kCopy, kModelDtype)
  int64_t module = -1;  // index into ExportPlan::modules (kQuantized, kModelDtype)
  std::vector<TensorSpec> outputs;
};

struct ExportPlan {
  QuantRecipe recipe = QuantRecipe::kNvfp4;
  ExportLayout layout = ExportLayout::kCompressedTensors;
  DType model_dtype = DType::kBF16;  // dtype of unquantized weights and CT KV scales
  WorkDtype ct_work_dtype = WorkDtype::kBF16;
  bool fp8_source = false;
  WeightScheme lm_head = WeightScheme::kNone;  // --lm-head
  std::vector<LinearModule> modules;           // model order
  std::vector<ExportItem> items;               // write order: embed, layers 0..N-1, norm, lm_head
  std::vector<std::string> dropped;            // source tensors not exported (e.g. MTP modules)
  uint64_t source_bytes = 0;                   // bytes of the source tensors the plan reads

  std::vector<TensorSpec> specs() const;
  QuantConfigInputs config_inputs() const;
  int64_t quantized_count() const;
};

// Builds the plan; throws m2fp4::Error for a module whose input width does not fit the scheme's
// block, or --ignore patterns that split a fused group (vLLM refuses partly quantized qkv/w13).
// `lm_head`: the scheme of lm_head (--lm-head; kNone keeps it in the model dtype). The modelopt
// layout has one quant_algo per checkpoint, so there it must be the recipe's own Linear scheme.
ExportPlan plan_export(const Checkpoint& checkpoint, const ModelConfig& config, QuantRecipe recipe,
                       ExportLayout layout, const IgnorePatterns& ignore,
                       WeightScheme lm_head = WeightScheme::kNone);

}  // namespace m2fp4
