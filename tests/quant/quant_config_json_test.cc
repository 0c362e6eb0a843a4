// config.json quantization_config / hf_quant_config.json (quant-formats.md §6) and modelopt's
// prefix-wildcard summary of the unquantized modules.
#include "quant/quant_config_json.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace m2fp4 {
namespace {

using ojson = nlohmann::ordered_json;

// A 2-layer, 2-expert MiniMax-M2 in named_modules order, quantized like the experts-only recipe.
QuantConfigInputs experts_only(ExportLayout layout) {
  QuantConfigInputs in;
  in.recipe = QuantRecipe::kNvfp4ExpertsFp8Kv;
  in.layout = layout;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* a : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      in.unquantized_modules.push_back(p + "self_attn." + a);
    }
    in.unquantized_modules.push_back(p + "block_sparse_moe.gate");
    for (int e = 0; e < 2; ++e) {
      for (const char* w : {"w1", "w2", "w3"}) {
        in.quantized_modules.push_back(p + "block_sparse_moe.experts." + std::to_string(e) + "." +
                                       w);
      }
    }
  }
  in.unquantized_modules.push_back("lm_head");
  return in;
}

TEST(PrefixWildcardSummary, ExpertsOnlyMatchesTheSeedCheckpoint) {
  // §6.1's exclude list: lm_head, each layer's router by name and its attention as a wildcard.
  const QuantConfigInputs in = experts_only(ExportLayout::kModelopt);
  EXPECT_EQ(prefix_wildcard_summary(in.unquantized_modules, in.quantized_modules),
            (std::vector<std::string>{
                "lm_head", "model.layers.0.block_sparse_moe.gate", "model.layers.0.self_attn*",
                "model.layers.1.block_sparse_moe.gate", "model.layers.1.self_attn*"}));
}

TEST(PrefixWildcardSummary, PairBecomesDotStarAndWholeSubtrees) {
  // `a.b*` would also match the quantized a.bx.y, so the pair {a.b, a.b.*} is used and written
  // as a.b.* alone; an unquantized subtree with no quantized relative collapses to its top.
  EXPECT_EQ(prefix_wildcard_summary({"a.b.c", "a.b.d"}, {"a.bx.y"}),
            (std::vector<std::string>{"a.b.*"}));
  EXPECT_EQ(prefix_wildcard_summary({"x.y.z", "x.y.w", "lm_head"}, {"a.b"}),
            (std::vector<std::string>{"lm_head", "x*"}));
  // Names equal to a quantized module's prefix stay exact.
  EXPECT_EQ(prefix_wildcard_summary({"m.l.gate"}, {"m.l.gate_up.w"}),
            (std::vector<std::string>{"m.l.gate"}));
}

TEST(HfQuantConfig, ModeloptNvfp4WithFp8Kv) {
  const ojson hf = hf_quant_config_json(experts_only(ExportLayout::kModelopt));
  EXPECT_EQ(hf["producer"]["name"], "m2fp4");
  const ojson& q = hf["quantization"];
  EXPECT_EQ(q["quant_algo"], "NVFP4");
  EXPECT_EQ(q["kv_cache_quant_algo"], "FP8");
  EXPECT_EQ(q["group_size"], 16);
  EXPECT_EQ(q["exclude_modules"].size(), 5u);
  // vLLM requires these keys (§6.1); key order as modelopt writes them.
  std::vector<std::string> keys;
  for (const auto& [k, v] : q.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"quant_algo", "kv_cache_quant_algo", "group_size",
                                            "exclude_modules"}));
  EXPECT_THROW(hf_quant_config_json(experts_only(ExportLayout::kCompressedTensors)), Error);
}

TEST(HfQuantConfig, ModeloptMxfp4FollowsProcessLayerQuantConfig) {
  QuantConfigInputs in = experts_only(ExportLayout::kModelopt);
  in.recipe = QuantRecipe::kMxfp4;
  const ojson q = hf_quant_config_json(in)["quantization"];
  EXPECT_EQ(q["quant_algo"], "mxfp4");
  EXPECT_TRUE(q["kv_cache_quant_algo"].is_null());
  EXPECT_FALSE(q.contains("group_size"));
  const ojson c = quantization_config_json(in);
  EXPECT_FALSE(c.contains("config_groups"));
  EXPECT_EQ(c["quant_method"], "modelopt");
}

