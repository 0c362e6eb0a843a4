// MiniMax-M2 configuration (config.json of a MiniMaxM2ForCausalLM checkpoint).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace m2fp4 {

// quantization_config of the official FP8 release (quant_method "fp8", 128x128 blocks).
struct Fp8BlockQuantConfig {
  bool present = false;
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  std::vector<std::string> modules_to_not_convert;
};

struct ModelConfig {
  std::string architecture = "MiniMaxM2ForCausalLM";
  std::string model_type = "minimax_m2";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;
  double rope_theta = 5000000.0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool use_qk_norm = true;
  std::string qk_norm_type = "per_layer";
  std::string hidden_act = "silu";
  int64_t intermediate_size = 0;
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  std::string scoring_func = "sigmoid";
  bool use_routing_bias = true;
  int64_t shared_intermediate_size = 0;
  std::vector<int64_t> attn_type_list;
  bool tie_word_embeddings = false;
  bool use_mtp = false;
  int64_t num_mtp_modules = 0;
  int64_t mtp_transformer_layers = 0;
  std::string torch_dtype = "bfloat16";
  int64_t bos_token_id = -1;  // -1: not given in config.json
  int64_t eos_token_id = -1;
  Fp8BlockQuantConfig fp8;
  nlohmann::json quantization_config;  // raw, for layers above (quant formats)

  int64_t q_width() const { return num_attention_heads * head_dim; }
  int64_t kv_width() const { return num_key_value_heads * head_dim; }

  // Parses and validates; refuses other architectures by name and features the forward pass
  // does not implement (shared experts, non-sigmoid scoring, linear attention layers, ...).
  // Widths above 2^31 and products of widths that overflow int64 are refused, and a field of
  // the wrong JSON type is an m2fp4::Error naming it.
  static ModelConfig from_json(const nlohmann::json& json);
  // From the text of a config.json (nested at most kMaxJsonDepth deep).
  static ModelConfig from_json_text(std::string_view text);
  nlohmann::json to_json() const;

 private:
  static ModelConfig parse(const nlohmann::json& json);
};

}  // namespace m2fp4
