// The bf16-activation FP8 matmul (matmul_fp8dot.h): the scalar twin against hand-computed values
// and an independent double-precision sum of the same rounded products (E4M3 decoded here by its
// definition, not the library's table), the fast kernel (every SIMD target, 1-3 threads, token
// counts 1-9 and beyond the 8-token register group, odd shapes across several 128 x 128 scale
// blocks) against the twin, against the f32-activation matmul within the bound the activation
// rounding allows, every E4M3 code (subnormals, zeros, +-448) decoded exactly with no NaN from a
// finite code, NaN propagation, and a token's result alone equal to its result in a batch.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/bf16_activation_checks.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/cpu/matmul_fp8dot.h"
#include "kernels/test_util.h"
#include "numerics/bf16.h"

namespace m2fp4 {
namespace {

using test::AbsSums;
using test::kF32Eps;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;

// E4M3 by its definition (bias 7, subnormals m * 2^-9, 0x7F / 0xFF NaN), apart from the library.
double test_e4m3(uint8_t code) {
  const int e = (code >> 3) & 0xF, m = code & 0x7;
  if (e == 0xF && m == 0x7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return (code & 0x80) ? -mag : mag;
}

// Whether matmul() on the current dispatch target takes the fp8 kernel (with kBf16 set): the
// AVX-512 targets on a CPU with the instructions, below the GEMM's 32 tokens (two vectors of 16
// lanes; the GEMM keeps its f32 tiles), for the token counts and widths fp8dot::takes.
bool fp8_path_active(int64_t n_tokens = 1, int64_t cols = 1) {
  return test::on_avx512_target() && fp8dot::cpu_supported() && n_tokens < 32 &&
         fp8dot::takes(cols, n_tokens);
}

// An FP8 weight from codes and block scales ((rows+127)/128 x (cols+127)/128).
OwnedWeight fp8_weight(int64_t rows, int64_t cols, std::vector<uint8_t> codes,
                       std::vector<float> scales) {
  OwnedWeight o;
  o.w.format = WeightFormat::kFp8Block128;
  o.w.rows = rows;
  o.w.cols = cols;
  o.w.scale_cols = (cols + 127) / 128;
  o.u8 = std::move(codes);
  o.scales = std::move(scales);
  o.bind();
  return o;
}

// The activation the kernel multiplies: bf16(x * s), below 2^-126 zero.
double test_scaled(float x, float s) {
  const float v = x * s;
  return std::abs(v) < 0x1p-126f ? 0.0 : double{round_to_bf16(v)};
}

// e4m3 * bf16(x s) and e4m3 * s * x.
std::pair<double, double> fp8_products(const OwnedWeight& o, int64_t r, int64_t c, float x) {
  const float s = o.scales[(r / 128) * o.w.scale_cols + c / 128];
  const double q = test_e4m3(o.u8[r * o.w.cols + c]);
  return {q * test_scaled(x, s), q * double{s} * double{x}};
}

// The FP8 kernel for the shared checks (bf16_activation_checks.h). The activation rounding
// errs by 2^-8 + 2^-23 relative: x * s rounded to f32, then to bf16.
const test::Bf16ActivationKernel kFp8Dot{&scalar::matmul_fp8_bf16_activations, &fp8_path_active,
                                         &fp8_products, 0x1p-8 + 0x1p-23};

TEST(Fp8DotScalar, HandComputed) {
  // Codes 1.0 (0x38), 2.0 (0x40), -0.5 (0xB0), block scale 0.5. x = [1 + 2^-8, 3, 5]:
  // x * s = [0.5 + 2^-9 (a tie between 0.5 and 0.5 + 2^-8: to even, 0.5), 1.5, 2.5], so
  // y = 0.5 + 3 - 1.25 = 2.25 (f32 activations: 2.25 + 2^-9).
  OwnedWeight o = fp8_weight(1, 3, {0x38, 0x40, 0xB0}, {0.5f});
  const float x[3] = {1.0f + 0x1p-8f, 3.0f, 5.0f};
  float y = 0;
  scalar::matmul_fp8_bf16_activations(o.w, x, 1, &y);
  EXPECT_EQ(y, 2.25f);
  // The smallest subnormal code 0x01 (2^-9) times x * s = 2^10 * 0.5: 1.
  OwnedWeight sub = fp8_weight(1, 1, {0x01}, {0.5f});
  const float x2 = 1024.0f;
  scalar::matmul_fp8_bf16_activations(sub.w, &x2, 1, &y);
  EXPECT_EQ(y, 1.0f);
  EXPECT_THROW(scalar::matmul_fp8_bf16_activations(
                   Weight{WeightFormat::kBF16, 1, 1, nullptr, nullptr, 0}, nullptr, 0, nullptr),
               Error);
}

TEST(Fp8DotScalar, MatchesDoubleSumOfRoundedProducts) {
  const int64_t cols = 300, n_tokens = 3;
  const OwnedWeight o = random_weight(WeightFormat::kFp8Block128, 131, cols, 5);
  test::expect_twin_matches_double_sum(kFp8Dot, o, random_floats(n_tokens * cols, 6), n_tokens);
}

TEST(Fp8DotFast, OddShapesTokenCountsAndThreads) {
  ThreadPool p1(1), p2(2), p3(3);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1},    {1, 7},    {3, 64},    {5, 65},   {6, 127},
      {17, 128}, {31, 129}, {130, 257}, {67, 300}, {259, 200}};
  uint32_t seed = 100;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(WeightFormat::kFp8Block128, rows, cols, seed++);
    for (int64_t n_tokens = 1; n_tokens <= 9; ++n_tokens) {
      test::expect_fast_matches_twin(kFp8Dot, o, n_tokens, {&p1, &p2, &p3}, seed++);
    }
  }
}

