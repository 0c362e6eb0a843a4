// W4A4 activation fake-quantization (quant-formats.md §2.7) against hand-computed blocks and an
// independent reference written here (own E2M1 rounding by grid search).
#include "kernels/cpu/nvfp4_activation.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/error.h"
#include "kernels/test_util.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

// E2M1 magnitudes; RNE on this grid with ties to the even code index, saturating at 6.
constexpr double kGrid[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};

double e2m1_round(double v) {
  const double m = std::abs(v);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    const double d = std::abs(kGrid[c] - m), d_best = std::abs(kGrid[best] - m);
    if (d < d_best || (d == d_best && c % 2 == 0)) best = c;
  }
  return v < 0 ? -kGrid[best] : kGrid[best];
}

// The spec's recipe, step by step in f32 (§2.7).
std::vector<float> reference(const std::vector<float>& x, int64_t cols, float input_scale) {
  const float global = 1.0f / input_scale;
  const float one_sixth = 1.0f / 6.0f;
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size(); b += 16) {
    float vmax = 0;
    bool finite = true;
    for (size_t i = b; i < b + 16; ++i) {
      finite &= std::isfinite(x[i]);
      vmax = std::max(vmax, std::abs(x[i]));
    }
    const float s_in = global * (vmax * one_sixth);
    const float scale = e4m3_to_f32(f32_to_e4m3(s_in, Fp8Overflow::kSaturate));
    const float os = scale != 0 ? global / scale : 0.0f;
    for (size_t i = b; i < b + 16; ++i) {
      const float q = static_cast<float>(e2m1_round(x[i] * os));
      out[i] = finite ? q * scale / global : std::numeric_limits<float>::quiet_NaN();
    }
  }
  (void)cols;
  return out;
}

TEST(Nvfp4Activation, WorkedBlockKeepsItsGridValues) {
  // §2.8's block: with G * amax / 6 = G, the block scale is G and the codes are the worked ones;
  // the output is their values whatever G is.
  const std::vector<float> x = {0, .25f, .75f, 1.25f, 1.75f,  2.5f,  3.5f, 5,
                                6, 6,    -.3f, -.1f,  -1.75f, -5.5f, .5f,  4};
  const float expect[] = {0, 0, 1, 1, 2, 2, 4, 4, 6, 6, -0.5f, -0.0f, -2, -6, 0.5f, 4};
  for (float input_scale : {1.0f, 2.0f, 0.25f}) {
    std::vector<float> out(16);
    nvfp4_quantize_activations(x.data(), 1, 16, input_scale, out.data());
    for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], expect[i]) << input_scale << " i=" << i;
    EXPECT_TRUE(std::signbit(out[11]));  // -0.1 rounds to -0 (code 8)
  }
}

TEST(Nvfp4Activation, ValuesBeyondCalibrationSaturate) {
  // input_scale 1e-3 (G = 1000): block scale G * 6/6 = 1000 saturates to 448, so x * G / 448 =
  // 13.4 clips to 6 and decodes to 6 * 448 / 1000; 0.5 -> 1.116 -> 1.0 -> 448 / 1000.
  std::vector<float> x(16, 0.0f);
  x[0] = 6.0f;
  x[1] = 0.5f;
  x[2] = -6.0f;
  std::vector<float> out(16);
  nvfp4_quantize_activations(x.data(), 1, 16, 1e-3f, out.data());
  const float global = 1.0f / 1e-3f;
  EXPECT_EQ(out[0], 6.0f * 448.0f / global);
  EXPECT_EQ(out[1], 1.0f * 448.0f / global);
  EXPECT_EQ(out[2], -6.0f * 448.0f / global);
  EXPECT_EQ(out[3], 0.0f);
}

