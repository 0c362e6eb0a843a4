#include "model/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "io/checkpoint.h"
#include "numerics/bf16.h"
#include "quant/fp8.h"

namespace m2fp4 {
namespace {

// xoshiro256+ with a splitmix64 seed: fast, reproducible on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& s : state_) {
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      s = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t result = state_[0] + state_[3];
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = (state_[3] << 45) | (state_[3] >> 19);
    return result;
  }
  // Uniform in (0, 1).
  double uniform() {
    return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }
  // Standard normal (Box-Muller; both outputs used).
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double a = 6.283185307179586 * uniform();
    spare_ = static_cast<float>(r * std::sin(a));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(a));
  }

 private:
  uint64_t state_[4];
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

// What to generate for one tensor: values = mean + std * normal.
struct RandomTensor {
  std::string name;
  std::vector<int64_t> shape;
  float mean = 0.0f;
  float stddev = 1.0f;
  bool matrix_quantizable = false;  // becomes E4M3 + scales in an fp8 checkpoint
  bool keep_f32 = false;            // router gate and bias: F32 in every checkpoint
};

std::vector<RandomTensor> plan_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width(), I = c.intermediate_size;
  const float inv_h = 1.0f / std::sqrt(static_cast<float>(H));
  std::vector<RandomTensor> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, 0.0f, 1.0f, false, false});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {H}, 1.0f, 0.1f, false, false});
    t.push_back({p + "self_attn.q_proj.weight", {QW, H}, 0.0f, inv_h, true, false});
    t.push_back({p + "self_attn.k_proj.weight", {KW, H}, 0.0f, inv_h, true, false});
    t.push_back({p + "self_attn.v_proj.weight", {KW, H}, 0.0f, inv_h, true, false});
    t.push_back({p + "self_attn.o_proj.weight",
                 {H, QW},
                 0.0f,
                 1.0f / std::sqrt(static_cast<float>(QW)),
                 true,
                 false});
    t.push_back({p + "self_attn.q_norm.weight", {QW}, 1.0f, 0.1f, false, false});
    t.push_back({p + "self_attn.k_norm.weight", {KW}, 1.0f, 0.1f, false, false});
    t.push_back({p + "post_attention_layernorm.weight", {H}, 1.0f, 0.1f, false, false});
    const std::string moe = p + "block_sparse_moe.";
    t.push_back({moe + "gate.weight", {c.num_local_experts, H}, 0.0f, inv_h, false, true});
    t.push_back({moe + "e_score_correction_bias", {c.num_local_experts}, 0.0f, 0.1f, false, true});
    for (int64_t e = 0; e < c.num_local_experts; ++e) {
      const std::string ep = moe + "experts." + std::to_string(e) + ".";
      t.push_back({ep + "w1.weight", {I, H}, 0.0f, inv_h, true, false});
      t.push_back(
          {ep + "w2.weight", {H, I}, 0.0f, 1.0f / std::sqrt(static_cast<float>(I)), true, false});
      t.push_back({ep + "w3.weight", {I, H}, 0.0f, inv_h, true, false});
    }
  }
  t.push_back({"model.norm.weight", {H}, 1.0f, 0.1f, false, false});
  t.push_back({"lm_head.weight", {c.vocab_size, H}, 0.0f, inv_h, false, false});
  return t;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template <typename T>
std::span<const std::byte> as_bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

}  // namespace

CheckpointDType parse_checkpoint_dtype(const std::string& name) {
  if (name == "bf16") return CheckpointDType::kBF16;
  if (name == "f32") return CheckpointDType::kF32;
  if (name == "fp8") return CheckpointDType::kFp8;
  fail("unknown checkpoint dtype '", name, "' (expected bf16, f32 or fp8)");
}