TEST(Fp8DotFast, DecodeShapesAndTokenTiling) {
  ThreadPool p2(2);
  OwnedWeight o = random_weight(WeightFormat::kFp8Block128, 261, 1000, 7);
  OwnedWeight narrow = random_weight(WeightFormat::kFp8Block128, 133, 1024, 9);
  for (int64_t n_tokens : {4, 8, 9})
    test::expect_fast_matches_twin(kFp8Dot, narrow, n_tokens, {&p2}, 10);
  for (int64_t n_tokens : {1, 2, 3, 8, 12, 17, 31, 32}) {
    test::expect_fast_matches_twin(kFp8Dot, o, n_tokens, {&p2}, 8);
  }
}

TEST(Fp8DotFast, EveryCodeDecodesExactly) {
  // Row r, column c holds code (r + 37 c) mod 256 (NaN codes replaced by 0x00 / 0x80), so the
  // one-hot token t (x = 1 at column t) reads every code once over the 256 rows. Block scales
  // are powers of two, so x * s = s is exact and y = e4m3(code) * s exactly (one nonzero term).
  const int64_t rows = 256, cols = 200, n_tokens = 9;
  std::vector<uint8_t> codes(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      uint8_t code = static_cast<uint8_t>((r + 37 * c) & 0xFF);
      if ((code & 0x7F) == 0x7F) code &= 0x80;
      codes[r * cols + c] = code;
    }
  }
  // 2 x 2 blocks of scales.
  OwnedWeight o = fp8_weight(rows, cols, codes, {1.0f, 0.25f, 0x1p-20f, 0x1p20f});
  std::vector<float> x(n_tokens * cols, 0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) x[t * cols + t * 20] = 1.0f;  // columns 0 .. 160
  ThreadPool p2(2);
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  test::for_each_simd_target([&] {
    std::vector<float> y(n_tokens * rows, NAN);
    matmul(o.w, x.data(), n_tokens, y.data(), p2);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int64_t c = t * 20;
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t code = codes[r * cols + c];
        const double s = o.scales[(r / 128) * 2 + c / 128];
        ASSERT_EQ(double{y[t * rows + r]}, test_e4m3(code) * s)
            << "code 0x" << std::hex << int{code} << std::dec << " t=" << t << " r=" << r;
      }
    }
  });
  // The extremes at full width: +-448 and the smallest subnormal +-2^-9 in one row, with
  // activations that keep every product a normal f32.
  OwnedWeight e = fp8_weight(2, 4, {0x7E, 0xFE, 0x01, 0x81, 0x01, 0x7E, 0x00, 0x80}, {2.0f});
  const float xe[4] = {1.0f, 0.5f, 0x1p-100f, 3.0f};
  test::for_each_simd_target([&] {
    float y[2] = {NAN, NAN};
    matmul(e.w, xe, 1, y, p2);
    // 448 * 2 - 448 * 1 + 2^-9 * 2^-99 - 2^-9 * 6: the tiny term is absorbed.
    EXPECT_EQ(y[0], static_cast<float>(896.0 - 448.0 - 6.0 / 512));
    EXPECT_EQ(y[1], static_cast<float>(2.0 / 512 + 448.0));
  });
}

TEST(Fp8DotFast, NanCodesAndActivationsPropagate) {
  const int64_t rows = 6, cols = 150, n_tokens = 3;
  OwnedWeight o = random_weight(WeightFormat::kFp8Block128, rows, cols, 41);
  o.u8[1 * cols + 5] = 0x7F;    // row 1: NaN code
  o.u8[2 * cols + 149] = 0xFF;  // row 2: the negative NaN code in the tail
  std::vector<float> x = random_floats(n_tokens * cols, 42);
  x[1 * cols + 40] = std::numeric_limits<float>::quiet_NaN();  // token 1: NaN activation
  ThreadPool p2(2);
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  test::for_each_simd_target([&] {
    std::vector<float> fast(n_tokens * rows);
    matmul(o.w, x.data(), n_tokens, fast.data(), p2);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float v = fast[t * rows + r];
        if (t == 1 || r == 1 || r == 2) {
          EXPECT_TRUE(std::isnan(v)) << t << " " << r;
        } else {
          EXPECT_TRUE(std::isfinite(v)) << t << " " << r;
        }
      }
    }
  });
}

