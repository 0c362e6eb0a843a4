#include "model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/file.h"

namespace m2fp4 {
namespace {

using ::testing::HasSubstr;

nlohmann::json golden_config() {
  return nlohmann::json::parse(
      read_text_file(std::string(M2FP4_SHARED_DIR) + "/golden/tiny-fp8/config.json"));
}

std::string error_of(const nlohmann::json& j) {
  try {
    ModelConfig::from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, ParsesEveryFieldOfTheGoldenConfig) {
  const ModelConfig c = ModelConfig::from_json(golden_config());
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rotary_dim, 8);
  EXPECT_EQ(c.rope_theta, 5000000.0);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.intermediate_size, 32);
  EXPECT_EQ(c.num_local_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_TRUE(c.use_routing_bias);
  EXPECT_TRUE(c.use_qk_norm);
  EXPECT_EQ(c.qk_norm_type, "per_layer");
  EXPECT_EQ(c.attn_type_list, (std::vector<int64_t>{1, 1}));
  EXPECT_TRUE(c.use_mtp);
  EXPECT_EQ(c.num_mtp_modules, 3);
  EXPECT_TRUE(c.fp8.present);
  EXPECT_EQ(c.fp8.modules_to_not_convert,
            (std::vector<std::string>{"gate", "e_score_correction_bias", "lm_head"}));
  EXPECT_EQ(c.q_width(), 64);
  EXPECT_EQ(c.kv_width(), 32);
}

TEST(ConfigTest, RoundTripsThroughJson) {
  const ModelConfig a = ModelConfig::from_json(golden_config());
  const ModelConfig b = ModelConfig::from_json(a.to_json());
  EXPECT_EQ(a.to_json(), b.to_json());
}

TEST(ConfigTest, RefusesOtherArchitecturesByName) {
  nlohmann::json j = golden_config();
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  EXPECT_THAT(error_of(j), HasSubstr("LlamaForCausalLM"));
}

TEST(ConfigTest, RefusesWhatTheForwardPassDoesNotImplement) {
  auto with = [](const char* key, nlohmann::json value) {
    nlohmann::json j = golden_config();
    j[key] = value;
    return error_of(j);
  };
  EXPECT_THAT(with("scoring_func", "softmax"), HasSubstr("scoring_func"));
  EXPECT_THAT(with("shared_intermediate_size", 128), HasSubstr("shared experts"));
  EXPECT_THAT(with("attn_type_list", {1, 0}), HasSubstr("linear"));
  EXPECT_THAT(with("qk_norm_type", "per_head"), HasSubstr("qk_norm_type"));
  EXPECT_THAT(with("partial_rotary_factor", 1.0), HasSubstr("partial_rotary_factor"));
  EXPECT_THAT(with("rope_scaling", {{"rope_type", "yarn"}}), HasSubstr("yarn"));
  EXPECT_THAT(with("num_key_value_heads", 3), HasSubstr("multiple"));
  nlohmann::json j = golden_config();
  j.erase("hidden_size");
  EXPECT_THAT(error_of(j), HasSubstr("hidden_size"));
  j = golden_config();
  j["quantization_config"]["weight_block_size"] = {64, 64};
  EXPECT_THAT(error_of(j), HasSubstr("weight_block_size"));
}

TEST(ConfigTest, AgreeingRotaryFactorIsAccepted) {
  nlohmann::json j = golden_config();
  j["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(error_of(j), "");
}

}  // namespace
}  // namespace m2fp4
