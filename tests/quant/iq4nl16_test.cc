// IQ4_NL x16 (quant-formats.md §3.3-3.4): dead blocks, exact-grid blocks of both polarities, the
// search never doing worse than its first candidate, and decoding.
#include "quant/iq4nl16.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/f16.h"
#include "numerics/iq4nl.h"
#include "quant/iq4nl16_simd.h"
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

// The 16-blocks-per-vector search against its scalar twin, bit for bit: Gaussian blocks of
// several magnitudes, dead and nearly dead blocks, blocks on the level grid (ties), subnormal
// and huge values, one outlier per block; plain, imatrix-weighted, reciprocal, other ntry.
TEST(Iq4nl16, SimdSearchIsBitIdenticalToScalarTwin) {
  if (!iq4nl16_simd_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937_64 rng(11);
  const int64_t rows = 24, cols = 16 * 16 * 2 + 16 * 3;  // two SIMD groups and a scalar tail
  std::vector<float> w(rows * cols);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> level(0, 15), kind(0, 9);
  for (int64_t blk = 0; blk < rows * cols / 16; ++blk) {
    float* x = w.data() + blk * 16;
    const int k = kind(rng);
    const float scale = std::ldexp(1.0f, static_cast<int>(blk % 41) - 20);
    for (int j = 0; j < 16; ++j) {
      switch (k) {
        case 0:
          x[j] = 0.0f;
          break;
        case 1:
          x[j] = 1e-16f * normal(rng);  // dead: amax below 1e-15
          break;
        case 2:
          x[j] = scale * 0.5f * kIq4nlLevels[level(rng)];  // on the grid: near-ties
          break;
        case 3:
          x[j] = 1e-41f * normal(rng);  // subnormal
          break;
        case 4:
          x[j] = 1e30f * normal(rng);
          break;
        case 6:  // every element at +-max: the lookup's extremes for every candidate
          x[j] = (level(rng) % 2 ? -scale : scale);
          break;
        case 7:  // near the float32 maximum (x^2 overflows)
          x[j] = std::clamp(1e38f * normal(rng), -3.4e38f, 3.4e38f);
          break;
        default:
          x[j] = scale * normal(rng);
          break;
      }
    }
    if (k == 5) x[blk % 16] *= 40.0f;  // one outlier
  }
  std::vector<float> importance(cols);
  for (float& v : importance) v = std::fabs(normal(rng)) + 0.01f;
  for (int variant = 0; variant < 7; ++variant) {
    Iq4nl16Options options;
    options.importance = variant == 1 ? importance.data() : nullptr;
    options.multiply_by_reciprocal = variant == 2 || variant == 5;
    // 8 is the widest search of the bounded lookup, 12 takes the clamped one.
    options.ntry = variant == 3 ? 2 : variant == 4 || variant == 5 ? 8 : variant == 6 ? 12 : 7;
    Iq4nl16Options scalar = options;
    scalar.allow_simd = false;
    const Iq4nl16Tensor fast = iq4nl16_quantize(ConstMatrix::f32(w, rows, cols), options);
    const Iq4nl16Tensor ref = iq4nl16_quantize(ConstMatrix::f32(w, rows, cols), scalar);
    ASSERT_EQ(fast.scales, ref.scales) << "variant " << variant;
    ASSERT_EQ(fast.packed, ref.packed) << "variant " << variant;
    // Also the float32 scales and codes of single blocks, before the fp16 rounding.
    for (int64_t b0 = 0; b0 + 256 <= rows * cols; b0 += 256 * 7) {
      if (b0 % cols + 256 > cols) continue;
      float d[16];
      uint8_t packed[128];
      const float* imp = options.importance ? options.importance + b0 % cols : nullptr;
      iq4nl16_quantize_16_blocks(w.data() + b0, imp, options, d, packed);
      for (int b = 0; b < 16; ++b) {
        uint8_t ref_codes[16];
        const float ref_d = iq4nl16_quantize_block(
            w.data() + b0 + 16 * b, imp ? imp + 16 * b : nullptr, options, ref_codes);
        ASSERT_EQ(std::memcmp(&d[b], &ref_d, 4), 0)
            << b0 << " " << b << " " << d[b] << " " << ref_d;
        for (int j = 0; j < 16; ++j) {
          const uint8_t byte = packed[8 * b + j / 2];
          ASSERT_EQ(j % 2 ? byte >> 4 : byte & 0xF, ref_codes[j]) << b0 << " " << b << " " << j;
        }
      }
    }
  }
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
