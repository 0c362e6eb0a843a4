#include "model/weights.h"

#include <cstring>

#include "base/error.h"
#include "model/quantized_weights.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_shape(const TensorView& t, const std::vector<int64_t>& want) {
  M2_CHECK(t.shape() == want, "tensor ", t.name(), " has shape ", shape_str(t.shape()),
           ", expected ", shape_str(want));
}

// Any float vector tensor (norm weights, bias) to f32.
std::vector<float> load_vector(const Checkpoint& ckpt, const std::string& name, int64_t n) {
  const TensorView t = ckpt.tensor(name);
  check_shape(t, {n});
  std::vector<float> out(static_cast<size_t>(n));
  switch (t.dtype()) {
    case DType::kF32:
      std::memcpy(out.data(), t.data, static_cast<size_t>(n) * 4);
      break;
    case DType::kBF16:
    case DType::kF16: {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, t.data + 2 * i, 2);
        out[i] = t.dtype() == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
      }
      break;
    }
    default:
      fail("tensor ", name, " has dtype ", dtype_name(t.dtype()), ", expected F32, BF16 or F16");
  }
  return out;
}

class Loader {
 public:
  Loader(const Checkpoint& ckpt, std::vector<std::unique_ptr<std::vector<float>>>& owned)
      : ckpt_(ckpt), owned_(owned) {}

  // A linear weight [rows, cols]: F32/BF16/F16 as is, F8_E4M3 with its weight_scale_inv, or one
  // of the 4-bit layouts (quantized_weights.h).
  Weight matrix(const std::string& name, int64_t rows, int64_t cols, bool allow_fp8 = true) {
    Weight w;
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    if (load_four_bit_linear(ckpt_, module, rows, cols, w)) return w;
    const TensorView t = ckpt_.tensor(name);
    check_shape(t, {rows, cols});
    w.rows = rows;
    w.cols = cols;
    w.data = t.data;
    switch (t.dtype()) {
      case DType::kF32:
        w.format = WeightFormat::kF32;
        break;
      case DType::kBF16:
        w.format = WeightFormat::kBF16;
        break;
      case DType::kF16:
        w.format = WeightFormat::kF16;
        break;
      case DType::kF8E4M3: {
        M2_CHECK(allow_fp8, "tensor ", name, " is F8_E4M3 but this module is never quantized");
        w.format = WeightFormat::kFp8Block128;
        w.scale_cols = (cols + 127) / 128;
        const int64_t scale_rows = (rows + 127) / 128;
        // weight_scale_inv (the MiniMax / DeepSeek release), or weight_scale
        // (compressed-tensors' float-quantized block format); both multiply.
        std::string scale_name = name + "_scale_inv";
        if (!ckpt_.has(scale_name) && ckpt_.has(name + "_scale")) scale_name = name + "_scale";
        M2_CHECK(ckpt_.has(scale_name), "tensor ", name, " is F8_E4M3 but ", scale_name,
                 " is missing");
        const TensorView s = ckpt_.tensor(scale_name);
        check_shape(s, {scale_rows, w.scale_cols});
        auto scales =
            std::make_unique<std::vector<float>>(static_cast<size_t>(scale_rows * w.scale_cols));
        for (int64_t i = 0; i < scale_rows * w.scale_cols; ++i) {
          if (s.dtype() == DType::kF32) {
            std::memcpy(&(*scales)[i], s.data + 4 * i, 4);
          } else if (s.dtype() == DType::kBF16) {
            uint16_t bits;
            std::memcpy(&bits, s.data + 2 * i, 2);
            (*scales)[i] = bf16_to_f32(bits);
          } else {
            fail("tensor ", scale_name, " has dtype ", dtype_name(s.dtype()),
                 ", expected F32 or BF16");
          }
        }
        w.block_scale = scales->data();
        owned_.push_back(std::move(scales));
        break;
      }
      default:
        fail("tensor ", name, " has dtype ", dtype_name(t.dtype()),
             ", expected F32, BF16, F16 or F8_E4M3");
    }
    return w;
  }

  std::vector<float> vec(const std::string& name, int64_t n) { return load_vector(ckpt_, name, n); }

 private:
  const Checkpoint& ckpt_;
  std::vector<std::unique_ptr<std::vector<float>>>& owned_;
};

}  // namespace

