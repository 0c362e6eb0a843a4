// `quantize --lm-head`: the FP8 128x128 block encoding of lm_head in both layouts (names, shapes,
// scales, and every element within E4M3's rounding error of its source), the option's parsing,
// and how the compressed-tensors config describes a quantized lm_head.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/fp8_e4m3.h"
#include "quant/export_layout.h"
#include "quant/quant_config_json.h"
#include "quant/recipe.h"

namespace m2fp4 {
namespace {

TEST(LmHeadScheme, ParsesTheChoices) {
  EXPECT_EQ(parse_lm_head_scheme("keep"), WeightScheme::kNone);
  EXPECT_EQ(parse_lm_head_scheme("bf16"), WeightScheme::kNone);
  EXPECT_EQ(parse_lm_head_scheme("fp8"), WeightScheme::kFp8Block128);
  EXPECT_EQ(parse_lm_head_scheme("nvfp4"), WeightScheme::kNvfp4);
  EXPECT_EQ(parse_lm_head_scheme("mxfp4"), WeightScheme::kMxfp4);
  EXPECT_EQ(parse_lm_head_scheme("mxfp4-16"), WeightScheme::kIq4nl16);
  EXPECT_THROW(parse_lm_head_scheme("q6_k"), Error);
  RecipeRules rules = recipe_rules(QuantRecipe::kNvfp4);
  EXPECT_EQ(rules.scheme_for(LinearKind::kLmHead), WeightScheme::kNone);  // default: kept
  rules.lm_head = WeightScheme::kFp8Block128;
  EXPECT_EQ(rules.scheme_for(LinearKind::kLmHead), WeightScheme::kFp8Block128);
  EXPECT_EQ(rules.scheme_for(LinearKind::kRouter), WeightScheme::kNone);
}

TEST(LmHeadScheme, Fp8SpecsPerLayoutWithPartialBlocks) {
  // 300 x 200: blocks of 128 rows/cols with partial edges -> scales [3, 2].
  const auto ct = quantized_linear_specs("lm_head", 300, 200, WeightScheme::kFp8Block128,
                                         ExportLayout::kCompressedTensors, false);
  ASSERT_EQ(ct.size(), 2u);
  EXPECT_EQ(ct[0].name, "lm_head.weight");
  EXPECT_EQ(ct[0].dtype, DType::kF8E4M3);
  EXPECT_EQ(ct[0].shape, (std::vector<int64_t>{300, 200}));
  EXPECT_EQ(ct[1].name, "lm_head.weight_scale");
  EXPECT_EQ(ct[1].dtype, DType::kF32);
  EXPECT_EQ(ct[1].shape, (std::vector<int64_t>{3, 2}));
  const auto mo = quantized_linear_specs("lm_head", 300, 200, WeightScheme::kFp8Block128,
                                         ExportLayout::kModelopt, false);
  ASSERT_EQ(mo.size(), 2u);
  EXPECT_EQ(mo[0].name, "lm_head.weight");
  EXPECT_EQ(mo[1].name, "lm_head.weight_scale_inv");  // the MiniMax FP8 release's name
  EXPECT_THROW(quantized_linear_specs("lm_head", 300, 200, WeightScheme::kFp8Block128,
                                      ExportLayout::kModelopt, true),
               Error);  // no input scale for FP8
}

// Every element decodes to within E4M3's rounding of its source, by hand: with the block's
// scale s = amax/448, x/s lies in [-448, 448]; a normal E4M3 value has 3 mantissa bits, so
// round-to-nearest moves it by at most 2^-4 of its magnitude (half an ulp of 2^-3 relative);
// below 2^-6 (subnormals, step 2^-9) by at most 2^-10. Back in x units:
// |dequant - x| <= max(|x| * 2^-4, s * 2^-10).
TEST(LmHeadScheme, Fp8DequantizesWithinTheFormatsError) {
  const int64_t rows = 300, cols = 200;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    // Magnitudes that differ by block row and column so that every block gets its own scale.
    for (int64_t c = 0; c < cols; ++c) {
      const float spread = std::ldexp(1.0f, static_cast<int>((r / 128) * 3 - (c / 128) * 5));
      w[static_cast<size_t>(r * cols + c)] = normal(rng) * 0.02f * spread;
    }
  }
  w[5] = 0.0f;
  w[7] = -1e-9f;  // subnormal territory after scaling
  const ConstMatrix m = ConstMatrix::f32(w, rows, cols);
  for (ExportLayout layout : {ExportLayout::kCompressedTensors, ExportLayout::kModelopt}) {
    const std::vector<EncodedTensor> t = encode_quantized_linear(
        "lm_head", m, WeightScheme::kFp8Block128, LinearEncodeOptions{layout}, 0.0f, std::nullopt);
    ASSERT_EQ(t.size(), 2u);
    ASSERT_EQ(t[0].bytes.size(), static_cast<size_t>(rows * cols));
    ASSERT_EQ(t[1].bytes.size(), 3u * 2u * 4u);
    std::vector<float> scales(6);
    std::memcpy(scales.data(), t[1].bytes.data(), 24);
    // The scale of each block: f32(amax / 448), the dequant multiplier.
    for (int64_t br = 0; br < 3; ++br) {
      for (int64_t bc = 0; bc < 2; ++bc) {
        float amax = 0.0f;
        for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r) {
          for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c) {
            amax = std::max(amax, std::fabs(w[static_cast<size_t>(r * cols + c)]));
          }
        }
        EXPECT_EQ(scales[static_cast<size_t>(br * 2 + bc)], amax / 448.0f) << br << "," << bc;
      }
    }
    int64_t checked = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float x = w[static_cast<size_t>(r * cols + c)];
        const float s = scales[static_cast<size_t>((r / 128) * 2 + c / 128)];
        const uint8_t code =
            std::to_integer<uint8_t>(t[0].bytes[static_cast<size_t>(r * cols + c)]);
        ASSERT_NE(code & 0x7F, 0x7F) << "NaN code at " << r << "," << c;
        const float back = e4m3_to_f32(code) * s;
        const float bound = std::max(std::fabs(x) * 0.0625f, s * std::ldexp(1.0f, -10));
        ASSERT_LE(std::fabs(back - x), bound * 1.000001f) << r << "," << c << " x=" << x;
        ++checked;
      }
    }
    EXPECT_EQ(checked, rows * cols);
  }
}

