#include "model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/file.h"

namespace m2fp4 {
namespace {

using ::testing::AllOf;
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

// Widths whose products the model forms (weights, KV cache) used to overflow int64 silently
// (undefined behaviour); each is refused naming the fields.
TEST(ConfigTest, WidthsWhoseProductsOverflowAreRefused) {
  auto with = [](std::initializer_list<std::pair<const char*, int64_t>> fields) {
    nlohmann::json j = golden_config();
    j.erase("quantization_config");
    for (const auto& [key, value] : fields) j[key] = value;
    return error_of(j);
  };
  EXPECT_THAT(with({{"hidden_size", int64_t{1} << 40}}), HasSubstr("'hidden_size' is"));
  EXPECT_THAT(with({{"vocab_size", int64_t{1} << 31},
                    {"hidden_size", int64_t{1} << 31},
                    {"intermediate_size", int64_t{1} << 31}}),
              HasSubstr("overflows"));
  // Each width is allowed, their product over layers x experts x intermediate x hidden is not.
  EXPECT_THAT(with({{"num_hidden_layers", 1 << 20},
                    {"num_local_experts", 1 << 20},
                    {"intermediate_size", 1 << 20},
                    {"hidden_size", 64}}),
              AllOf(HasSubstr("num_hidden_layers x num_local_experts x intermediate_size"),
                    HasSubstr("overflows a 64-bit integer")));
  EXPECT_THAT(with({{"max_position_embeddings", int64_t{1} << 31}, {"num_hidden_layers", 1 << 30}}),
              HasSubstr("max_position_embeddings"));
  EXPECT_THAT(with({{"head_dim", 0}}), HasSubstr("'head_dim' must be positive"));
  nlohmann::json j = golden_config();
  j.erase("head_dim");
  j["hidden_size"] = 2;  // fewer than the 4 heads: head_dim would be 0
  EXPECT_THAT(error_of(j), HasSubstr("smaller than num_attention_heads"));
  j = golden_config();
  j["vocab_size"] = nlohmann::json::parse("18446744073709551615");
  EXPECT_THAT(error_of(j), HasSubstr("too large"));
}

// Fields of the wrong JSON type used to escape as nlohmann::type_error (or, for a float where an
// integer belongs, convert out of range: undefined behaviour). Each is an Error naming the key.
TEST(ConfigTest, WrongJsonTypesAreErrorsNamingTheField) {
  auto with = [](const char* key, const nlohmann::json& value) {
    nlohmann::json j = golden_config();
    j[key] = value;
    return error_of(j);
  };
  EXPECT_THAT(with("rope_scaling", "yarn"), HasSubstr("'rope_scaling' must be an object"));
  EXPECT_THAT(with("rope_scaling", {{"rope_type", 3}}), HasSubstr("'rope_type' must be a string"));
  EXPECT_THAT(with("attn_type_list", {"1", 1}), HasSubstr("attn_type_list holds a string"));
  EXPECT_THAT(with("attn_type_list", {1e300}), HasSubstr("attn_type_list holds a number"));
  EXPECT_THAT(with("max_position_embeddings", 1e300),
              HasSubstr("'max_position_embeddings' must be an integer"));
  EXPECT_THAT(with("rms_norm_eps", 1e300), HasSubstr("rms_norm_eps"));
  EXPECT_THAT(with("rms_norm_eps", "small"), HasSubstr("'rms_norm_eps' must be a number"));
  EXPECT_THAT(with("use_qk_norm", "yes"), HasSubstr("'use_qk_norm' must be true or false"));
  EXPECT_THAT(with("model_type", 5), HasSubstr("'model_type' must be a string"));
  EXPECT_THAT(with("eos_token_id", {"2"}), HasSubstr("'eos_token_id' must be an integer"));
  EXPECT_THAT(with("quantization_config", "fp8"),
              HasSubstr("'quantization_config' must be an object"));
  nlohmann::json j = golden_config();
  j["quantization_config"]["fmt"] = 8;
  EXPECT_THAT(error_of(j), HasSubstr("'fmt' must be a string"));
  j = golden_config();
  j["quantization_config"]["weight_block_size"] = {128.5, 1e300};
  EXPECT_THAT(error_of(j), HasSubstr("weight_block_size must hold two integers"));
  j = golden_config();
  j["quantization_config"]["quant_method"] = nlohmann::json::array();
  EXPECT_THAT(error_of(j), HasSubstr("'quant_method' must be a string"));
}

TEST(ConfigTest, FromJsonTextChecksSyntaxAndNesting) {
  const std::string golden =
      read_text_file(std::string(M2FP4_SHARED_DIR) + "/golden/tiny-fp8/config.json");
  EXPECT_EQ(ModelConfig::from_json_text(golden).to_json(),
            ModelConfig::from_json(golden_config()).to_json());
  EXPECT_THAT([] { ModelConfig::from_json_text("{"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("config.json: not valid JSON")));
  const std::string deep = R"({"a":)" + std::string(50'000, '[') + std::string(50'000, ']') + "}";
  EXPECT_THAT([&] { ModelConfig::from_json_text(deep); },
              ::testing::ThrowsMessage<Error>(HasSubstr("config.json: JSON nested 50001 levels")));
}

}  // namespace
}  // namespace m2fp4
