// `quantize --lm-head`: a model quantized with an FP8 (128x128 block) lm_head loads through the
// ordinary loader and its logits are those of the kept lm_head moved by at most the FP8 error
// bound of the weights times the hidden state; the plan refuses what a layout cannot describe.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/thread_pool.h"
#include "engine/quantize_model.h"
#include "engine/quantize_plan.h"
#include "engine/quantize_test_util.h"
#include "model/kv_cache.h"
#include "model/minimax_m2.h"
#include "model/random_checkpoint.h"
#include "numerics/bf16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

std::string quantize(const std::string& src, const std::string& out, WeightScheme lm_head) {
  QuantizeOptions o;
  o.model_dir = src;
  o.out_dir = out;
  o.recipe = QuantRecipe::kMxfp4;
  o.lm_head = lm_head;
  o.calibration.max_samples = 2;
  o.calibration.max_seq = 16;
  o.progress = nullptr;
  const QuantizeReport report = run_quantize(o);
  return report.lm_head;
}

// Logits of the last token of `tokens`, with the model's own lm_head, or (identity = true) with
// an F32 lm_head whose first `hidden` rows are the identity: those logits are the hidden state
// the lm_head multiplies.
std::vector<float> last_logits(LoadedModel& m, const std::vector<int32_t>& tokens, bool identity) {
  const Weight own = m.weights.lm_head;
  std::vector<float> eye;
  if (identity) {
    const int64_t V = m.config.vocab_size, H = m.config.hidden_size;
    eye.assign(static_cast<size_t>(V * H), 0.0f);
    for (int64_t i = 0; i < H; ++i) eye[static_cast<size_t>(i * H + i)] = 1.0f;
    Weight plain;
    plain.format = WeightFormat::kF32;
    plain.rows = V;
    plain.cols = H;
    plain.data = eye.data();
    m.weights.lm_head = plain;
  }
  std::vector<float> logits;
  {
    ThreadPool pool(1);
    MiniMaxM2 net(m.config, m.weights, pool);
    KvCache cache(m.config, 64);
    Batch batch;
    for (size_t i = 0; i < tokens.size(); ++i) {
      batch.add(tokens[i], static_cast<int32_t>(i), 0, i + 1 == tokens.size());
    }
    net.forward(batch, cache, logits);
  }
  m.weights.lm_head = own;
  return logits;
}

