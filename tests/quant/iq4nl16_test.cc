// IQ4_NL x16 (quant-formats.md §3.3-3.4): dead blocks, exact-grid blocks of both polarities, the
// search never doing worse than its first candidate, and decoding.
#include "quant/iq4nl16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/f16.h"
#include "numerics/iq4nl.h"
#include "quant/nibble_pack.h"

namespace m2fp4 {
namespace {

// sum_j w_j (x_j - d * level[code_j])^2 in double.
double weighted_error(const float* x, const float* w, float d, const uint8_t* codes) {
  double e = 0;
  for (int j = 0; j < 16; ++j) e += w[j] * std::pow(x[j] - double{d} * kIq4nlLevels[codes[j]], 2);
  return e;
}

TEST(Iq4nl16, DeadBlockStoresZeroScaleAndCode8) {
  std::vector<float> w(32, 0.0f);
  w[20] = 1e-16f;  // below llama.cpp's 1e-15 threshold: still dead
  const Iq4nl16Tensor t = iq4nl16_quantize(ConstMatrix::f32(w, 1, 32));
  EXPECT_EQ(t.scales[0], 0);
  EXPECT_EQ(t.scales[1], 0);
  for (uint8_t b : t.packed) EXPECT_EQ(b, 0x88);
  for (float v : iq4nl16_dequantize(t)) EXPECT_EQ(v, 0.0f);
}

TEST(Iq4nl16, BlockOnTheGridIsReproducedForBothPolarities) {
  for (float sign : {1.0f, -1.0f}) {
    // x = sign * 0.5 * level[perm]: the search (t = 0 maps max to level -127 or...) finds
    // d = +-0.5 exactly, and codes are the permutation.
    const uint8_t perm[16] = {3, 15, 0, 8, 9, 1, 12, 4, 14, 2, 7, 11, 5, 13, 6, 10};
    std::vector<float> x(16);
    for (int j = 0; j < 16; ++j) x[j] = sign * 0.5f * kIq4nlLevels[perm[j]];
    uint8_t codes[16];
    const float d = iq4nl16_quantize_block(x.data(), nullptr, Iq4nl16Options{}, codes);
    EXPECT_EQ(d, sign * 0.5f);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(codes[j], perm[j]) << j;
    const Iq4nl16Tensor t = iq4nl16_quantize(ConstMatrix::f32(x, 1, 16));
    EXPECT_EQ(t.scales[0], f32_to_f16(sign * 0.5f));
    const std::vector<float> back = iq4nl16_dequantize(t);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(back[j], x[j]);
  }
}

// The first candidate of §3.3: d = max/127, codes nearest(x/d), then the least-squares d for
// those codes. Its weighted error (computed here in double) bounds the final result's: the
// search only accepts larger sum(wqx)^2/sum(wq^2), and re-deriving codes for the final d can
// only lower the error further.
double first_candidate_error(const float* x, const float* w) {
  float max = 0.0f;
  for (int j = 0; j < 16; ++j) {
    if (std::fabs(x[j]) > std::fabs(max)) max = x[j];
  }
  const float d = max / 127.0f;
  double qx = 0, q2 = 0;
  uint8_t codes[16];
  for (int j = 0; j < 16; ++j) {
    codes[j] = iq4nl_nearest_index(x[j] / d);
    qx += double{w[j]} * kIq4nlLevels[codes[j]] * x[j];
    q2 += double{w[j]} * kIq4nlLevels[codes[j]] * kIq4nlLevels[codes[j]];
  }
  return weighted_error(x, w, static_cast<float>(qx / q2), codes);
}

TEST(Iq4nl16, SearchNeverDoesWorseThanTheFirstCandidate) {
  std::mt19937_64 rng(21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int improved = 0;
  for (int block = 0; block < 2000; ++block) {
    float x[16];
    float w[16];
    for (int j = 0; j < 16; ++j) {
      x[j] = normal(rng);
      w[j] = x[j] * x[j];
    }
    uint8_t codes[16];
    const float d = iq4nl16_quantize_block(x, nullptr, Iq4nl16Options{}, codes);
    const double e = weighted_error(x, w, d, codes);
    const double e_first = first_candidate_error(x, w);
    ASSERT_LE(e, e_first * (1 + 1e-5)) << block;
    improved += e < e_first * (1 - 1e-3);
    // Codes are the nearest levels for the float32 scale.
    for (int j = 0; j < 16; ++j) ASSERT_EQ(codes[j], iq4nl_nearest_index(x[j] / d));
  }
  EXPECT_GT(improved, 1000);  // the +-7 search (incl. negative scales) matters on Gaussian blocks
}

TEST(Iq4nl16, RoundTripErrorOnGaussianWeights) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int64_t rows = 31, cols = 256;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = normal(rng);
  const Iq4nl16Tensor t = iq4nl16_quantize(ConstMatrix::f32(w, rows, cols));
  const std::vector<float> back = iq4nl16_dequantize(t);
  double err2 = 0, ref2 = 0;
  std::vector<uint8_t> codes(w.size());
  unpack_nibbles(t.packed, codes);
  for (size_t i = 0; i < w.size(); ++i) {
    const float d = f16_to_f32(t.scales[i / 16]);
    const float in_levels = w[i] / d;
    if (in_levels >= -127.0f && in_levels <= 113.0f) {
      // Inside the grid: within half the widest gap (24, 89 -> 113) of a level.
      ASSERT_LE(std::fabs(w[i] - back[i]), 12.0f * std::fabs(d) * 1.01f) << i;
    } else {
      ASSERT_TRUE(codes[i] == 0 || codes[i] == 15) << i;  // clipped to an end level
    }
    err2 += std::pow(w[i] - back[i], 2);
    ref2 += std::pow(w[i], 2);
  }
  EXPECT_LT(std::sqrt(err2 / ref2), 0.1);  // IQ4_NL x16 beats NVFP4's ~0.095 only slightly
}

TEST(Iq4nl16, BadInputIsAnError) {
  std::vector<float> w(16, 1.0f);
  w[3] = NAN;
  EXPECT_THROW(iq4nl16_quantize(ConstMatrix::f32(w, 1, 16)), Error);
  const std::vector<float> w24(24, 1.0f);
  EXPECT_THROW(iq4nl16_quantize(ConstMatrix::f32(w24, 1, 24)), Error);
  Iq4nl16Options bad;
  bad.ntry = -1;
  EXPECT_THROW(iq4nl16_quantize(ConstMatrix::f32(std::vector<float>(16, 1.0f), 1, 16), bad), Error);
}

}  // namespace
}  // namespace m2fp4
