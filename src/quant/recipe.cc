#include "quant/recipe.h"

#include <fnmatch.h>

#include "base/error.h"

namespace m2fp4 {

QuantRecipe parse_recipe(std::string_view name) {
  if (name == "nvfp4") return QuantRecipe::kNvfp4;
  if (name == "nvfp4-experts-fp8kv") return QuantRecipe::kNvfp4ExpertsFp8Kv;
  if (name == "mxfp4") return QuantRecipe::kMxfp4;
  if (name == "mxfp4-16") return QuantRecipe::kMxfp4x16;
  fail("unknown recipe '", name, "' (expected nvfp4, nvfp4-experts-fp8kv, mxfp4 or mxfp4-16)");
}

std::string_view recipe_name(QuantRecipe recipe) {
  switch (recipe) {
    case QuantRecipe::kNvfp4:
      return "nvfp4";
    case QuantRecipe::kNvfp4ExpertsFp8Kv:
      return "nvfp4-experts-fp8kv";
    case QuantRecipe::kMxfp4:
      return "mxfp4";
    case QuantRecipe::kMxfp4x16:
      return "mxfp4-16";
  }
  return "?";
}

ExportLayout parse_layout(std::string_view name) {
  if (name == "compressed-tensors") return ExportLayout::kCompressedTensors;
  if (name == "modelopt") return ExportLayout::kModelopt;
  fail("unknown format '", name, "' (expected compressed-tensors or modelopt)");
}

std::string_view layout_name(ExportLayout layout) {
  return layout == ExportLayout::kModelopt ? "modelopt" : "compressed-tensors";
}

ExportLayout default_layout(QuantRecipe recipe) {
  return recipe == QuantRecipe::kNvfp4ExpertsFp8Kv ? ExportLayout::kModelopt
                                                   : ExportLayout::kCompressedTensors;
}

void check_recipe_layout(QuantRecipe recipe, ExportLayout layout) {
  // Every recipe has both layouts. mxfp4-16 in the modelopt layout (modelopt itself has no
  // IQ4_NL codebook format) follows modelopt's naming: `weight` U8 packed codes, `weight_scale`
  // F16 per 16, quant_algo "MXFP4_16", FP8 KV scales as k_proj.k_scale / v_proj.v_scale.
  (void)recipe;
  (void)layout;
}

std::string_view scheme_name(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::kNone:
      return "none";
    case WeightScheme::kNvfp4:
      return "nvfp4";
    case WeightScheme::kMxfp4:
      return "mxfp4";
    case WeightScheme::kIq4nl16:
      return "iq4nl16";
    case WeightScheme::kFp8Block128:
      return "fp8-block128";
  }
  return "?";
}

int64_t scheme_block(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::kNone:
      return 0;
    case WeightScheme::kNvfp4:
    case WeightScheme::kIq4nl16:
      return 16;
    case WeightScheme::kMxfp4:
      return 32;
    case WeightScheme::kFp8Block128:
      return 128;
  }
  return 0;
}

bool scheme_needs_whole_blocks(WeightScheme scheme) {
  return scheme != WeightScheme::kFp8Block128;
}

WeightScheme parse_lm_head_scheme(std::string_view name) {
  if (name == "keep" || name == "bf16") return WeightScheme::kNone;
  if (name == "fp8") return WeightScheme::kFp8Block128;
  if (name == "nvfp4") return WeightScheme::kNvfp4;
  if (name == "mxfp4") return WeightScheme::kMxfp4;
  if (name == "mxfp4-16") return WeightScheme::kIq4nl16;
  fail("unknown --lm-head '", name, "' (expected keep, bf16, fp8, nvfp4, mxfp4 or mxfp4-16)");
}

WeightScheme RecipeRules::scheme_for(LinearKind kind) const {
  switch (kind) {
    case LinearKind::kAttentionQkv:
    case LinearKind::kAttentionO:
      return attention;
    case LinearKind::kExpertW13:
    case LinearKind::kExpertW2:
      return experts;
    case LinearKind::kRouter:  // routing stays exact: every recipe keeps the router gate
      return WeightScheme::kNone;
    case LinearKind::kLmHead:  // kept in the model dtype unless --lm-head says otherwise
      return lm_head;
  }
  return WeightScheme::kNone;
}

RecipeRules recipe_rules(QuantRecipe recipe) {
  RecipeRules r;
  switch (recipe) {
    case QuantRecipe::kNvfp4:
      r.attention = r.experts = WeightScheme::kNvfp4;
      r.static_input_scales = true;
      break;
    case QuantRecipe::kNvfp4ExpertsFp8Kv:
      r.experts = WeightScheme::kNvfp4;
      r.static_input_scales = true;
      r.fp8_kv_scales = true;
      break;
    case QuantRecipe::kMxfp4:
      r.attention = r.experts = WeightScheme::kMxfp4;
      break;
    case QuantRecipe::kMxfp4x16:
      r.attention = r.experts = WeightScheme::kIq4nl16;
      r.fp8_kv_scales = true;
      break;
  }
  return r;
}

IgnorePatterns::IgnorePatterns(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {
  for (const std::string& p : patterns_) {
    M2_CHECK(!p.empty(), "--ignore: empty pattern");
    Compiled c;
    c.text = p;
    if (p.rfind("re:", 0) == 0) {
      c.is_regex = true;
      try {
        c.regex = std::regex(p.substr(3), std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        fail("--ignore '", p, "': invalid regular expression: ", e.what());
      }
    } else {
      c.is_wildcard = p.find_first_of("*?[") != std::string::npos;
    }
    compiled_.push_back(std::move(c));
  }
}

bool IgnorePatterns::matches(std::string_view module) const {
  const std::string name(module);
  for (const Compiled& c : compiled_) {
    if (c.is_regex) {
      if (std::regex_search(name, c.regex, std::regex_constants::match_continuous)) return true;
    } else if (c.is_wildcard) {
      if (::fnmatch(c.text.c_str(), name.c_str(), 0) == 0) return true;
    } else if (c.text == name) {
      return true;
    }
  }
  return false;
}

bool match_module_pattern(std::string_view pattern, std::string_view module) {
  return IgnorePatterns({std::string(pattern)}).matches(module);
}

}  // namespace m2fp4