TEST(QuantizeLmHead, Fp8HeadLoadsAndMovesLogitsWithinItsBound) {
  test::ScratchDir src("lmhead-src"), kept("lmhead-kept"), fp8("lmhead-fp8");
  const ModelConfig c = preset_config("tiny");
  write_random_checkpoint(src.str(), c, 11, CheckpointDType::kBF16, 0);
  EXPECT_EQ(quantize(src.str(), kept.str(), WeightScheme::kNone), "kept");
  EXPECT_EQ(quantize(src.str(), fp8.str(), WeightScheme::kFp8Block128), "fp8-block128");

  const auto a = LoadedModel::open(kept.str());
  const auto b = LoadedModel::open(fp8.str());
  ASSERT_EQ(a->weights.lm_head.format, WeightFormat::kBF16);
  ASSERT_EQ(b->weights.lm_head.format, WeightFormat::kFp8Block128);
  const TensorView codes = b->checkpoint.tensor("lm_head.weight");
  ASSERT_EQ(codes.dtype(), DType::kF8E4M3);
  ASSERT_TRUE(b->checkpoint.has("lm_head.weight_scale"));  // compressed-tensors' name
  EXPECT_EQ(b->config.quantization_config["config_groups"]["group_1"]["targets"][0], "lm_head");
  // Half the bytes per token for the head: 1 byte per weight plus a scale per 128x128.
  EXPECT_LT(b->weights.lm_head.nbytes(), a->weights.lm_head.nbytes() / 2 + 1024);

  const std::vector<int32_t> tokens = {3, 17, 250, 41, 9, 100};
  const std::vector<float> h = last_logits(*a, tokens, true);
  EXPECT_EQ(h, last_logits(*b, tokens, true)) << "the decoder layers must be identical";
  const std::vector<float> la = last_logits(*a, tokens, false);
  const std::vector<float> lb = last_logits(*b, tokens, false);
  const int64_t V = c.vocab_size, H = c.hidden_size;
  ASSERT_EQ(static_cast<int64_t>(la.size()), V);

  // Per logit v: |lb - la| <= sum_c bound(W[v,c]) |h_c| with the E4M3 element bound
  // max(|w| 2^-4, s 2^-10) (tests/quant/lm_head_scheme_test.cc), plus the kernels' own
  // rounding of both dot products (bf16 activations: 2^-8 of sum |w| |h| each).
  const TensorView w = a->checkpoint.tensor("lm_head.weight");
  const TensorView s = b->checkpoint.tensor("lm_head.weight_scale");
  const int64_t scale_cols = (H + 127) / 128;
  double max_moved = 0.0;
  for (int64_t v = 0; v < V; ++v) {
    double bound = 0.0, magnitude = 0.0;
    for (int64_t col = 0; col < H; ++col) {
      uint16_t bits;
      std::memcpy(&bits, w.data + 2 * (v * H + col), 2);
      float scale;
      std::memcpy(&scale, s.data + 4 * ((v / 128) * scale_cols + col / 128), 4);
      const double wv = std::fabs(bf16_to_f32(bits));
      const double hc = std::fabs(h[static_cast<size_t>(col)]);
      bound += std::max(wv * 0.0625, scale * std::ldexp(1.0, -10)) * hc;
      magnitude += wv * hc;
    }
    const double moved = std::fabs(double(lb[static_cast<size_t>(v)]) - la[static_cast<size_t>(v)]);
    ASSERT_LE(moved, bound + 2 * std::ldexp(magnitude, -8) + 1e-6) << "logit " << v;
    max_moved = std::max(max_moved, moved);
  }
  EXPECT_GT(max_moved, 0.0);  // the FP8 head is really in use
}

TEST(QuantizeLmHead, ModeloptTakesOnlyTheRecipesScheme) {
  test::ScratchDir src("lmhead-plan");
  const ModelConfig c = preset_config("tiny");
  write_random_checkpoint(src.str(), c, 5, CheckpointDType::kBF16, 0);
  const Checkpoint ckpt = Checkpoint::open(src.str(), LoadMode::kMmap);
  const ModelConfig config = ModelConfig::from_json(ckpt.config());
  EXPECT_THROW(plan_export(ckpt, config, QuantRecipe::kNvfp4, ExportLayout::kModelopt,
                           IgnorePatterns(), WeightScheme::kFp8Block128),
               Error);
  const ExportPlan p = plan_export(ckpt, config, QuantRecipe::kNvfp4, ExportLayout::kModelopt,
                                   IgnorePatterns(), WeightScheme::kNvfp4);
  EXPECT_EQ(p.items.back().outputs[0].name, "lm_head.weight");
  EXPECT_EQ(p.items.back().outputs[0].dtype, DType::kU8);
  EXPECT_EQ(p.items.back().outputs.size(), 3u);  // codes, block scales, weight_scale_2: no input
  const ExportPlan ct =
      plan_export(ckpt, config, QuantRecipe::kNvfp4, ExportLayout::kCompressedTensors,
                  IgnorePatterns(), WeightScheme::kFp8Block128);
  EXPECT_EQ(ct.items.back().outputs[1].name, "lm_head.weight_scale");
  const QuantConfigInputs in = ct.config_inputs();
  EXPECT_EQ(in.quantized_modules.back(), "lm_head");
  EXPECT_EQ(in.lm_head, WeightScheme::kFp8Block128);
}

}  // namespace
}  // namespace m2fp4
