// Recipes, layouts and the --ignore matching rules (quant-formats.md §6).
#include "quant/recipe.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace m2fp4 {
namespace {

TEST(Recipe, ParsesEveryNameAndRefusesOthers) {
  for (const char* name : {"nvfp4", "nvfp4-experts-fp8kv", "mxfp4", "mxfp4-16"}) {
    EXPECT_EQ(recipe_name(parse_recipe(name)), name);
  }
  try {
    parse_recipe("nvfp3");
    FAIL() << "accepted an unknown recipe";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown recipe 'nvfp3'"), std::string::npos);
  }
  EXPECT_THROW(parse_layout("gguf"), Error);
  EXPECT_EQ(parse_layout("modelopt"), ExportLayout::kModelopt);
  EXPECT_EQ(parse_layout("compressed-tensors"), ExportLayout::kCompressedTensors);
}

TEST(Recipe, DefaultLayoutsAndTheUndefinedPair) {
  EXPECT_EQ(default_layout(QuantRecipe::kNvfp4ExpertsFp8Kv), ExportLayout::kModelopt);
  EXPECT_EQ(default_layout(QuantRecipe::kNvfp4), ExportLayout::kCompressedTensors);
  EXPECT_EQ(default_layout(QuantRecipe::kMxfp4x16), ExportLayout::kCompressedTensors);
  EXPECT_NO_THROW(check_recipe_layout(QuantRecipe::kMxfp4x16, ExportLayout::kModelopt));
  EXPECT_NO_THROW(check_recipe_layout(QuantRecipe::kMxfp4, ExportLayout::kModelopt));
}

TEST(Recipe, RulesPerKind) {
  const RecipeRules nv = recipe_rules(QuantRecipe::kNvfp4);
  EXPECT_EQ(nv.scheme_for(LinearKind::kAttentionQkv), WeightScheme::kNvfp4);
  EXPECT_EQ(nv.scheme_for(LinearKind::kExpertW2), WeightScheme::kNvfp4);
  EXPECT_EQ(nv.scheme_for(LinearKind::kRouter), WeightScheme::kNone);
  EXPECT_EQ(nv.scheme_for(LinearKind::kLmHead), WeightScheme::kNone);
  EXPECT_TRUE(nv.static_input_scales);
  EXPECT_FALSE(nv.fp8_kv_scales);

  const RecipeRules ex = recipe_rules(QuantRecipe::kNvfp4ExpertsFp8Kv);
  EXPECT_EQ(ex.scheme_for(LinearKind::kAttentionO), WeightScheme::kNone);
  EXPECT_EQ(ex.scheme_for(LinearKind::kExpertW13), WeightScheme::kNvfp4);
  EXPECT_TRUE(ex.fp8_kv_scales);

  const RecipeRules mx = recipe_rules(QuantRecipe::kMxfp4);
  EXPECT_EQ(mx.scheme_for(LinearKind::kAttentionQkv), WeightScheme::kMxfp4);
  EXPECT_FALSE(mx.static_input_scales);
  EXPECT_FALSE(mx.fp8_kv_scales);

  const RecipeRules iq = recipe_rules(QuantRecipe::kMxfp4x16);
  EXPECT_EQ(iq.scheme_for(LinearKind::kExpertW13), WeightScheme::kIq4nl16);
  EXPECT_EQ(iq.scheme_for(LinearKind::kRouter), WeightScheme::kNone);
  EXPECT_TRUE(iq.fp8_kv_scales);

  EXPECT_EQ(scheme_block(WeightScheme::kNvfp4), 16);
  EXPECT_EQ(scheme_block(WeightScheme::kMxfp4), 32);
  EXPECT_EQ(scheme_block(WeightScheme::kIq4nl16), 16);
}

TEST(IgnorePatterns, RegexIsAnchoredAtTheStartOnly) {
  // Python re.match: anchored at the start, free at the end.
  EXPECT_TRUE(match_module_pattern("re:model\\.layers\\.1\\.", "model.layers.1.self_attn.q_proj"));
  EXPECT_TRUE(match_module_pattern("re:model\\.layers\\.1", "model.layers.10.self_attn.q_proj"));
  EXPECT_FALSE(match_module_pattern("re:layers\\.1\\.", "model.layers.1.self_attn.q_proj"));
  EXPECT_TRUE(match_module_pattern("re:.*block_sparse_moe\\.gate$",
                                   "model.layers.7.block_sparse_moe.gate"));
  EXPECT_FALSE(match_module_pattern("re:.*block_sparse_moe\\.gate$",
                                    "model.layers.7.block_sparse_moe.gate_up"));
}

TEST(IgnorePatterns, WildcardsAndExactNames) {
  // fnmatch: * crosses dots, ? is one character, [..] a set.
  EXPECT_TRUE(match_module_pattern("model.layers.0.self_attn*", "model.layers.0.self_attn.o_proj"));
  EXPECT_TRUE(
      match_module_pattern("*experts.1?.w2", "model.layers.3.block_sparse_moe.experts.12.w2"));
  EXPECT_FALSE(
      match_module_pattern("*experts.1?.w2", "model.layers.3.block_sparse_moe.experts.1.w2"));
  EXPECT_TRUE(match_module_pattern("*.w[13]", "model.layers.0.block_sparse_moe.experts.0.w3"));
  EXPECT_FALSE(match_module_pattern("*.w[13]", "model.layers.0.block_sparse_moe.experts.0.w2"));
  // No wildcard: the whole name must be equal (not a prefix, not a substring).
  EXPECT_TRUE(match_module_pattern("lm_head", "lm_head"));
  EXPECT_FALSE(match_module_pattern("model.layers.1", "model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(match_module_pattern("q_proj", "model.layers.1.self_attn.q_proj"));
}

TEST(IgnorePatterns, AnyPatternSelectsAndBadOnesAreRefused) {
  const IgnorePatterns p({"lm_head", "re:model\\.layers\\.0\\..*", "*.experts.5.*"});
  EXPECT_TRUE(p.matches("lm_head"));
  EXPECT_TRUE(p.matches("model.layers.0.self_attn.k_proj"));
  EXPECT_TRUE(p.matches("model.layers.2.block_sparse_moe.experts.5.w1"));
  EXPECT_FALSE(p.matches("model.layers.2.block_sparse_moe.experts.6.w1"));
  EXPECT_FALSE(IgnorePatterns().matches("lm_head"));
  EXPECT_THROW(IgnorePatterns({"re:model(["}), Error);
  EXPECT_THROW(IgnorePatterns({""}), Error);
}

}  // namespace
}  // namespace m2fp4
