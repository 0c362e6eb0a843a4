// MXFP4 (quant-formats.md §3.1-3.2): the four producers' exponent, tie, zero-sign and zero-block
// rules on hand-computed blocks, round-trip bounds, and the ggml block layout.
#include "quant/mxfp4.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/e8m0.h"

namespace m2fp4 {
namespace {

TEST(Mxfp4, ExponentRulesOnHandComputedAmaxes) {
  struct Case {
    float amax;
    uint8_t ocp, ct, modelopt;
  };
  // ocp: floor(log2 amax) - 2; ct: round amax up to a power of two when its mantissa >= 1.75,
  // then -2; modelopt: ceil(log2(amax / 6)).
  for (Case c : {Case{6.0f, 127, 127, 127},   // 1.5*2^2
                 Case{7.0f, 127, 128, 128},   // 1.75*2^2: CT rounds up to 8
                 Case{6.5f, 127, 127, 128},   // modelopt: 6.5/6 > 1
                 Case{4.0f, 127, 127, 127},   // exactly 2^2; modelopt ceil(log2(0.667)) = 0
                 Case{3.5f, 126, 127, 127},   // 1.75*2^1
                 Case{0.75f, 124, 124, 124},  // ceil(log2(0.125)) = -3
                 Case{8.0f, 128, 128, 128}, Case{1000.0f, 134, 135, 135}}) {  // 1000 = 1.953*2^9
    EXPECT_EQ(mxfp4_scale_code(c.amax, Mxfp4Rule::kOcp), c.ocp) << c.amax;
    EXPECT_EQ(mxfp4_scale_code(c.amax, Mxfp4Rule::kLlamaCpp), c.ocp) << c.amax;
    EXPECT_EQ(mxfp4_scale_code(c.amax, Mxfp4Rule::kCompressedTensors), c.ct) << c.amax;
    EXPECT_EQ(mxfp4_scale_code(c.amax, Mxfp4Rule::kModelopt), c.modelopt) << c.amax;
  }
  // Zero blocks: byte 0, except compressed-tensors' 1.0.
  EXPECT_EQ(mxfp4_scale_code(0.0f, Mxfp4Rule::kOcp), 0);
  EXPECT_EQ(mxfp4_scale_code(0.0f, Mxfp4Rule::kLlamaCpp), 0);
  EXPECT_EQ(mxfp4_scale_code(0.0f, Mxfp4Rule::kCompressedTensors), 127);
  EXPECT_EQ(mxfp4_scale_code(0.0f, Mxfp4Rule::kModelopt), 0);
  // Exponents clamp to the E8M0 range.
  EXPECT_EQ(mxfp4_scale_code(1e-40f, Mxfp4Rule::kOcp), 0);
  EXPECT_EQ(mxfp4_scale_code(3e38f, Mxfp4Rule::kOcp), 125 + 127);
  EXPECT_THROW(mxfp4_scale_code(NAN, Mxfp4Rule::kOcp), Error);
}

TEST(Mxfp4, ElementTieAndZeroSignRules) {
  // Scaled values at the E2M1 ties and around zero.
  EXPECT_EQ(mxfp4_element_code(0.75f, Mxfp4Rule::kOcp), 2);
  EXPECT_EQ(mxfp4_element_code(0.75f, Mxfp4Rule::kCompressedTensors), 2);
  EXPECT_EQ(mxfp4_element_code(0.75f, Mxfp4Rule::kLlamaCpp), 1);
  EXPECT_EQ(mxfp4_element_code(0.75f, Mxfp4Rule::kModelopt), 1);
  EXPECT_EQ(mxfp4_element_code(-3.5f, Mxfp4Rule::kOcp), 14);
  EXPECT_EQ(mxfp4_element_code(-3.5f, Mxfp4Rule::kLlamaCpp), 13);
  EXPECT_EQ(mxfp4_element_code(7.9f, Mxfp4Rule::kOcp), 7);
  EXPECT_EQ(mxfp4_element_code(-0.1f, Mxfp4Rule::kOcp), 8);
  EXPECT_EQ(mxfp4_element_code(-0.1f, Mxfp4Rule::kLlamaCpp), 0);  // never -0
  EXPECT_EQ(mxfp4_element_code(0.0f, Mxfp4Rule::kModelopt), 8);   // exact zeros -> 8
  EXPECT_EQ(mxfp4_element_code(0.1f, Mxfp4Rule::kModelopt), 0);
  EXPECT_EQ(mxfp4_element_code(-0.0f, Mxfp4Rule::kOcp), 0);
}

TEST(Mxfp4, QuantizesABlockByHand) {
  // amax 12 -> OCP e = floor(log2 12) - 2 = 1, X = 2: elements are x / 2.
  std::vector<float> w(32, 0.0f);
  w[0] = 12.0f;  // 6 -> 7
  w[1] = -1.5f;  // -0.75: RNE -> -1.0 (10); toward zero -> -0.5 (9)
  w[2] = 14.0f;  // 7 -> clips to 6 (OCP); modelopt scale is larger
  w[3] = 0.4f;   // 0.2 -> 0
  w[16] = 3.0f;  // 1.5 -> 3
  for (Mxfp4Rule rule : {Mxfp4Rule::kOcp, Mxfp4Rule::kLlamaCpp}) {
    const Mxfp4Tensor t = mxfp4_quantize(ConstMatrix::f32(w, 1, 32), rule);
    EXPECT_EQ(t.scales[0], 128);  // floor(log2 14) - 2 = 1
    EXPECT_EQ(t.packed[0], 7 | ((rule == Mxfp4Rule::kOcp ? 10 : 9) << 4));
    EXPECT_EQ(t.packed[1], 7 | (0 << 4));
    EXPECT_EQ(t.packed[8], 3);
    const std::vector<float> back = mxfp4_dequantize(t);
    EXPECT_EQ(back[0], 12.0f);
    EXPECT_EQ(back[2], 12.0f);  // clipped
    EXPECT_EQ(back[4], 0.0f);
  }
  const Mxfp4Tensor mo = mxfp4_quantize(ConstMatrix::f32(w, 1, 32), Mxfp4Rule::kModelopt);
  EXPECT_EQ(mo.scales[0], 129);      // ceil(log2(14/6)) = 2: X = 4, nothing clips
  EXPECT_EQ(mo.packed[2] & 0xF, 8);  // w[4] = 0 exactly -> code 8
}

TEST(Mxfp4, RoundTripBounds) {
  std::mt19937_64 rng(9);
  std::student_t_distribution<float> t(3.0f);
  const int64_t rows = 33, cols = 256;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = 0.05f * t(rng);
  for (Mxfp4Rule rule : {Mxfp4Rule::kOcp, Mxfp4Rule::kLlamaCpp, Mxfp4Rule::kCompressedTensors,
                         Mxfp4Rule::kModelopt}) {
    const Mxfp4Tensor q = mxfp4_quantize(ConstMatrix::f32(w, rows, cols), rule);
    const std::vector<float> back = mxfp4_dequantize(q);
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float x_scale = e8m0_to_f32(q.scales[i / 32]);
      // Inside the grid the error is at most half the largest gap (2X / 2); OCP-style rules clip
      // (6X, 8X) to 6X, at most 2X away. modelopt never clips.
      const float bound = rule == Mxfp4Rule::kModelopt ? x_scale : 2 * x_scale;
      ASSERT_LE(std::fabs(w[i] - back[i]), bound) << i;
    }
  }
}

TEST(Mxfp4, GgmlBlockLayoutRoundTrips) {
  Mxfp4Tensor t;
  t.rows = 2;
  t.cols = 64;
  for (int i = 0; i < 4; ++i) t.scales.push_back(static_cast<uint8_t>(120 + i));
  // codes q[k] = k % 16 within each block of 32, packed even-low.
  for (int b = 0; b < 4; ++b) {
    for (int j = 0; j < 16; ++j) {
      t.packed.push_back(static_cast<uint8_t>(((2 * j) % 16) | (((2 * j + 1) % 16) << 4)));
    }
  }
  const std::vector<uint8_t> ggml = mxfp4_to_ggml_blocks(t);
  ASSERT_EQ(ggml.size(), 4u * 17u);
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(ggml[b * 17], 120 + b);
    for (int j = 0; j < 16; ++j) {
      // qs[j] = q[j] | q[j + 16] << 4 with q[k] = k % 16: both nibbles are j.
      EXPECT_EQ(ggml[b * 17 + 1 + j], j | (j << 4)) << b << " " << j;
    }
  }
  const Mxfp4Tensor back = mxfp4_from_ggml_blocks(ggml, 2, 64);
  EXPECT_EQ(back.packed, t.packed);
  EXPECT_EQ(back.scales, t.scales);
  EXPECT_THROW(mxfp4_from_ggml_blocks(std::span(ggml).subspan(1), 2, 64), Error);
}

TEST(Mxfp4, BadInputIsAnError) {
  const std::vector<float> w(48, 1.0f);
  EXPECT_THROW(mxfp4_quantize(ConstMatrix::f32(w, 3, 16), Mxfp4Rule::kOcp), Error);
  std::vector<float> inf(32, 1.0f);
  inf[3] = INFINITY;
  EXPECT_THROW(mxfp4_quantize(ConstMatrix::f32(inf, 1, 32), Mxfp4Rule::kOcp), Error);
}

}  // namespace
}  // namespace m2fp4
