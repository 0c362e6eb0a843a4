// The quantization metadata files of an exported checkpoint (quant-formats.md §6):
// config.json's `quantization_config` for both layouts and modelopt's hf_quant_config.json,
// including modelopt's prefix-wildcard summary of the unquantized Linear layers.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/recipe.h"

namespace m2fp4 {

struct QuantConfigInputs {
  QuantRecipe recipe = QuantRecipe::kNvfp4;
  ExportLayout layout = ExportLayout::kCompressedTensors;
  // Linear modules by name, in model order (named_modules order): quantized, and kept in the
  // model dtype (lm_head, routers, --ignore'd modules, attention of the experts-only recipe).
  std::vector<std::string> quantized_modules;
  std::vector<std::string> unquantized_modules;
  // lm_head's scheme (--lm-head); when not kNone, lm_head is among quantized_modules.
  WeightScheme lm_head = WeightScheme::kNone;
  std::string producer_name = "m2fp4";
  std::string producer_version = "0.1.0";
};

// config.json "quantization_config".
//  compressed-tensors: quant_method "compressed-tensors", format nvfp4-pack-quantized /
//    mxfp4-pack-quantized / mxfp4_16, one config group targeting Linear, `ignore` = the exact
//    names of every unquantized Linear (what compressed-tensors' from_pretrained records), and a
//    static per-tensor FP8 kv_cache_scheme when the recipe calibrates KV scales. A quantized
//    lm_head gets a second group targeting "lm_head" by name (vLLM matches names before classes,
//    and reads a compressed-tensors lm_head since vllm#37291): weight-only args of its scheme,
//    FP8 as compressed-tensors' FP8_BLOCK preset (float-quantized, 128x128 blocks, dynamic
//    per-128 activations); the top-level format is "mixed-precision" when the groups differ.
//  modelopt: convert_hf_quant_config_format() of the hf_quant_config.json below (quant_method
//    "modelopt", `ignore` = exclude_modules).
nlohmann::ordered_json quantization_config_json(const QuantConfigInputs& inputs);

// hf_quant_config.json (modelopt layout only; throws otherwise):
// {"producer": {...}, "quantization": {"quant_algo", "kv_cache_quant_algo", "group_size",
//  "exclude_modules"}}. MXFP4 follows modelopt's process_layer_quant_config: quant_algo "mxfp4"
// and no group_size.
nlohmann::ordered_json hf_quant_config_json(const QuantConfigInputs& inputs);

// modelopt's _prefix_wildcard_summarize_exclude_modules: each unquantized name becomes the
// shortest dot-aligned `prefix*` (or `prefix.*`) that matches no quantized name, the name itself
// if none does; sorted.
std::vector<std::string> prefix_wildcard_summary(const std::vector<std::string>& unquantized,
                                                 const std::vector<std::string>& quantized);

}  // namespace m2fp4