TEST(Nvfp4Activation, MatchesIndependentReference) {
  for (float input_scale : {1.0f / 2688, 3.0f / 2688, 0.05f, 1e-4f}) {
    const int64_t n = 5, cols = 96;
    std::vector<float> x = test::random_floats(n * cols, 7, 2.0f);
    for (int64_t i = 0; i < n * cols; i += 37) x[i] *= 1e-6f;  // tiny values and blocks
    for (int64_t i = 16; i < 32; ++i) x[i] = 0.0f;             // an all-zero block
    const std::vector<float> expect = reference(x, cols, input_scale);
    std::vector<float> out(n * cols);
    nvfp4_quantize_activations(x.data(), n, cols, input_scale, out.data());
    for (int64_t i = 0; i < n * cols; ++i) {
      ASSERT_EQ(out[i], expect[i]) << "input_scale=" << input_scale << " i=" << i << " x=" << x[i];
    }
    // In place gives the same.
    nvfp4_quantize_activations(x.data(), n, cols, input_scale, x.data());
    for (int64_t i = 0; i < n * cols; ++i) ASSERT_EQ(x[i], expect[i]) << "in place i=" << i;
  }
}

TEST(Nvfp4Activation, NonFiniteInputPoisonsItsBlockOnly) {
  std::vector<float> x = test::random_floats(48, 3);
  x[20] = std::numeric_limits<float>::infinity();
  x[40] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> expect = reference(x, 48, 0.01f);
  std::vector<float> out(48);
  nvfp4_quantize_activations(x.data(), 1, 48, 0.01f, out.data());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], expect[i]) << i;
  for (int i = 16; i < 48; ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
}

TEST(Nvfp4Activation, SimdMatchesScalarTwinBitForBit) {
  // Every SIMD target against the scalar twin: Gaussian values over many magnitudes, exact grid
  // ties (x * to_codes on 0.25, 0.75, ... when the scale is a power of two), zeros and -0,
  // subnormals, saturating outliers, NaN and inf blocks; in place too.
  const int64_t n = 7, cols = 160;
  std::vector<float> x = test::random_floats(n * cols, 19, 3.0f);
  for (int64_t i = 0; i < n * cols; ++i) {
    switch (i % 11) {
      case 1:
        x[i] *= 1e-30f;
        break;
      case 2:
        x[i] = 0.25f * static_cast<float>(i % 29) - 3.0f;  // quarter steps: ties
        break;
      case 3:
        x[i] = -0.0f;
        break;
      case 4:
        x[i] = 1e-42f;  // subnormal
        break;
      default:
        break;
    }
  }
  x[5 * 16 + 3] = 1e6f;  // one outlier
  x[7 * 16 + 1] = std::numeric_limits<float>::infinity();
  x[9 * 16 + 9] = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 11 * 16; i < 12 * 16; ++i) x[i] = 0.0f;
  const auto same = [](float a, float b) {
    return (std::isnan(a) && std::isnan(b)) ||
           std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  };
  for (float input_scale : {1.0f / 2688, 0.5f, 0.05f, 1e-4f, 1e-30f}) {
    std::vector<float> expect(n * cols);
    scalar::nvfp4_quantize_activations(x.data(), n, cols, input_scale, expect.data());
    test::for_each_simd_target([&] {
      std::vector<float> out(n * cols, 123.0f);
      nvfp4_quantize_activations(x.data(), n, cols, input_scale, out.data());
      for (int64_t i = 0; i < n * cols; ++i) {
        ASSERT_TRUE(same(out[i], expect[i]))
            << "input_scale=" << input_scale << " i=" << i << " x=" << x[i] << " got " << out[i]
            << " want " << expect[i];
      }
      std::vector<float> in_place = x;
      nvfp4_quantize_activations(in_place.data(), n, cols, input_scale, in_place.data());
      for (int64_t i = 0; i < n * cols; ++i) ASSERT_TRUE(same(in_place[i], expect[i])) << i;
    });
  }
}

TEST(Nvfp4Activation, RejectsBadArguments) {
  std::vector<float> x(32), out(32);
  EXPECT_THROW(nvfp4_quantize_activations(x.data(), 1, 24, 1.0f, out.data()), Error);
  EXPECT_THROW(nvfp4_quantize_activations(x.data(), 1, 32, 0.0f, out.data()), Error);
  EXPECT_THROW(nvfp4_quantize_activations(x.data(), 1, 32, -1.0f, out.data()), Error);
  EXPECT_THROW(nvfp4_quantize_activations(x.data(), -1, 32, 1.0f, out.data()), Error);
}

}  // namespace
}  // namespace m2fp4
