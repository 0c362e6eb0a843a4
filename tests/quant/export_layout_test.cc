// Export naming per layout (quant-formats.md §2.5, §2.6, §3.2, §3.4, §4.2) and the encoder on
// the §2.8 worked block.
#include "quant/export_layout.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/error.h"
#include "numerics/bf16.h"

namespace m2fp4 {
namespace {

struct Want {
  const char* name;
  DType dtype;
  std::vector<int64_t> shape;
};

void expect_specs(const std::vector<TensorSpec>& got, const std::vector<Want>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name);
    EXPECT_EQ(got[i].dtype, want[i].dtype) << want[i].name;
    EXPECT_EQ(got[i].shape, want[i].shape) << want[i].name;
  }
}

const std::string kW1 = "model.layers.0.block_sparse_moe.experts.7.w1";

TEST(ExportLayout, Nvfp4Modelopt) {
  // §2.5 with the M2.7 expert w1 shape [1536, 3072].
  expect_specs(
      quantized_linear_specs(kW1, 1536, 3072, WeightScheme::kNvfp4, ExportLayout::kModelopt, true),
      {{"model.layers.0.block_sparse_moe.experts.7.w1.weight", DType::kU8, {1536, 1536}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.weight_scale", DType::kF8E4M3, {1536, 192}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.weight_scale_2", DType::kF32, {}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.input_scale", DType::kF32, {}}});
  EXPECT_EQ(
      quantized_linear_specs(kW1, 1536, 3072, WeightScheme::kNvfp4, ExportLayout::kModelopt, false)
          .size(),
      3u);
}

TEST(ExportLayout, Nvfp4CompressedTensors) {
  // §2.6: weight_packed / weight_scale / weight_global_scale [1] / input_global_scale [1].
  expect_specs(
      quantized_linear_specs(kW1, 1536, 3072, WeightScheme::kNvfp4,
                             ExportLayout::kCompressedTensors, true),
      {{"model.layers.0.block_sparse_moe.experts.7.w1.weight_packed", DType::kU8, {1536, 1536}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.weight_scale", DType::kF8E4M3, {1536, 192}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.weight_global_scale", DType::kF32, {1}},
       {"model.layers.0.block_sparse_moe.experts.7.w1.input_global_scale", DType::kF32, {1}}});
}

TEST(ExportLayout, Mxfp4AndIq4nl16) {
  // §3.2: E8M0 bytes per 32; §3.4: signed fp16 scale per 16.
  expect_specs(quantized_linear_specs("m.w2", 3072, 1536, WeightScheme::kMxfp4,
                                      ExportLayout::kCompressedTensors, false),
               {{"m.w2.weight_packed", DType::kU8, {3072, 768}},
                {"m.w2.weight_scale", DType::kU8, {3072, 48}}});
  expect_specs(
      quantized_linear_specs("m.w2", 3072, 1536, WeightScheme::kMxfp4, ExportLayout::kModelopt,
                             false),
      {{"m.w2.weight", DType::kU8, {3072, 768}}, {"m.w2.weight_scale", DType::kU8, {3072, 48}}});
  expect_specs(quantized_linear_specs("m.w2", 3072, 1536, WeightScheme::kIq4nl16,
                                      ExportLayout::kCompressedTensors, false),
               {{"m.w2.weight_packed", DType::kU8, {3072, 768}},
                {"m.w2.weight_scale", DType::kF16, {3072, 96}}});
}

TEST(ExportLayout, RefusesWhatNoLayoutHolds) {
  EXPECT_THROW(quantized_linear_specs("m", 4, 48, WeightScheme::kMxfp4,
                                      ExportLayout::kCompressedTensors, false),
               Error);  // 48 is not a multiple of 32
  EXPECT_THROW(
      quantized_linear_specs("m", 4, 24, WeightScheme::kNvfp4, ExportLayout::kModelopt, false),
      Error);
  EXPECT_THROW(quantized_linear_specs("m", 4, 32, WeightScheme::kMxfp4,
                                      ExportLayout::kCompressedTensors, true),
               Error);  // input scales are NVFP4 only
  // IQ4_NL x16 in the modelopt layout: modelopt's names, an fp16 scale per 16.
  const auto iq =
      quantized_linear_specs("m", 4, 32, WeightScheme::kIq4nl16, ExportLayout::kModelopt, false);
  ASSERT_EQ(iq.size(), 2u);
  EXPECT_EQ(iq[0].name, "m.weight");
  EXPECT_EQ(iq[0].dtype, DType::kU8);
  EXPECT_EQ(iq[0].shape, (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(iq[1].name, "m.weight_scale");
  EXPECT_EQ(iq[1].dtype, DType::kF16);
  EXPECT_EQ(iq[1].shape, (std::vector<int64_t>{4, 2}));
  EXPECT_THROW(quantized_linear_specs("m", 4, 32, WeightScheme::kNone,
                                      ExportLayout::kCompressedTensors, false),
               Error);
}

TEST(ExportLayout, KvScaleNamesPerLayout) {
  // §4.2: modelopt k_proj.k_scale / v_proj.v_scale F32 []; compressed-tensors self_attn.k_scale
  // in the model dtype [1].
  const TensorSpec mk = kv_scale_spec(12, 'k', ExportLayout::kModelopt, DType::kBF16);
  EXPECT_EQ(mk.name, "model.layers.12.self_attn.k_proj.k_scale");
  EXPECT_EQ(mk.dtype, DType::kF32);
  EXPECT_TRUE(mk.shape.empty());
  const TensorSpec mv = kv_scale_spec(12, 'v', ExportLayout::kModelopt, DType::kBF16);
  EXPECT_EQ(mv.name, "model.layers.12.self_attn.v_proj.v_scale");
  const TensorSpec ck = kv_scale_spec(3, 'k', ExportLayout::kCompressedTensors, DType::kBF16);
  EXPECT_EQ(ck.name, "model.layers.3.self_attn.k_scale");
  EXPECT_EQ(ck.dtype, DType::kBF16);
  EXPECT_EQ(ck.shape, std::vector<int64_t>{1});
  EXPECT_EQ(kv_scale_spec(3, 'v', ExportLayout::kCompressedTensors, DType::kF32).dtype,
            DType::kF32);
  EXPECT_THROW(kv_scale_spec(3, 'q', ExportLayout::kModelopt, DType::kBF16), Error);
}

TEST(ExportLayout, KvScaleValues) {
  // amax / 448: 896 -> 2.0 exactly; amax 0 -> 1.0; bf16 rounds 100/448 = 0.2232142...
  auto f32_of = [](const std::vector<std::byte>& b) {
    float f;
    std::memcpy(&f, b.data(), 4);
    return f;
  };
  auto bf16_of = [](const std::vector<std::byte>& b) {
    uint16_t u;
    std::memcpy(&u, b.data(), 2);
    return u;
  };
  EXPECT_EQ(f32_of(kv_scale_bytes(896.0f, DType::kF32)), 2.0f);
  EXPECT_EQ(f32_of(kv_scale_bytes(0.0f, DType::kF32)), 1.0f);
  EXPECT_EQ(f32_of(kv_scale_bytes(100.0f, DType::kF32)), 100.0f / 448.0f);
  EXPECT_EQ(bf16_of(kv_scale_bytes(100.0f, DType::kBF16)), f32_to_bf16(100.0f / 448.0f));
  EXPECT_EQ(kv_scale_bytes(1.0f, DType::kBF16).size(), 2u);
}

// §2.8: a 1x16 block with the global amax forced to 2688 (weight_scale_2 = global scale = 1.0).
const std::vector<float> kWorkedBlock = {0, .25f, .75f, 1.25f, 1.75f,  2.5f,  3.5f, 5,
                                         6, 6,    -.3f, -.1f,  -1.75f, -5.5f, .5f,  4};
const std::vector<uint8_t> kWorkedPacked = {0x00, 0x22, 0x44, 0x66, 0x77, 0x89, 0xFC, 0x61};

std::vector<uint8_t> u8(const std::vector<std::byte>& b) {
  std::vector<uint8_t> out(b.size());
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

float f32(const std::vector<std::byte>& b) {
  float f;
  std::memcpy(&f, b.data(), 4);
  return f;
}

TEST(EncodeQuantizedLinear, WorkedBlockModelopt) {
  LinearEncodeOptions o;
  o.layout = ExportLayout::kModelopt;
  const auto t = encode_quantized_linear("x", ConstMatrix::f32(kWorkedBlock, 1, 16),
                                         WeightScheme::kNvfp4, o, 2688.0f, 3.0f);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].spec.name, "x.weight");
  EXPECT_EQ(u8(t[0].bytes), kWorkedPacked);
  EXPECT_EQ(u8(t[1].bytes), std::vector<uint8_t>{0x38});  // block scale 1.0
  EXPECT_EQ(f32(t[2].bytes), 1.0f);                       // weight_scale_2
  EXPECT_EQ(f32(t[3].bytes), 3.0f / 2688.0f);             // input_scale = 0.0011160715
}

TEST(EncodeQuantizedLinear, WorkedBlockCompressedTensors) {
  LinearEncodeOptions o;
  o.layout = ExportLayout::kCompressedTensors;
  o.ct_work_dtype = WorkDtype::kBF16;
  const auto t = encode_quantized_linear("x", ConstMatrix::f32(kWorkedBlock, 1, 16),
                                         WeightScheme::kNvfp4, o, 2688.0f, 3.0f);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].spec.name, "x.weight_packed");
  EXPECT_EQ(u8(t[0].bytes), kWorkedPacked);
  EXPECT_EQ(u8(t[1].bytes), std::vector<uint8_t>{0x38});
  EXPECT_EQ(f32(t[2].bytes), 1.0f);    // weight_global_scale = 2688 / 2688
  EXPECT_EQ(f32(t[3].bytes), 896.0f);  // input_global_scale: bf16(2688 / 3) (§2.8)
}

TEST(EncodeQuantizedLinear, ZeroInputAmaxFallsBackToHalf) {
  LinearEncodeOptions o;
  o.layout = ExportLayout::kModelopt;
  EXPECT_EQ(nvfp4_input_scale_value(0.0f, o), 0.5f / 2688.0f);
  o.layout = ExportLayout::kCompressedTensors;
  o.ct_work_dtype = WorkDtype::kF32;
  EXPECT_EQ(nvfp4_input_scale_value(0.0f, o), 2688.0f / 0.5f);
}

TEST(EncodeQuantizedLinear, Mxfp4ScaleRulePerLayout) {
  // A block with amax 13 = 1.625 * 2^3. compressed-tensors rounds the amax to a power of two
  // (up only from mantissa 1.75): 2^3, exponent 3 - 2 = 1, byte 128. modelopt takes
  // ceil(log2(13 / 6)) = 2, byte 129 (§3.1 table).
  std::vector<float> w(32, 0.0f);
  w[5] = 13.0f;
  LinearEncodeOptions ct;
  ct.layout = ExportLayout::kCompressedTensors;
  LinearEncodeOptions mo;
  mo.layout = ExportLayout::kModelopt;
  const auto a = encode_quantized_linear("x", ConstMatrix::f32(w, 1, 32), WeightScheme::kMxfp4, ct,
                                         0.0f, std::nullopt);
  const auto b = encode_quantized_linear("x", ConstMatrix::f32(w, 1, 32), WeightScheme::kMxfp4, mo,
                                         0.0f, std::nullopt);
  EXPECT_EQ(u8(a[1].bytes), std::vector<uint8_t>{128});
  EXPECT_EQ(u8(b[1].bytes), std::vector<uint8_t>{129});
  EXPECT_EQ(a[0].spec.name, "x.weight_packed");
  EXPECT_EQ(b[0].spec.name, "x.weight");
}

}  // namespace
}  // namespace m2fp4
