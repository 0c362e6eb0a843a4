// FP8 E4M3 quantization (quant-formats.md §4-5): amax/448 scales per granularity, zero groups,
// partial edge blocks, the §5 dequantization of a checkpoint's block-scaled weight, KV cache
// store/load, round-trip bounds.
#include "quant/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/bf16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

TEST(Fp8, BlockScaleIsAmaxOver448AndTheMaxMapsTo448) {
  std::vector<float> w(130 * 260, 0.0f);
  w[0] = -3.0f;               // block (0, 0)
  w[5 * 260 + 200] = 7.0f;    // block (0, 1)
  w[129 * 260 + 259] = 0.5f;  // block (1, 2): the partial corner block
  const Fp8Tensor t = fp8_quantize(ConstMatrix::f32(w, 130, 260));
  ASSERT_EQ(t.scale_rows(), 2);
  ASSERT_EQ(t.scale_cols(), 3);
  EXPECT_EQ(t.scales[0], 3.0f / 448.0f);
  EXPECT_EQ(t.scales[1], 7.0f / 448.0f);
  EXPECT_EQ(t.scales[2], 1.0f);  // all-zero block
  EXPECT_EQ(t.scales[5], 0.5f / 448.0f);
  EXPECT_EQ(t.codes[0], 0xFE);
  EXPECT_EQ(t.codes[5 * 260 + 200], 0x7E);
  EXPECT_EQ(t.codes[129 * 260 + 259], 0x7E);
  EXPECT_EQ(t.codes[1], 0x00);
  const std::vector<float> back = fp8_dequantize(t);
  EXPECT_FLOAT_EQ(back[0], -3.0f);
  EXPECT_FLOAT_EQ(back[129 * 260 + 259], 0.5f);
}

TEST(Fp8, PerTensorAndPerChannelScales) {
  const std::vector<float> w = {1, -2, 4, 0.5f, 0, 0, 0, 0, 8, 1, 1, 1};
  Fp8Options tensor;
  tensor.granularity = Fp8Granularity::kPerTensor;
  const Fp8Tensor t = fp8_quantize(ConstMatrix::f32(w, 3, 4), tensor);
  ASSERT_EQ(t.scales.size(), 1u);
  EXPECT_EQ(t.scales[0], 8.0f / 448.0f);
  Fp8Options channel;
  channel.granularity = Fp8Granularity::kPerChannel;
  const Fp8Tensor c = fp8_quantize(ConstMatrix::f32(w, 3, 4), channel);
  EXPECT_EQ(c.scales, (std::vector<float>{4.0f / 448.0f, 1.0f, 8.0f / 448.0f}));
  EXPECT_EQ(c.codes[2], 0x7E);
  EXPECT_EQ(c.codes[4], 0x00);
}

TEST(Fp8, CheckpointDequantizationOfSection5) {
  // 130 x 130 in 128 x 128 blocks -> weight_scale_inv [2, 2]; the scale multiplies.
  std::vector<uint8_t> codes(130 * 130, 0x38);  // 1.0
  codes[1] = 0xC4;                              // -1.5 * 2^1 = -3
  codes[129 * 130 + 129] = 0x01;                // 2^-9
  const std::vector<float> scale_inv = {0.5f, 3.0f, 1.0f / 3.0f, 1e-3f};
  const Fp8Tensor t = fp8_from_checkpoint(codes, scale_inv, 130, 130);
  const std::vector<uint16_t> bf = fp8_dequantize_bf16(t);
  EXPECT_EQ(bf16_to_f32(bf[0]), 0.5f);
  EXPECT_EQ(bf16_to_f32(bf[1]), -1.5f);
  EXPECT_EQ(bf16_to_f32(bf[128]), 3.0f);                   // block (0, 1)
  EXPECT_EQ(bf[129 * 130 + 0], f32_to_bf16(1.0f / 3.0f));  // block (1, 0)
  EXPECT_EQ(bf[129 * 130 + 129],
            f32_to_bf16(std::ldexp(1.0f, -9) * 1e-3f));  // f32 product, then bf16
  EXPECT_THROW(fp8_from_checkpoint(codes, std::vector<float>(3, 1.0f), 130, 130), Error);
  EXPECT_THROW(fp8_from_checkpoint(std::vector<uint8_t>(5), scale_inv, 130, 130), Error);
}

TEST(Fp8, KvCacheStoreSaturatesAndLoadMultiplies) {
  const float scale = fp8_kv_scale(896.0f);
  EXPECT_EQ(scale, 2.0f);
  EXPECT_EQ(fp8_kv_store(896.0f, scale), 0x7E);
  EXPECT_EQ(fp8_kv_store(5000.0f, scale), 0x7E);  // satfinite, not NaN
  EXPECT_EQ(fp8_kv_store(-5000.0f, scale), 0xFE);
  EXPECT_EQ(fp8_kv_store(3.0f, scale), f32_to_e4m3(1.5f));
  EXPECT_EQ(fp8_kv_load(0x7E, scale), 896.0f);
  EXPECT_EQ(fp8_kv_scale(0.0f), 1.0f);
}

TEST(Fp8, RoundTripIsWithinHalfAnE4m3Step) {
  std::mt19937_64 rng(31);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const int64_t rows = 200, cols = 300;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = normal(rng);
  for (Fp8Granularity g :
       {Fp8Granularity::kBlock, Fp8Granularity::kPerChannel, Fp8Granularity::kPerTensor}) {
    Fp8Options options;
    options.granularity = g;
    const Fp8Tensor t = fp8_quantize(ConstMatrix::f32(w, rows, cols), options);
    const std::vector<float> back = fp8_dequantize(t);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float s = t.scales[(r / t.block_rows) * t.scale_cols() + c / t.block_cols];
        const float x = w[r * cols + c];
        // 3 mantissa bits: relative half step 2^-4 for normals, 2^-10 * s absolute below 2^-6 * s.
        const float bound = std::max(std::fabs(x) * 0.0625f, s * std::ldexp(1.0f, -10)) * 1.0001f;
        ASSERT_LE(std::fabs(x - back[r * cols + c]), bound) << r << "," << c;
      }
    }
  }
}

TEST(Fp8, BadInputIsAnError) {
  std::vector<float> w(16, 1.0f);
  w[7] = NAN;
  EXPECT_THROW(fp8_quantize(ConstMatrix::f32(w, 2, 8)), Error);
  Fp8Options bad;
  bad.block_rows = 0;
  EXPECT_THROW(fp8_quantize(ConstMatrix::f32(std::vector<float>(4, 1.0f), 2, 2), bad), Error);
}

}  // namespace
}  // namespace m2fp4
