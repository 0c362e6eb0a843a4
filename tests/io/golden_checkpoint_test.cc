// Reading the shared golden checkpoints (written by the independent Python reference): every
// tensor the architecture spec (minimax-m2-architecture.md, section 3) names, scaled to the
// tiny config.json, is present with the spec's dtype and shape, and nothing else is.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "io/checkpoint.h"

namespace m2fp4 {
namespace {

struct Expected {
  DType dtype;
  std::vector<int64_t> shape;
};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The section-3 table for a config; fp8 adds F8_E4M3 projections with F32 128x128 block scales.
std::map<std::string, Expected> expected_tensors(const nlohmann::json& config, bool fp8) {
  const int64_t hidden = config.at("hidden_size");
  const int64_t heads = config.at("num_attention_heads");
  const int64_t kv_heads = config.at("num_key_value_heads");
  const int64_t head_dim = config.at("head_dim");
  const int64_t inter = config.at("intermediate_size");
  const int64_t experts = config.at("num_local_experts");
  const int64_t vocab = config.at("vocab_size");
  const int64_t layers = config.at("num_hidden_layers");

  std::map<std::string, Expected> out;
  const auto projection = [&](const std::string& name, int64_t rows, int64_t cols) {
    if (!fp8) {
      out[name] = {DType::kBF16, {rows, cols}};
      return;
    }
    out[name] = {DType::kF8E4M3, {rows, cols}};
    out[name + "_scale_inv"] = {DType::kF32, {ceil_div(rows, 128), ceil_div(cols, 128)}};
  };
  out["model.embed_tokens.weight"] = {DType::kBF16, {vocab, hidden}};
  out["model.norm.weight"] = {DType::kBF16, {hidden}};
  out["lm_head.weight"] = {DType::kBF16, {vocab, hidden}};
  for (int64_t n = 0; n < layers; ++n) {
    const std::string layer = "model.layers." + std::to_string(n) + ".";
    out[layer + "input_layernorm.weight"] = {DType::kBF16, {hidden}};
    out[layer + "post_attention_layernorm.weight"] = {DType::kBF16, {hidden}};
    projection(layer + "self_attn.q_proj.weight", heads * head_dim, hidden);
    projection(layer + "self_attn.k_proj.weight", kv_heads * head_dim, hidden);
    projection(layer + "self_attn.v_proj.weight", kv_heads * head_dim, hidden);
    projection(layer + "self_attn.o_proj.weight", hidden, heads * head_dim);
    out[layer + "self_attn.q_norm.weight"] = {DType::kBF16, {heads * head_dim}};
    out[layer + "self_attn.k_norm.weight"] = {DType::kBF16, {kv_heads * head_dim}};
    out[layer + "block_sparse_moe.gate.weight"] = {DType::kF32, {experts, hidden}};
    out[layer + "block_sparse_moe.e_score_correction_bias"] = {DType::kF32, {experts}};
    for (int64_t e = 0; e < experts; ++e) {
      const std::string expert = layer + "block_sparse_moe.experts." + std::to_string(e) + ".";
      projection(expert + "w1.weight", inter, hidden);
      projection(expert + "w3.weight", inter, hidden);
      projection(expert + "w2.weight", hidden, inter);
    }
  }
  return out;
}

class GoldenCheckpoint : public ::testing::TestWithParam<std::tuple<const char*, bool, LoadMode>> {
};

TEST_P(GoldenCheckpoint, TensorsMatchTheArchitectureSpec) {
  const auto [folder, fp8, mode] = GetParam();
  const std::string dir = std::string(M2FP4_SHARED_DIR) + "/golden/" + folder;
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors")) << dir;

  const Checkpoint ckpt = Checkpoint::open(dir, mode);
  ASSERT_TRUE(ckpt.has_config());
  EXPECT_EQ(ckpt.config().at("model_type"), "minimax_m2");
  EXPECT_EQ(ckpt.config().contains("quantization_config"), fp8);
  EXPECT_EQ(ckpt.shards().size(), 1u);

  const std::map<std::string, Expected> expected = expected_tensors(ckpt.config(), fp8);
  std::vector<std::string> expected_names;
  for (const auto& [name, e] : expected) expected_names.push_back(name);
  EXPECT_EQ(ckpt.names(), expected_names);  // both sorted
  // Tiny config: 3 + 2 layers x (10 + 8 experts x 3) tensors, plus a scale per FP8 weight.
  EXPECT_EQ(expected.size(), fp8 ? 127u : 71u);

  uint64_t total = 0;
  for (const auto& [name, e] : expected) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(ckpt.has(name));
    const TensorView v = ckpt.tensor(name);
    EXPECT_EQ(dtype_name(v.dtype()), dtype_name(e.dtype));
    EXPECT_EQ(v.shape(), e.shape);
    total += v.nbytes();
  }
  EXPECT_EQ(ckpt.total_bytes(), total);
  // The metadata transformers writes.
  EXPECT_EQ(ckpt.shards()[0]->metadata().at("format"), "pt");

  // A block scale multiplies E4M3 codes (|code| <= 448) into weights: a positive finite number.
  if (fp8) {
    const TensorView scale =
        ckpt.tensor("model.layers.1.block_sparse_moe.experts.7.w2.weight_scale_inv");
    float s = 0;
    std::memcpy(&s, scale.data, 4);
    EXPECT_TRUE(std::isfinite(s) && s > 0) << s;
  }
  // Random-init weights are not all zero bytes (the data offsets point at real data).
  const TensorView embed = ckpt.tensor("model.embed_tokens.weight");
  size_t nonzero = 0;
  for (uint64_t i = 0; i < embed.nbytes(); ++i) nonzero += embed.data[i] != std::byte{0};
  EXPECT_GT(nonzero, embed.nbytes() / 2);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenCheckpoint,
                         ::testing::Values(std::make_tuple("tiny-bf16", false, LoadMode::kRead),
                                           std::make_tuple("tiny-bf16", false, LoadMode::kMmap),
                                           std::make_tuple("tiny-fp8", true, LoadMode::kRead),
                                           std::make_tuple("tiny-fp8", true, LoadMode::kMmap)),
                         [](const auto& info) {
                           return std::string(std::get<1>(info.param) ? "Fp8" : "Bf16") +
                                  (std::get<2>(info.param) == LoadMode::kRead ? "Read" : "Mmap");
                         });

}  // namespace
}  // namespace m2fp4
