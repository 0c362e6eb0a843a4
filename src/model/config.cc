#include "model/config.h"

#include <cmath>
#include <limits>
#include <utility>

#include "base/error.h"
#include "base/json_depth.h"

namespace m2fp4 {
namespace {

using nlohmann::json;

// The largest width config.json may give: far above any real model (vocab ~200k, hidden ~8k),
// small enough that the products the model forms from a few widths fit in int64.
constexpr int64_t kMaxWidth = int64_t{1} << 31;

const char* type_of(const json& j) {
  return j.type_name();
}

int64_t require_int(const json& j, const char* key) {
  M2_CHECK(j.contains(key), "config.json: missing required field '", key, "'");
  M2_CHECK(j[key].is_number_integer(), "config.json: field '", key, "' must be an integer, got ",
           type_of(j[key]));
  M2_CHECK(
      !j[key].is_number_unsigned() || j[key].get<uint64_t>() <= static_cast<uint64_t>(kMaxWidth),
      "config.json: field '", key, "' is too large (limit ", kMaxWidth, ")");
  const int64_t v = j[key].get<int64_t>();
  M2_CHECK(v > 0, "config.json: field '", key, "' must be positive, got ", v);
  M2_CHECK(v <= kMaxWidth, "config.json: field '", key, "' is ", v, ", too large (limit ",
           kMaxWidth, ")");
  return v;
}

// Optional fields: absent or null gives the fallback; a value of another JSON type is an error
// naming the key (never a nlohmann type_error, never a float converted out of range).
int64_t int_or(const json& j, const char* key, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  M2_CHECK(v.is_number_integer(), "config.json: field '", key, "' must be an integer, got ",
           type_of(v));
  M2_CHECK(!v.is_number_unsigned() ||
               v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
           "config.json: field '", key, "' is too large");
  return v.get<int64_t>();
}

double number_or(const json& j, const char* key, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  M2_CHECK(j[key].is_number(), "config.json: field '", key, "' must be a number, got ",
           type_of(j[key]));
  return j[key].get<double>();
}

bool bool_or(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  M2_CHECK(j[key].is_boolean(), "config.json: field '", key, "' must be true or false, got ",
           type_of(j[key]));
  return j[key].get<bool>();
}

std::string string_or(const json& j, const char* key, const std::string& fallback) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  M2_CHECK(j[key].is_string(), "config.json: field '", key, "' must be a string, got ",
           type_of(j[key]));
  return j[key].get<std::string>();
}

// bos/eos may be an int or a list of ints (take the first).
int64_t token_id_or(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  const json& v = j[key];
  const json& id = v.is_array() && !v.empty() ? v[0] : v;
  M2_CHECK(id.is_number_integer() &&
               (!id.is_number_unsigned() ||
                id.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())),
           "config.json: field '", key, "' must be an integer or a list of integers");
  return id.get<int64_t>();
}

// a * b * ... for the named widths, or an Error naming them when the product leaves int64.
int64_t checked_product(std::initializer_list<std::pair<const char*, int64_t>> factors) {
  int64_t product = 1;
  std::string names;
  for (const auto& [name, value] : factors) {
    names += names.empty() ? name : str_cat(" x ", name);
    M2_CHECK(!__builtin_mul_overflow(product, value, &product), "config.json: ", names,
             " overflows a 64-bit integer");
  }
  return product;
}

}  // namespace

ModelConfig ModelConfig::from_json_text(std::string_view text) {
  check_json_depth(text, "config.json");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("config.json: not valid JSON: ", e.what());
  }
  return from_json(j);
}

ModelConfig ModelConfig::from_json(const json& j) {
  try {
    return parse(j);
  } catch (const json::exception& e) {
    // Every field is read through the checked helpers above; this keeps a missed one a clear
    // error too.
    fail("config.json: a field has the wrong JSON type (", e.what(), ")");
  }
}