TEST(LmHeadScheme, CompressedTensorsConfigTargetsLmHeadByName) {
  QuantConfigInputs in;
  in.recipe = QuantRecipe::kNvfp4;
  in.layout = ExportLayout::kCompressedTensors;
  in.quantized_modules = {"model.layers.0.self_attn.q_proj", "lm_head"};
  in.unquantized_modules = {"model.layers.0.block_sparse_moe.gate"};
  in.lm_head = WeightScheme::kFp8Block128;
  const nlohmann::ordered_json q = quantization_config_json(in);
  EXPECT_EQ(q["format"], "mixed-precision");
  EXPECT_EQ(q["config_groups"]["group_0"]["targets"], nlohmann::ordered_json::array({"Linear"}));
  const auto& head = q["config_groups"]["group_1"];
  EXPECT_EQ(head["targets"], nlohmann::ordered_json::array({"lm_head"}));
  EXPECT_EQ(head["format"], "float-quantized");
  EXPECT_EQ(head["weights"]["num_bits"], 8);
  EXPECT_EQ(head["weights"]["strategy"], "block");
  EXPECT_EQ(head["weights"]["block_structure"], nlohmann::ordered_json::array({128, 128}));
  EXPECT_EQ(head["input_activations"]["dynamic"], true);
  for (const auto& name : q["ignore"]) EXPECT_NE(name, "lm_head");

  // The recipe's own scheme on lm_head: one format, a weight-only group.
  in.lm_head = WeightScheme::kNvfp4;
  const nlohmann::ordered_json same = quantization_config_json(in);
  EXPECT_EQ(same["format"], "nvfp4-pack-quantized");
  EXPECT_TRUE(same["config_groups"]["group_1"]["input_activations"].is_null());
  // Kept (the default): no second group, lm_head stays where the plan lists it (ignore).
  in.lm_head = WeightScheme::kNone;
  EXPECT_FALSE(quantization_config_json(in)["config_groups"].contains("group_1"));
}

}  // namespace
}  // namespace m2fp4