LayerWeights LayerWeights::load(const Checkpoint& ckpt, const ModelConfig& c, int64_t l) {
  LayerWeights L;
  Loader load(ckpt, L.owned_f32);
  const int64_t H = c.hidden_size;
  const std::string p = "model.layers." + std::to_string(l) + ".";
  L.input_norm = load.vec(p + "input_layernorm.weight", H);
  L.post_attention_norm = load.vec(p + "post_attention_layernorm.weight", H);
  L.q_proj = load.matrix(p + "self_attn.q_proj.weight", c.q_width(), H);
  L.k_proj = load.matrix(p + "self_attn.k_proj.weight", c.kv_width(), H);
  L.v_proj = load.matrix(p + "self_attn.v_proj.weight", c.kv_width(), H);
  L.o_proj = load.matrix(p + "self_attn.o_proj.weight", H, c.q_width());
  if (c.use_qk_norm) {
    L.q_norm = load.vec(p + "self_attn.q_norm.weight", c.q_width());
    L.k_norm = load.vec(p + "self_attn.k_norm.weight", c.kv_width());
  }
  load_kv_scales(ckpt, l, L.k_scale, L.v_scale);
  const std::string moe = p + "block_sparse_moe.";
  L.router_gate = load.matrix(moe + "gate.weight", c.num_local_experts, H, false);
  if (c.use_routing_bias) {
    L.router_bias = load.vec(moe + "e_score_correction_bias", c.num_local_experts);
  }
  L.experts.resize(static_cast<size_t>(c.num_local_experts));
  for (int64_t e = 0; e < c.num_local_experts; ++e) {
    const std::string ep = moe + "experts." + std::to_string(e) + ".";
    L.experts[e].w1 = load.matrix(ep + "w1.weight", c.intermediate_size, H);
    L.experts[e].w3 = load.matrix(ep + "w3.weight", c.intermediate_size, H);
    L.experts[e].w2 = load.matrix(ep + "w2.weight", H, c.intermediate_size);
  }
  return L;
}

ModelWeights ModelWeights::load(const Checkpoint& ckpt, const ModelConfig& c) {
  ModelWeights mw;
  Loader load(ckpt, mw.owned_f32);
  const int64_t H = c.hidden_size;
  mw.embed_tokens = load.matrix("model.embed_tokens.weight", c.vocab_size, H, false);
  mw.final_norm = load.vec("model.norm.weight", H);
  if (c.tie_word_embeddings && !ckpt.has("lm_head.weight")) {
    mw.lm_head = mw.embed_tokens;
  } else {
    mw.lm_head = load.matrix("lm_head.weight", c.vocab_size, H);  // `quantize --lm-head fp8`
  }
  // Layers 0..num_hidden_layers-1 only: MTP modules stored as later layers are ignored.
  mw.layers.reserve(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    mw.layers.push_back(LayerWeights::load(ckpt, c, l));
  }
  return mw;
}

int64_t ModelWeights::active_bytes_per_token(const ModelConfig& c) const {
  int64_t bytes = lm_head.nbytes() + embed_tokens.nbytes() / c.vocab_size;
  for (const LayerWeights& L : layers) {
    bytes += L.q_proj.nbytes() + L.k_proj.nbytes() + L.v_proj.nbytes() + L.o_proj.nbytes();
    bytes += L.router_gate.nbytes();
    if (!L.experts.empty()) {
      const ExpertWeights& e = L.experts[0];
      bytes += c.num_experts_per_tok * (e.w1.nbytes() + e.w3.nbytes() + e.w2.nbytes());
    }
  }
  return bytes;
}

int64_t ModelWeights::total_bytes() const {
  int64_t bytes =
      embed_tokens.nbytes() + (lm_head.data == embed_tokens.data ? 0 : lm_head.nbytes());
  for (const LayerWeights& L : layers) {
    bytes += L.q_proj.nbytes() + L.k_proj.nbytes() + L.v_proj.nbytes() + L.o_proj.nbytes();
    bytes += L.router_gate.nbytes();
    for (const ExpertWeights& e : L.experts) bytes += e.w1.nbytes() + e.w3.nbytes() + e.w2.nbytes();
  }
  return bytes;
}

}  // namespace m2fp4
