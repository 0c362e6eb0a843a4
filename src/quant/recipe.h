// Quantization recipes (what `m2fp4 quantize --recipe` quantizes how), export layouts, and the
// module ignore patterns of quant-formats.md §6: which Linear layers of a MiniMax-M2 model get
// which 4-bit format, whether they carry static input scales (W4A4) and whether the layer's KV
// cache gets calibrated FP8 scales.
#pragma once

#include <cstdint>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace m2fp4 {

enum class QuantRecipe {
  kNvfp4,              // every Linear NVFP4 W4A4 (static input scales); lm_head, routers kept
  kNvfp4ExpertsFp8Kv,  // expert w1/w2/w3 NVFP4 W4A4 only; FP8 KV scales
  kMxfp4,              // every Linear OCP MXFP4 (group 32), weight-only
  kMxfp4x16,           // every Linear IQ4_NL codebook x16 ("mxfp4_16", §3.4); FP8 KV scales
};

// The on-disk layout (tensor names, global-scale sense, config files).
enum class ExportLayout { kCompressedTensors, kModelopt };

// kFp8Block128: E4M3 codes with one f32 multiplier per 128x128 block (the official MiniMax FP8
// release's layout and a kernel format, WeightFormat::kFp8Block128); offered for lm_head only.
enum class WeightScheme { kNone, kNvfp4, kMxfp4, kIq4nl16, kFp8Block128 };

// The Linear layers of a MiniMax-M2 decoder (plus lm_head), by role.
enum class LinearKind { kAttentionQkv, kAttentionO, kRouter, kExpertW13, kExpertW2, kLmHead };

// Parses "nvfp4" | "nvfp4-experts-fp8kv" | "mxfp4" | "mxfp4-16"; throws naming the choices.
QuantRecipe parse_recipe(std::string_view name);
std::string_view recipe_name(QuantRecipe recipe);
// Parses "compressed-tensors" | "modelopt".
ExportLayout parse_layout(std::string_view name);
std::string_view layout_name(ExportLayout layout);
// The layout a recipe is written in when --format is not given: modelopt for the
// experts-only recipe (the layout of the published NVFP4 checkpoint it reproduces, §6.1),
// compressed-tensors otherwise.
ExportLayout default_layout(QuantRecipe recipe);
// Throws for a pair no producer defines: mxfp4-16 exists only as a compressed-tensors container
// (§3.4; modelopt has no IQ4_NL format).
void check_recipe_layout(QuantRecipe recipe, ExportLayout layout);

std::string_view scheme_name(WeightScheme scheme);
// Elements per block along the input dimension (0 for kNone).
int64_t scheme_block(WeightScheme scheme);
// The input width must be a multiple of scheme_block() (FP8 128x128 blocks may be partial).
bool scheme_needs_whole_blocks(WeightScheme scheme);

// `quantize --lm-head`: "keep" or "bf16" (the model dtype, as the published checkpoints do),
// "fp8" (E4M3, 128x128 block scales), "nvfp4", "mxfp4" or "mxfp4-16"; throws naming the choices.
// lm_head is never calibrated, so a 4-bit lm_head is weight-only (no NVFP4 input scale).
WeightScheme parse_lm_head_scheme(std::string_view name);

// What a recipe does to each kind of Linear before --ignore patterns apply.
struct RecipeRules {
  WeightScheme attention = WeightScheme::kNone;  // q/k/v/o
  WeightScheme experts = WeightScheme::kNone;    // w1/w2/w3
  WeightScheme lm_head = WeightScheme::kNone;    // --lm-head (default: kept)
  bool static_input_scales = false;              // NVFP4 W4A4: calibrated input scales
  bool fp8_kv_scales = false;                    // calibrated k_scale / v_scale per layer

  WeightScheme scheme_for(LinearKind kind) const;
};
RecipeRules recipe_rules(QuantRecipe recipe);

// Does `pattern` select module `name`? `re:REGEX` is a regex match anchored at the start of the
// name (Python re.match, as compressed-tensors does); a pattern with `*`, `?` or `[` is an
// fnmatch wildcard over the whole name (`*` crosses dots, as modelopt's patterns and vLLM's
// exclude_modules matching do); anything else must equal the name.
class IgnorePatterns {
 public:
  IgnorePatterns() = default;
  // Throws m2fp4::Error for an empty pattern or an invalid regex, naming it.
  explicit IgnorePatterns(std::vector<std::string> patterns);

  bool matches(std::string_view module) const;
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  struct Compiled {
    std::string text;
    bool is_regex = false;
    bool is_wildcard = false;
    std::regex regex;
  };
  std::vector<std::string> patterns_;
  std::vector<Compiled> compiled_;
};

bool match_module_pattern(std::string_view pattern, std::string_view module);

}  // namespace m2fp4