ModelConfig preset_config(const std::string& preset) {
  ModelConfig c;
  if (preset == "tiny") {
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.rotary_dim = 8;
    c.num_local_experts = 8;
    c.num_experts_per_tok = 2;
    c.intermediate_size = 32;
    c.vocab_size = 512;
    c.max_position_embeddings = 4096;
  } else if (preset == "bench") {
    c.hidden_size = 1024;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 16;
    c.num_key_value_heads = 4;
    c.head_dim = 64;
    c.rotary_dim = 32;
    c.num_local_experts = 64;
    c.num_experts_per_tok = 8;
    c.intermediate_size = 512;
    c.vocab_size = 32768;
    c.max_position_embeddings = 32768;
  } else if (preset == "wide") {
    // The released model's widths (architecture spec, config table) with 4 layers and 32
    // experts, so the matrices are as large as the real ones and it fits here (~6 GB BF16).
    c.hidden_size = 3072;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 48;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.rotary_dim = 64;
    c.num_local_experts = 32;
    c.num_experts_per_tok = 8;
    c.intermediate_size = 1536;
    c.vocab_size = 200064;
    c.max_position_embeddings = 196608;
  } else {
    fail("unknown preset '", preset, "' (expected tiny, bench or wide)");
  }
  c.attn_type_list.assign(static_cast<size_t>(c.num_hidden_layers), 1);
  c.use_mtp = true;
  c.num_mtp_modules = 3;
  c.mtp_transformer_layers = 1;
  return c;
}

void write_random_checkpoint(const std::string& dir, const ModelConfig& config_in, uint64_t seed,
                             CheckpointDType dtype, uint64_t max_shard_bytes) {
  ModelConfig config = config_in;
  config.torch_dtype = dtype == CheckpointDType::kF32 ? "float32" : "bfloat16";
  if (dtype == CheckpointDType::kFp8) {
    config.quantization_config = {
        {"activation_scheme", "dynamic"},
        {"fmt", "float8_e4m3fn"},
        {"quant_method", "fp8"},
        {"weight_block_size", {128, 128}},
        {"modules_to_not_convert", {"gate", "e_score_correction_bias", "lm_head"}}};
  }
  std::filesystem::create_directories(dir);

  const std::vector<RandomTensor> plan = plan_tensors(config);
  std::vector<TensorSpec> specs;
  for (const RandomTensor& t : plan) {
    if (t.keep_f32 || dtype == CheckpointDType::kF32) {
      specs.push_back({t.name, DType::kF32, t.shape});
    } else if (dtype == CheckpointDType::kFp8 && t.matrix_quantizable) {
      specs.push_back({t.name, DType::kF8E4M3, t.shape});
      specs.push_back({t.name + "_scale_inv",
                       DType::kF32,
                       {(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128}});
    } else {
      specs.push_back({t.name, DType::kBF16, t.shape});
    }
  }

  CheckpointWriter writer(dir, specs, max_shard_bytes);
  Rng rng(seed);
  std::vector<float> values;
  std::vector<uint16_t> bf16;
  for (const RandomTensor& t : plan) {
    values.resize(static_cast<size_t>(numel(t.shape)));
    for (float& v : values) v = t.mean + t.stddev * rng.normal();
    if (t.keep_f32 || dtype == CheckpointDType::kF32) {
      writer.write(t.name, as_bytes(values));
    } else if (dtype == CheckpointDType::kFp8 && t.matrix_quantizable) {
      // The official release's convention (quant-formats.md §5): s = amax / 448 per 128x128
      // block, stored as weight_scale_inv (a multiplier despite the name).
      const Fp8Tensor fp8 =
          fp8_quantize(ConstMatrix::f32(values, t.shape[0], t.shape[1]), Fp8Options{});
      writer.write(t.name, as_bytes(fp8.codes));
      writer.write(t.name + "_scale_inv", as_bytes(fp8.scales));
    } else {
      bf16.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) bf16[i] = f32_to_bf16(values[i]);
      writer.write(t.name, as_bytes(bf16));
    }
  }
  writer.finish();
  write_file_atomic(dir + "/config.json", config.to_json().dump(2) + "\n");
}

}  // namespace m2fp4