TEST(QuantizationConfig, ModeloptIsTheConvertedHfQuantConfig) {
  const QuantConfigInputs in = experts_only(ExportLayout::kModelopt);
  const ojson c = quantization_config_json(in);
  const ojson spec = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"], spec);
  EXPECT_EQ(c["config_groups"]["group_0"]["input_activations"], spec);
  EXPECT_EQ(c["config_groups"]["group_0"]["targets"], ojson::array({"Linear"}));
  EXPECT_EQ(c["ignore"], hf_quant_config_json(in)["quantization"]["exclude_modules"]);
  EXPECT_EQ(c["quant_algo"], "NVFP4");
  EXPECT_EQ(c["kv_cache_scheme"], (ojson{{"dynamic", false}, {"num_bits", 8}, {"type", "float"}}));
  EXPECT_EQ(c["quant_method"], "modelopt");
  QuantConfigInputs no_kv = in;
  no_kv.recipe = QuantRecipe::kNvfp4;
  EXPECT_FALSE(quantization_config_json(no_kv).contains("kv_cache_scheme"));
}

TEST(QuantizationConfig, CompressedTensorsNvfp4) {
  QuantConfigInputs in = experts_only(ExportLayout::kCompressedTensors);
  in.recipe = QuantRecipe::kNvfp4;
  const ojson c = quantization_config_json(in);
  EXPECT_EQ(c["quant_method"], "compressed-tensors");
  EXPECT_EQ(c["format"], "nvfp4-pack-quantized");
  EXPECT_EQ(c["quantization_status"], "compressed");
  const ojson& g = c["config_groups"]["group_0"];
  EXPECT_EQ(g["targets"], ojson::array({"Linear"}));
  EXPECT_EQ(g["weights"]["strategy"], "tensor_group");
  EXPECT_EQ(g["weights"]["group_size"], 16);
  EXPECT_EQ(g["weights"]["dynamic"], false);
  EXPECT_EQ(g["weights"]["scale_dtype"], "torch.float8_e4m3fn");
  EXPECT_EQ(g["input_activations"]["dynamic"], "local");
  EXPECT_EQ(g["input_activations"]["num_bits"], 4);
  EXPECT_TRUE(c["kv_cache_scheme"].is_null());
  // compressed-tensors records every unquantized Linear by its exact name.
  EXPECT_EQ(c["ignore"], ojson(in.unquantized_modules));
}

TEST(QuantizationConfig, CompressedTensorsMxfp4AndMxfp4x16) {
  QuantConfigInputs in = experts_only(ExportLayout::kCompressedTensors);
  in.recipe = QuantRecipe::kMxfp4;
  ojson c = quantization_config_json(in);
  EXPECT_EQ(c["format"], "mxfp4-pack-quantized");
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["group_size"], 32);
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["scale_dtype"], "torch.uint8");
  EXPECT_TRUE(c["config_groups"]["group_0"]["input_activations"].is_null());
  EXPECT_TRUE(c["kv_cache_scheme"].is_null());

  in.recipe = QuantRecipe::kMxfp4x16;
  c = quantization_config_json(in);  // §6.3
  EXPECT_EQ(c["format"], "mxfp4_16");
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["group_size"], 16);
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["strategy"], "group");
  EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["scale_dtype"], "torch.float16");
  EXPECT_EQ(c["kv_cache_scheme"]["num_bits"], 8);
  EXPECT_EQ(c["kv_cache_scheme"]["type"], "float");
  EXPECT_EQ(c["kv_cache_scheme"]["strategy"], "tensor");
  EXPECT_EQ(c["kv_cache_scheme"]["dynamic"], false);
  in.layout = ExportLayout::kModelopt;
  const auto m = quantization_config_json(in);
  EXPECT_EQ(m["quant_method"], "modelopt");
  EXPECT_EQ(m["quant_algo"], "MXFP4_16");
  EXPECT_EQ(m["config_groups"]["group_0"]["weights"]["group_size"], 16);
  EXPECT_EQ(hf_quant_config_json(in)["quantization"]["group_size"], 16);
  EXPECT_EQ(hf_quant_config_json(in)["quantization"]["kv_cache_quant_algo"], "FP8");
}

}  // namespace
}  // namespace m2fp4