ModelConfig ModelConfig::parse(const json& j) {
  M2_CHECK(j.is_object(), "config.json: not a JSON object");
  ModelConfig c;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  }
  const std::string model_type = string_or(j, "model_type", "");
  if (arch != "MiniMaxM2ForCausalLM" && model_type != "minimax_m2") {
    fail("config.json: architecture '", arch.empty() ? model_type : arch,
         "' is not supported (m2fp4 runs MiniMaxM2ForCausalLM / model_type minimax_m2)");
  }
  c.architecture = arch.empty() ? "MiniMaxM2ForCausalLM" : arch;
  c.model_type = model_type.empty() ? "minimax_m2" : model_type;

  c.vocab_size = require_int(j, "vocab_size");
  c.hidden_size = require_int(j, "hidden_size");
  c.num_hidden_layers = require_int(j, "num_hidden_layers");
  c.num_attention_heads = require_int(j, "num_attention_heads");
  c.num_key_value_heads = require_int(j, "num_key_value_heads");
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null()
                   ? require_int(j, "head_dim")
                   : c.hidden_size / c.num_attention_heads;
  M2_CHECK(c.head_dim > 0, "config.json: hidden_size ", c.hidden_size,
           " is smaller than num_attention_heads ", c.num_attention_heads,
           " and no head_dim is given");
  c.intermediate_size = require_int(j, "intermediate_size");
  c.num_local_experts = require_int(j, "num_local_experts");
  c.num_experts_per_tok = require_int(j, "num_experts_per_tok");
  c.max_position_embeddings = int_or(j, "max_position_embeddings", 0);
  M2_CHECK(c.max_position_embeddings >= 0 && c.max_position_embeddings <= kMaxWidth,
           "config.json: max_position_embeddings ", c.max_position_embeddings, " is out of range");
  const double eps = number_or(j, "rms_norm_eps", 1e-6);
  M2_CHECK(eps > 0.0 && eps < 1.0, "config.json: rms_norm_eps ", eps, " is out of range (0, 1)");
  c.rms_norm_eps = static_cast<float>(eps);
  M2_CHECK(c.rms_norm_eps > 0.0f, "config.json: rms_norm_eps ", eps, " is too small for float32");
  c.use_qk_norm = bool_or(j, "use_qk_norm", true);
  c.qk_norm_type = string_or(j, "qk_norm_type", "per_layer");
  c.hidden_act = string_or(j, "hidden_act", "silu");
  c.scoring_func = string_or(j, "scoring_func", "sigmoid");
  c.use_routing_bias = bool_or(j, "use_routing_bias", true);
  c.shared_intermediate_size = int_or(j, "shared_intermediate_size", 0);
  c.tie_word_embeddings = bool_or(j, "tie_word_embeddings", false);
  c.use_mtp = bool_or(j, "use_mtp", false);
  c.num_mtp_modules = int_or(j, "num_mtp_modules", 0);
  c.mtp_transformer_layers = int_or(j, "mtp_transformer_layers", 0);
  c.torch_dtype = string_or(j, "torch_dtype", string_or(j, "dtype", "bfloat16"));
  c.bos_token_id = token_id_or(j, "bos_token_id");
  c.eos_token_id = token_id_or(j, "eos_token_id");

  // The products the model forms from these widths (weights, KV cache) must fit in int64.
  checked_product({{"num_attention_heads", c.num_attention_heads}, {"head_dim", c.head_dim}});
  checked_product({{"num_key_value_heads", c.num_key_value_heads}, {"head_dim", c.head_dim}});
  checked_product({{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size}});
  checked_product({{"num_attention_heads", c.num_attention_heads},
                   {"head_dim", c.head_dim},
                   {"hidden_size", c.hidden_size}});
  checked_product({{"num_hidden_layers", c.num_hidden_layers},
                   {"num_local_experts", c.num_local_experts},
                   {"intermediate_size", c.intermediate_size},
                   {"hidden_size", c.hidden_size},
                   {"bytes per weight (4)", 4}});
  checked_product({{"num_hidden_layers", c.num_hidden_layers},
                   {"max_position_embeddings", std::max<int64_t>(c.max_position_embeddings, 1)},
                   {"num_key_value_heads", c.num_key_value_heads},
                   {"head_dim", c.head_dim},
                   {"bytes per cache entry (8)", 8}});

  // RoPE: plain (no scaling); theta top-level or in rope_parameters (transformers v5).
  const json* rope_params = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rope_params = &j["rope_parameters"];
  }
  c.rope_theta = number_or(j, "rope_theta", 5000000.0);
  if (rope_params && rope_params->contains("rope_theta")) {
    c.rope_theta = number_or(*rope_params, "rope_theta", c.rope_theta);
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& scaling = j["rope_scaling"];
    M2_CHECK(scaling.is_object(), "config.json: field 'rope_scaling' must be an object, got ",
             type_of(scaling));
    const std::string type = string_or(scaling, "rope_type", string_or(scaling, "type", "default"));
    M2_CHECK(type == "default", "config.json: rope scaling '", type,
             "' is not supported (MiniMax-M2 uses plain RoPE)");
  }
  c.rotary_dim = j.contains("rotary_dim") && !j["rotary_dim"].is_null()
                     ? require_int(j, "rotary_dim")
                     : c.head_dim / 2;
  double factor = number_or(j, "partial_rotary_factor", -1.0);
  if (rope_params && rope_params->contains("partial_rotary_factor")) {
    factor = number_or(*rope_params, "partial_rotary_factor", -1.0);
  }
  if (factor > 0.0) {
    const double implied = static_cast<double>(c.rotary_dim) / static_cast<double>(c.head_dim);
    M2_CHECK(std::fabs(factor - implied) < 1e-9, "config.json: partial_rotary_factor ", factor,
             " disagrees with rotary_dim / head_dim = ", implied);
  }

  if (j.contains("attn_type_list") && j["attn_type_list"].is_array()) {
    for (const auto& t : j["attn_type_list"]) {
      M2_CHECK(t.is_number_integer(), "config.json: attn_type_list holds a ", type_of(t),
               ", not an integer");
      c.attn_type_list.push_back(t.get<int64_t>());
    }
  }

  // Features this forward pass implements; anything else is refused by name.
  M2_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, "config.json: num_attention_heads ",
           c.num_attention_heads, " is not a multiple of num_key_value_heads ",
           c.num_key_value_heads);
  M2_CHECK(c.rotary_dim % 2 == 0 && c.rotary_dim <= c.head_dim, "config.json: rotary_dim ",
           c.rotary_dim, " must be even and at most head_dim ", c.head_dim);
  M2_CHECK(c.num_experts_per_tok <= c.num_local_experts, "config.json: num_experts_per_tok ",
           c.num_experts_per_tok, " exceeds num_local_experts ", c.num_local_experts);
  M2_CHECK(c.scoring_func == "sigmoid", "config.json: scoring_func '", c.scoring_func,
           "' is not supported (MiniMax-M2 uses sigmoid)");
  M2_CHECK(c.hidden_act == "silu", "config.json: hidden_act '", c.hidden_act,
           "' is not supported (MiniMax-M2 uses silu)");
  M2_CHECK(c.shared_intermediate_size == 0,
           "config.json: shared experts (shared_intermediate_size > 0) are not supported");
  M2_CHECK(!c.use_qk_norm || c.qk_norm_type == "per_layer", "config.json: qk_norm_type '",
           c.qk_norm_type, "' is not supported (MiniMax-M2 uses per_layer)");
  for (int64_t t : c.attn_type_list) {
    M2_CHECK(t == 1, "config.json: attn_type_list has type ", t,
             " (linear/lightning attention is MiniMax-01, not supported)");
  }
  M2_CHECK(c.attn_type_list.empty() ||
               static_cast<int64_t>(c.attn_type_list.size()) >= c.num_hidden_layers,
           "config.json: attn_type_list is shorter than num_hidden_layers");
  if (j.contains("sliding_window") && !j["sliding_window"].is_null()) {
    fail("config.json: sliding_window is not supported (MiniMax-M2 has full attention)");
  }

  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    c.quantization_config = j["quantization_config"];
    const json& q = c.quantization_config;
    M2_CHECK(q.is_object(), "config.json: field 'quantization_config' must be an object, got ",
             type_of(q));
    const std::string method = string_or(q, "quant_method", "");
    if (method == "fp8") {
      c.fp8.present = true;
      const std::string fmt = string_or(q, "fmt", "float8_e4m3fn");
      M2_CHECK(fmt == "float8_e4m3fn" || fmt == "e4m3", "config.json: fp8 fmt '", fmt,
               "' is not supported");
      if (q.contains("weight_block_size") && q["weight_block_size"].is_array() &&
          q["weight_block_size"].size() == 2) {
        const json& block = q["weight_block_size"];
        M2_CHECK(block[0].is_number_integer() && block[1].is_number_integer(),
                 "config.json: quantization_config.weight_block_size must hold two integers");
        c.fp8.block_rows = block[0].get<int64_t>();
        c.fp8.block_cols = block[1].get<int64_t>();
      }
      M2_CHECK(c.fp8.block_rows == 128 && c.fp8.block_cols == 128,
               "config.json: fp8 weight_block_size [", c.fp8.block_rows, ", ", c.fp8.block_cols,
               "] is not supported (expected [128, 128])");
      if (q.contains("modules_to_not_convert") && q["modules_to_not_convert"].is_array()) {
        for (const auto& m : q["modules_to_not_convert"]) {
          if (m.is_string()) c.fp8.modules_to_not_convert.push_back(m.get<std::string>());
        }
      }
    }
  }
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["attn_type_list"] = attn_type_list.empty()
                            ? json(std::vector<int64_t>(static_cast<size_t>(num_hidden_layers), 1))
                            : json(attn_type_list);
  j["head_dim"] = head_dim;
  j["hidden_act"] = hidden_act;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["mtp_transformer_layers"] = mtp_transformer_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_key_value_heads"] = num_key_value_heads;
  j["num_local_experts"] = num_local_experts;
  j["num_mtp_modules"] = num_mtp_modules;
  j["qk_norm_type"] = qk_norm_type;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["rotary_dim"] = rotary_dim;
  j["router_aux_loss_coef"] = 0.001;
  j["router_jitter_noise"] = 0.0;
  j["scoring_func"] = scoring_func;
  j["shared_intermediate_size"] = shared_intermediate_size;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j["use_cache"] = true;
  j["use_mtp"] = use_mtp;
  j["use_qk_norm"] = use_qk_norm;
  j["use_routing_bias"] = use_routing_bias;
  j["vocab_size"] = vocab_size;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  if (!quantization_config.is_null()) j["quantization_config"] = quantization_config;
  return j;
}

}  // namespace m2fp4