TEST(Fp8DotFast, ScaledActivationBelowNormalRangeIsZero) {
  // x * s = the largest f32 subnormal (just below 2^-126): zero in the kernel (and the twin),
  // though round-to-nearest-even alone would carry it up to 2^-126.
  OwnedWeight o = fp8_weight(1, 2, {0x38, 0x38}, {1.0f});
  const float x[2] = {std::bit_cast<float>(0x007FFFFFu), 0.0f};
  float twin = NAN;
  scalar::matmul_fp8_bf16_activations(o.w, x, 1, &twin);
  EXPECT_EQ(twin, 0.0f);
  ThreadPool p1(1);
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  test::for_each_simd_target([&] {
    float y = NAN;
    matmul(o.w, x, 1, &y, p1);
    if (fp8_path_active()) {
      EXPECT_EQ(y, twin);
    }
  });
}

TEST(Fp8DotFast, TokenAloneEqualsBatchOfTwoToEightBitForBit) {
  // One token runs vdpbf16ps, 2-8 tokens f32 FMAs that must give its bits (matmul_fp8dot.cc).
  // Token 1's scaled activations lie near 2^-118, so many products with the small codes are f32
  // subnormals, which vdpbf16ps flushes to zero (an FMA without FTZ would keep them).
  // 400 columns: one column block; 2100: several (the accumulators parked between them) and a
  // ragged last one. 300 rows: three scale blocks, the last with a 1-row tile.
  for (const int64_t cols : {400, 2100}) {
    const int64_t rows = 300;
    OwnedWeight o = random_weight(WeightFormat::kFp8Block128, rows, cols, 71);
    std::vector<float> x = random_floats(8 * cols, 72);
    for (int64_t c = 0; c < cols; ++c) x[cols + c] *= 0x1p-118f / o.w.block_scale[c / 128];
    const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
    ThreadPool p2(2);
    test::for_each_simd_target([&] {
      std::vector<float> alone(8 * rows);
      for (int64_t t = 0; t < 8; ++t)
        matmul(o.w, x.data() + t * cols, 1, alone.data() + t * rows, p2);
      for (int64_t n_tokens = 2; n_tokens <= 8; ++n_tokens) {
        if (!fp8_path_active(n_tokens, cols)) continue;
        std::vector<float> batch(n_tokens * rows);
        matmul(o.w, x.data(), n_tokens, batch.data(), p2);
        for (int64_t i = 0; i < n_tokens * rows; ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(batch[i]), std::bit_cast<uint32_t>(alone[i]))
              << "tokens " << n_tokens << " token " << i / rows << " row " << i % rows << ": "
              << batch[i] << " vs " << alone[i];
        }
      }
    });
  }
}

TEST(Fp8DotFast, TokenAloneEqualsTokenInBatchAndModeSelects) {
  const int64_t rows = 300, cols = 400, n = 20;  // 20 x 400 <= 8192: fp8dot::takes
  OwnedWeight o = random_weight(WeightFormat::kFp8Block128, rows, cols, 61);
  const std::vector<float> x = random_floats(n * cols, 62);
  const AbsSums sums = test::abs_sums(kFp8Dot, o, x, n);
  const double order = 2.0 * (cols + 1) * kF32Eps;
  std::vector<float> exact(n * rows);
  scalar::matmul(o.w, x.data(), n, exact.data());
  ThreadPool p1(1), p3(3);
  test::for_each_simd_target([&] {
    const bool active = fp8_path_active(n, cols);
    std::vector<float> batch(n * rows), alone(rows), f32_mode_y(n * rows);
    {
      const ScopedBf16Activations mode(Bf16Activations::kBf16);
      matmul(o.w, x.data(), n, batch.data(), p3);
      for (int64_t t : {0, 7, 8, 19}) {
        matmul(o.w, x.data() + t * cols, 1, alone.data(), p1);
        for (int64_t r = 0; r < rows; ++r) {
          // Same products in the same order, whatever the tile, token group or thread split.
          if (active) {
            ASSERT_EQ(alone[r], batch[t * rows + r]) << t << " " << r;
          }
        }
      }
    }
    {
      const ScopedBf16Activations mode(Bf16Activations::kF32);
      matmul(o.w, x.data(), n, f32_mode_y.data(), p3);
    }
    // The f32 setting keeps the f32 kernels: only the summation order differs from
    // scalar::matmul. The bf16 setting, where it runs, rounds the activations: some outputs
    // move by more than the summation order allows.
    int64_t beyond_order = 0;
    for (size_t i = 0; i < exact.size(); ++i) {
      ASSERT_NEAR(f32_mode_y[i], exact[i], order * sums.exact[i]) << i;
      if (std::abs(double(batch[i]) - exact[i]) > order * sums.exact[i]) ++beyond_order;
    }
    if (active) {
      EXPECT_GT(beyond_order, 0);
    } else {
      EXPECT_EQ(batch, f32_mode_y);
    }
  });
}

}  // namespace
}  // namespace m2fp4
