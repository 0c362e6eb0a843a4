#include "quant/quant_config_json.h"

#include <algorithm>
#include <set>

#include "base/error.h"

namespace m2fp4 {
namespace {

using ojson = nlohmann::ordered_json;

// compressed-tensors QuantizationArgs as model_dump() writes them (declaration order; zp_dtype
// is serialised as null for symmetric schemes).
ojson ct_args(int num_bits, const char* strategy, ojson group_size, ojson dynamic,
              ojson scale_dtype, const char* observer) {
  ojson a;
  a["num_bits"] = num_bits;
  a["type"] = "float";
  a["symmetric"] = true;
  a["group_size"] = std::move(group_size);
  a["strategy"] = strategy;
  a["block_structure"] = nullptr;
  a["dynamic"] = std::move(dynamic);
  a["actorder"] = nullptr;
  a["scale_dtype"] = std::move(scale_dtype);
  a["zp_dtype"] = nullptr;
  a["observer"] = observer == nullptr ? ojson(nullptr) : ojson(observer);
  a["observer_kwargs"] = ojson::object();
  return a;
}

// Static per-tensor FP8 KV cache (llm-compressor kv_cache_scheme; scale = amax / 448).
ojson ct_kv_cache_scheme() {
  return ct_args(8, "tensor", nullptr, false, nullptr, "static_minmax");
}

const char* ct_format(QuantRecipe recipe) {
  switch (recipe) {
    case QuantRecipe::kNvfp4:
    case QuantRecipe::kNvfp4ExpertsFp8Kv:
      return "nvfp4-pack-quantized";
    case QuantRecipe::kMxfp4:
      return "mxfp4-pack-quantized";
    case QuantRecipe::kMxfp4x16:
      return "mxfp4_16";
  }
  return "?";
}

// The config group of a quantized lm_head (weight-only; lm_head is never calibrated).
ojson ct_lm_head_group(WeightScheme scheme) {
  ojson group;
  group["targets"] = ojson::array({"lm_head"});
  const char* format = "?";
  switch (scheme) {
    case WeightScheme::kNvfp4:
      group["weights"] = ct_args(4, "tensor_group", 16, false, "torch.float8_e4m3fn", "minmax");
      group["input_activations"] = nullptr;
      format = "nvfp4-pack-quantized";
      break;
    case WeightScheme::kMxfp4:
      group["weights"] = ct_args(4, "group", 32, false, "torch.uint8", "minmax");
      group["input_activations"] = nullptr;
      format = "mxfp4-pack-quantized";
      break;
    case WeightScheme::kIq4nl16:
      group["weights"] = ct_args(4, "group", 16, false, "torch.float16", "minmax");
      group["input_activations"] = nullptr;
      format = "mxfp4_16";
      break;
    case WeightScheme::kFp8Block128: {
      // compressed-tensors' FP8_BLOCK preset: static 128x128 weight blocks, activations
      // quantized per token and 128 channels at run time.
      ojson weights = ct_args(8, "block", nullptr, false, nullptr, "minmax");
      weights["block_structure"] = ojson::array({128, 128});
      group["weights"] = std::move(weights);
      group["input_activations"] = ct_args(8, "group", 128, true, nullptr, nullptr);
      format = "float-quantized";
      break;
    }
    case WeightScheme::kNone:
      fail("lm_head: not a quantized scheme");
  }
  group["output_activations"] = nullptr;
  group["format"] = format;
  return group;
}

ojson compressed_tensors_config(const QuantConfigInputs& in) {
  const RecipeRules rules = recipe_rules(in.recipe);
  const char* format = ct_format(in.recipe);
  ojson group;
  group["targets"] = ojson::array({"Linear"});
  switch (in.recipe) {
    case QuantRecipe::kNvfp4:
    case QuantRecipe::kNvfp4ExpertsFp8Kv:
      group["weights"] = ct_args(4, "tensor_group", 16, false, "torch.float8_e4m3fn", "minmax");
      // W4A4: static calibrated global scale (input_global_scale), per-16 block scales computed
      // per token at runtime.
      group["input_activations"] =
          ct_args(4, "tensor_group", 16, "local", "torch.float8_e4m3fn", "static_minmax");
      break;
    case QuantRecipe::kMxfp4:
      group["weights"] = ct_args(4, "group", 32, false, "torch.uint8", "minmax");
      group["input_activations"] = nullptr;
      break;
    case QuantRecipe::kMxfp4x16:
      // §6.3: IQ4_NL levels with a signed fp16 scale per 16.
      group["weights"] = ct_args(4, "group", 16, false, "torch.float16", "minmax");
      group["input_activations"] = nullptr;
      break;
  }
  group["output_activations"] = nullptr;
  group["format"] = format;

  ojson q;
  q["config_groups"] = ojson{{"group_0", std::move(group)}};
  std::string top_format = format;
  if (in.lm_head != WeightScheme::kNone) {
    ojson head = ct_lm_head_group(in.lm_head);
    if (head["format"] != format) top_format = "mixed-precision";
    q["config_groups"]["group_1"] = std::move(head);
  }
  q["quant_method"] = "compressed-tensors";
  q["kv_cache_scheme"] = rules.fp8_kv_scales ? ct_kv_cache_scheme() : ojson(nullptr);
  q["format"] = top_format;
  q["quantization_status"] = "compressed";
  q["global_compression_ratio"] = nullptr;
  q["ignore"] = in.unquantized_modules;
  q["producer"] = ojson{{"name", in.producer_name}, {"version", in.producer_version}};
  return q;
}

}  // namespace

std::vector<std::string> prefix_wildcard_summary(const std::vector<std::string>& unquantized,
                                                 const std::vector<std::string>& quantized) {
  // Every prefix wildcard `p*` (and the exact name) of a quantized module is forbidden.
  std::set<std::string> negative;
  for (const std::string& name : quantized) {
    negative.insert(name);
    for (size_t i = 0; i <= name.size(); ++i) negative.insert(name.substr(0, i) + "*");
  }
  std::set<std::string> summary;
  for (const std::string& name : unquantized) {
    // Candidates from the shortest: at each dot, [prefix*] then [prefix, prefix.*]; then the name.
    std::vector<std::vector<std::string>> candidates;
    for (size_t i = 0; i < name.size(); ++i) {
      if (name[i] != '.') continue;
      const std::string prefix = name.substr(0, i);
      candidates.push_back({prefix + "*"});
      candidates.push_back({prefix, prefix + ".*"});
    }
    candidates.push_back({name});
    std::vector<std::string> chosen;
    for (const auto& wildcards : candidates) {
      const bool forbidden = std::any_of(wildcards.begin(), wildcards.end(),
                                         [&](const std::string& w) { return negative.count(w); });
      if (forbidden) continue;
      const bool covered = std::all_of(wildcards.begin(), wildcards.end(),
                                       [&](const std::string& w) { return summary.count(w); });
      if (covered) {
        chosen.clear();
        break;
      }
      chosen = wildcards;
      break;
    }
    // A [prefix, prefix.*] pair is written as prefix.* alone.
    if (chosen.size() == 2 && chosen[1] == chosen[0] + ".*") {
      summary.insert(chosen[1]);
    } else {
      summary.insert(chosen.begin(), chosen.end());
    }
  }
  return {summary.begin(), summary.end()};
}

nlohmann::ordered_json hf_quant_config_json(const QuantConfigInputs& in) {
  M2_CHECK(in.layout == ExportLayout::kModelopt,
           "hf_quant_config.json exists only in the modelopt layout");
  check_recipe_layout(in.recipe, in.layout);
  const RecipeRules rules = recipe_rules(in.recipe);
  ojson quantization;
  const bool nvfp4 =
      in.recipe == QuantRecipe::kNvfp4 || in.recipe == QuantRecipe::kNvfp4ExpertsFp8Kv;
  const bool iq4nl16 = in.recipe == QuantRecipe::kMxfp4x16;
  quantization["quant_algo"] = nvfp4 ? "NVFP4" : (iq4nl16 ? "MXFP4_16" : "mxfp4");
  quantization["kv_cache_quant_algo"] = rules.fp8_kv_scales ? ojson("FP8") : ojson(nullptr);
  if (nvfp4 || iq4nl16) quantization["group_size"] = 16;
  quantization["exclude_modules"] =
      prefix_wildcard_summary(in.unquantized_modules, in.quantized_modules);
  ojson out;
  out["producer"] = ojson{{"name", in.producer_name}, {"version", in.producer_version}};
  out["quantization"] = std::move(quantization);
  return out;
}

nlohmann::ordered_json quantization_config_json(const QuantConfigInputs& in) {
  check_recipe_layout(in.recipe, in.layout);
  if (in.layout == ExportLayout::kCompressedTensors) return compressed_tensors_config(in);

  // modelopt: convert_hf_quant_config_format() of hf_quant_config.json.
  const ojson hf = hf_quant_config_json(in);
  const ojson& details = hf["quantization"];
  ojson q;
  if (details["quant_algo"] == "NVFP4") {
    ojson group;
    group["input_activations"] = {
        {"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
    group["weights"] = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
    group["targets"] = ojson::array({"Linear"});
    q["config_groups"] = ojson{{"group_0", std::move(group)}};
  } else if (details["quant_algo"] == "MXFP4_16") {
    // Weight-only: IQ4_NL levels with a signed fp16 scale per 16.
    ojson group;
    group["weights"] = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
    group["targets"] = ojson::array({"Linear"});
    q["config_groups"] = ojson{{"group_0", std::move(group)}};
  }
  q["ignore"] = details["exclude_modules"];
  q["quant_algo"] = details["quant_algo"];
  if (details["kv_cache_quant_algo"] == "FP8") {
    q["kv_cache_scheme"] = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
  }
  q["producer"] = hf["producer"];
  q["quant_method"] = "modelopt";
  return q;
}

}  // namespace m2fp4
