// The int8-activation 4-bit GEMV (matmul4_int8.h): the activation quantizer against hand-computed
// blocks and its rounding bound, the scalar twin against an independent double-precision sum of
// the same integer math, the int8 result against the f32-activation matmul within the bound the
// activation rounding allows (|x - q d| <= d / 2 per element), and the fast kernel (every SIMD
// target, thread count, token count: decode GEMV and prefill GEMM alike) against the scalar twin,
// and a token's result alone against the same token inside a batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::group_of;
using test::kF32Eps;
using test::kFourBitFormats;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;
using test::ScopedFourBitActivations;

// The integer a code stands for in the int8 math (E2M1 values x 2, IQ4_NL levels), from the
// tests' own tables.
double code_integer(WeightFormat format, int code) {
  return format == WeightFormat::kIq4nl16 ? test::kTestIq4nl[code] : 2 * test::kTestE2m1[code];
}
double code_factor(WeightFormat format) {
  return format == WeightFormat::kIq4nl16 ? 1.0 : 0.5;
}

struct Quantized {
  std::vector<int8_t> q;
  std::vector<float> d;
};
Quantized quantize(const float* x, int64_t cols) {
  Quantized out;
  out.q.resize(cols);
  out.d.resize((cols + kInt8ActivationBlock - 1) / kInt8ActivationBlock);
  scalar::quantize_activations_int8(x, cols, out.q.data(), out.d.data());
  return out;
}

// ---- the activation quantizer ----

TEST(Int8Activations, WorkedBlockRoundsToNearestEven) {
  // amax 127 gives d = 1: q is x rounded to nearest, ties to even; a second block with amax 2.54
  // (d = 0.02) maps +-2.54 to +-127 and 0.004 (0.2 d) to 0.
  std::vector<float> x(64, 0.0f);
  const float first[] = {127.0f, -63.5f, 0.5f, 1.5f, -2.5f, 3.4f, -0.49f, 126.6f};
  for (int i = 0; i < 8; ++i) x[i] = first[i];
  x[32] = 2.54f;
  x[33] = -2.54f;
  x[34] = 0.004f;
  const Quantized got = quantize(x.data(), 64);
  EXPECT_EQ(got.d[0], 1.0f);
  const int8_t expect[] = {127, -64, 0, 2, -2, 3, 0, 127};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(got.q[i], expect[i]) << "i=" << i;
  for (int i = 8; i < 32; ++i) EXPECT_EQ(got.q[i], 0);
  EXPECT_EQ(got.d[1], 2.54f / 127.0f);
  EXPECT_EQ(got.q[32], 127);
  EXPECT_EQ(got.q[33], -127);
  EXPECT_EQ(got.q[34], 0);
}

TEST(Int8Activations, ZeroAndNonFiniteBlocks) {
  std::vector<float> x(96, 0.0f);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  x[41] = 3.0f;
  x[70] = -std::numeric_limits<float>::infinity();
  x[71] = 1.0f;
  const Quantized got = quantize(x.data(), 80);  // a ragged last block of 16
  ASSERT_EQ(got.d.size(), 3u);
  EXPECT_EQ(got.d[0], 0.0f);  // all zero
  EXPECT_TRUE(std::isnan(got.d[1]));
  EXPECT_TRUE(std::isinf(got.d[2]));
  for (int8_t q : got.q) EXPECT_EQ(q, 0);
}

TEST(Int8Activations, RoundingErrorWithinHalfAScale) {
  // Any x: |x - q d| <= d / 2 up to f32 rounding of d and of x / d (q <= 127 steps of d).
  std::vector<float> x = random_floats(32 * 50 + 7, 3, 2.0f);
  for (size_t i = 0; i < x.size(); i += 37) x[i] *= 1e-30f;  // tiny and huge ranges
  for (size_t i = 5; i < x.size(); i += 91) x[i] *= 1e30f;
  const Quantized got = quantize(x.data(), static_cast<int64_t>(x.size()));
  for (size_t c = 0; c < x.size(); ++c) {
    const double d = got.d[c / 32];
    ASSERT_GT(d, 0.0);
    ASSERT_LE(std::abs(int{got.q[c]}), 127);
    ASSERT_LE(std::abs(double{x[c]} - got.q[c] * d), d * (0.5 + 256 * kF32Eps)) << "c=" << c;
  }
}

// ---- the scalar twin ----

// sum over groups of code_integer * q * (m * d) * factor in double: the int8 math without f32.
double int8_reference(const OwnedWeight& o, int64_t r, const Quantized& xq, double* sum_abs) {
  const Weight& w = o.w;
  double y = 0;
  *sum_abs = 0;
  for (int64_t c = 0; c < w.cols; ++c) {
    const double term = code_integer(w.format, test::test_nibble(o.u8, w.cols, r, c)) * xq.q[c] *
                        o.group_multiplier(r, c / w.group_size) * xq.d[c / 32];
    y += term;
    *sum_abs += std::abs(term);
  }
  *sum_abs *= code_factor(w.format);
  return y * code_factor(w.format);
}

TEST(Int8Matmul4Scalar, MatchesIndependentIntegerSum) {
  for (WeightFormat format : kFourBitFormats) {
    SCOPED_TRACE(weight_format_name(format));
    const int64_t rows = 9, cols = 10 * group_of(format) + 32, n_tokens = 3;
    OwnedWeight o = random_weight(format, rows, cols, 51);
    const std::vector<float> x = random_floats(n_tokens * cols, 52);
    std::vector<float> y(n_tokens * rows);
    scalar::matmul_four_bit_int8(o.w, x.data(), n_tokens, y.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const Quantized xq = quantize(x.data() + t * cols, cols);
      for (int64_t r = 0; r < rows; ++r) {
        double sum_abs = 0;
        const double ref = int8_reference(o, r, xq, &sum_abs);
        // m * d rounded, the product rounded, groups summed in f32.
        EXPECT_NEAR(y[t * rows + r], ref, (cols / group_of(format) + 4) * kF32Eps * sum_abs)
            << "t=" << t << " r=" << r;
      }
    }
  }
}

// |int8 - f32 activations| <= sum_c |W_c| * (d_b / 2 + slack) plus both f32 summation errors.
void expect_within_activation_rounding_bound(const OwnedWeight& o, const std::vector<float>& x,
                                             int64_t n_tokens, const std::vector<float>& y_int8) {
  const Weight& w = o.w;
  std::vector<float> y_f32(n_tokens * w.rows);
  scalar::matmul(w, x.data(), n_tokens, y_f32.data());
  double worst_fraction = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const Quantized xq = quantize(x.data() + t * w.cols, w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
      double rounding = 0, magnitude = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const double wc = std::abs(o.at(r, c)), d = xq.d[c / 32];
        rounding += wc * d * (0.5 + 256 * kF32Eps);
        magnitude += wc * (std::abs(x[t * w.cols + c]) + d);
      }
      const double bound = rounding + 2 * (w.cols + 8) * kF32Eps * magnitude;
      const double err = std::abs(double{y_int8[t * w.rows + r]} - y_f32[t * w.rows + r]);
      ASSERT_LE(err, bound) << weight_format_name(w.format) << " t=" << t << " r=" << r;
      worst_fraction = std::max(worst_fraction, err / bound);
    }
  }
  // Rounding errors of random sign add up like a random walk: far below the worst case.
  EXPECT_LT(worst_fraction, 0.5) << weight_format_name(w.format);
}

TEST(Int8Matmul4Scalar, WithinActivationRoundingBoundOfF32Activations) {
  for (WeightFormat format : kFourBitFormats) {
    const int64_t rows = 33, cols = 1024, n_tokens = 4;
    OwnedWeight o = random_weight(format, rows, cols, 61);
    const std::vector<float> x = random_floats(n_tokens * cols, 62);
    std::vector<float> y(n_tokens * rows);
    scalar::matmul_four_bit_int8(o.w, x.data(), n_tokens, y.data());
    expect_within_activation_rounding_bound(o, x, n_tokens, y);
  }
}

TEST(Int8Matmul4Scalar, RejectsNonFourBitWeights) {
  OwnedWeight o = random_weight(WeightFormat::kBF16, 2, 32, 1);
  std::vector<float> x(32, 1.0f), y(2);
  EXPECT_THROW(scalar::matmul_four_bit_int8(o.w, x.data(), 1, y.data()), Error);
  EXPECT_THROW(parse_four_bit_activations("int4"), Error);
  EXPECT_EQ(parse_four_bit_activations("f32"), FourBitActivations::kF32);
  EXPECT_EQ(parse_four_bit_activations("int8"), FourBitActivations::kInt8);
}

// ---- fast vs scalar twin ----

// Per output: the tolerance of the fast int8 kernel against the twin (summation per 8-column lane
// instead of per group: about cols / 8 + 32 roundings of the lane terms) and of the f32 kernels
// against scalar::matmul (as in matmul4_test.cc).
struct Tolerances {
  std::vector<double> twin, f32;
};
Tolerances tolerances(const OwnedWeight& o, const float* x, int64_t n_tokens) {
  const Weight& w = o.w;
  Tolerances tol{std::vector<double>(n_tokens * w.rows), std::vector<double>(n_tokens * w.rows)};
  for (int64_t t = 0; t < n_tokens; ++t) {
    const Quantized xq = quantize(x + t * w.cols, w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum_abs = 0, f32_abs = 0;
      int8_reference(o, r, xq, &sum_abs);
      for (int64_t c = 0; c < w.cols; ++c) f32_abs += std::abs(o.at(r, c) * x[t * w.cols + c]);
      tol.twin[t * w.rows + r] = 2 * (w.cols / 8 + 40) * kF32Eps * sum_abs;
      tol.f32[t * w.rows + r] = 2 * (w.cols + 1) * kF32Eps * f32_abs;
    }
  }
  return tol;
}

// Runs matmul in int8 mode on every target and pool. On targets with the int8 kernel every call
// (GEMV and GEMM token counts alike) matches the int8 twin up to f32 summation order; other
// targets match scalar::matmul.
void expect_fast_matches_twin(const OwnedWeight& o, const std::vector<float>& x, int64_t n_tokens,
                              std::vector<ThreadPool*> pools) {
  const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
  const Weight& w = o.w;
  std::vector<float> twin(n_tokens * w.rows), f32(n_tokens * w.rows);
  scalar::matmul_four_bit_int8(w, x.data(), n_tokens, twin.data());
  scalar::matmul(w, x.data(), n_tokens, f32.data());
  const Tolerances tols = tolerances(o, x.data(), n_tokens);
  for (ThreadPool* pool : pools) {
    test::for_each_simd_target([&] {
      const bool int8 = test::int8_activations_active();
      const std::vector<float>& ref = int8 ? twin : f32;
      const std::vector<double>& tol = int8 ? tols.twin : tols.f32;
      std::vector<float> fast(n_tokens * w.rows, 12345.0f);
      matmul(w, x.data(), n_tokens, fast.data(), *pool);
      test::expect_near_or_same_nonfinite(fast, ref, tol, [&](int64_t i) {
        return std::string(weight_format_name(w.format)) + " [" + std::to_string(w.rows) + " x " +
               std::to_string(w.cols) + "] n_tokens=" + std::to_string(n_tokens) +
               " threads=" + std::to_string(pool->size()) + " int8=" + std::to_string(int8) +
               " t=" + std::to_string(i / w.rows) + " r=" + std::to_string(i % w.rows);
      });
    });
  }
}

class Int8Matmul4FastVsTwin : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(Int8Matmul4FastVsTwin, ShapesTokenCountsAndThreads) {
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format);
  // cols: one group, a ragged chunk, exactly one 128-column chunk, chunks plus a ragged tail.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, g}, {3, 2 * g}, {7, 128}, {17, 8 * g + g}, {31, 256 + g}, {67, 384}};
  ThreadPool p1(1), p2(2), p3(3);
  uint32_t seed = 200;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(format, rows, cols, seed++);
    for (int64_t n_tokens : {1, 2, 3, 5, 17, 40}) {
      expect_fast_matches_twin(o, random_floats(n_tokens * cols, seed++), n_tokens,
                               {&p1, &p2, &p3});
    }
  }
}

TEST_P(Int8Matmul4FastVsTwin, PrefillTokenCounts) {
  // GEMM token counts (from 32 on; the f32 kernels switch to the GEMM there): ragged chunks and
  // token blocks, 1-3 threads.
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 2 * g}, {29, 256 + g}, {37, 640}};
  ThreadPool p1(1), p2(2), p3(3);
  uint32_t seed = 300;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(format, rows, cols, seed++);
    for (int64_t n_tokens : {32, 33, 64, 127, 200}) {
      expect_fast_matches_twin(o, random_floats(n_tokens * cols, seed++), n_tokens,
                               {&p1, &p2, &p3});
    }
  }
}

TEST_P(Int8Matmul4FastVsTwin, TokenResultIndependentOfBatchSize) {
  // A token's output alone (the GEMV) and inside a batch of 64 (the prefill GEMM): with the int8
  // kernel the same steps, so the same bits; the f32 kernels differ by summation order only.
  const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
  const int64_t rows = 45, cols = 384 + group_of(GetParam()), n_tokens = 64;
  OwnedWeight o = random_weight(GetParam(), rows, cols, 311);
  const std::vector<float> x = random_floats(n_tokens * cols, 312);
  const Tolerances tols = tolerances(o, x.data(), n_tokens);
  ThreadPool p2(2);
  test::for_each_simd_target([&] {
    std::vector<float> batch(n_tokens * rows);
    matmul(o.w, x.data(), n_tokens, batch.data(), p2);
    for (int64_t t : {0, 1, 31, 32, 63}) {
      std::vector<float> alone(rows);
      matmul(o.w, x.data() + t * cols, 1, alone.data(), p2);
      for (int64_t r = 0; r < rows; ++r) {
        const float in_batch = batch[t * rows + r];
        if (test::int8_activations_active()) {
          ASSERT_EQ(alone[r], in_batch) << "t=" << t << " r=" << r;
        } else {
          ASSERT_NEAR(alone[r], in_batch, 2 * tols.f32[t * rows + r]) << "t=" << t << " r=" << r;
        }
      }
    }
  });
}

TEST_P(Int8Matmul4FastVsTwin, DecodeShapeAndTheBoundOnTheFastPath) {
  ThreadPool p2(2);
  OwnedWeight o = random_weight(GetParam(), 515, 1088, 71);
  for (int64_t n_tokens : {1, 4}) {
    const std::vector<float> x = random_floats(n_tokens * 1088, 72);
    expect_fast_matches_twin(o, x, n_tokens, {&p2});
    const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
    std::vector<float> fast(n_tokens * 515);
    matmul(o.w, x.data(), n_tokens, fast.data(), p2);
    expect_within_activation_rounding_bound(o, x, n_tokens, fast);
    if (test::int8_activations_active()) {
      // The option applies: the f32-activation result differs.
      const ScopedFourBitActivations f32_mode(FourBitActivations::kF32);
      std::vector<float> exact(fast.size());
      matmul(o.w, x.data(), n_tokens, exact.data(), p2);
      EXPECT_NE(fast, exact);
    }
  }
}

TEST_P(Int8Matmul4FastVsTwin, NonFiniteScalesAndActivations) {
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format), rows = 6, cols = 8 * g;
  OwnedWeight o = random_weight(format, rows, cols, 81);
  const int64_t groups = cols / g;
  switch (format) {
    case WeightFormat::kNvfp4:
      o.group_scales[1 * groups + 3] = 0x7F;
      o.group_scales[4 * groups + 0] = 0xFF;
      break;
    case WeightFormat::kMxfp4:
      o.group_scales[1 * groups + 3] = 0xFF;
      break;
    default:
      o.group_scales[2 * (1 * groups + 3) + 1] = 0x7E;  // f16 NaN
      o.group_scales[2 * (4 * groups + 0) + 1] = 0xFC;  // f16 -inf
      break;
  }
  ThreadPool p2(2);
  for (int64_t n_tokens : {1, 3, 35}) {
    std::vector<float> x = random_floats(n_tokens * cols, 82);
    expect_fast_matches_twin(o, x, n_tokens, {&p2});
    x[n_tokens * cols - 5] = std::numeric_limits<float>::quiet_NaN();  // last token: all NaN
    expect_fast_matches_twin(o, x, n_tokens, {&p2});
  }
}

TEST_P(Int8Matmul4FastVsTwin, ExtremeNvfp4GlobalScales) {
  // The kernel's short scale decode covers |global| < 256; larger ones, subnormal products and 0
  // take the generic decode. Either way the multipliers are group_scale_value()'s.
  if (GetParam() != WeightFormat::kNvfp4) GTEST_SKIP() << "NVFP4 only";
  ThreadPool p2(2);
  OwnedWeight o = random_weight(WeightFormat::kNvfp4, 9, 256, 101);
  for (float global : {1.0f, -0.75f, 255.0f, 300.0f, 3e30f, 1e-38f, 0.0f}) {
    SCOPED_TRACE(global);
    o.w.global_scale = global;
    for (int64_t n_tokens : {1, 5, 40}) {
      expect_fast_matches_twin(o, random_floats(n_tokens * 256, 102), n_tokens, {&p2});
    }
  }
}

TEST(Int8Matmul4Batch, SharedInputsAcrossJobsAndFormats) {
  // w1/w3-like jobs share one input (quantized once per code bias), a third job reads another.
  const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
  for (const int64_t n_tokens : {2, 48}) {
    const int64_t cols = 256;
    OwnedWeight a = random_weight(WeightFormat::kNvfp4, 40, cols, 91);
    OwnedWeight b = random_weight(WeightFormat::kMxfp4, 24, cols, 92);
    OwnedWeight c = random_weight(WeightFormat::kIq4nl16, 36, cols, 93);
    OwnedWeight e = random_weight(WeightFormat::kNvfp4, 12, cols, 94);
    const std::vector<float> x = random_floats(n_tokens * cols, 95);
    const std::vector<float> x2 = random_floats(n_tokens * cols, 96);
    const OwnedWeight* weights[] = {&a, &b, &c, &e};
    const float* inputs[] = {x.data(), x.data(), x.data(), x2.data()};
    ThreadPool pool(2);
    test::for_each_simd_target([&] {
      std::vector<std::vector<float>> ys;
      for (const OwnedWeight* o : weights) ys.emplace_back(n_tokens * o->w.rows);
      std::vector<MatmulJob> jobs;
      for (int i = 0; i < 4; ++i)
        jobs.push_back({&weights[i]->w, inputs[i], n_tokens, ys[i].data()});
      matmul_batch(jobs.data(), 4, pool);
      for (int i = 0; i < 4; ++i) {
        const Weight& w = weights[i]->w;
        std::vector<float> ref(ys[i].size());
        const Tolerances tols = tolerances(*weights[i], inputs[i], n_tokens);
        const bool int8 = test::int8_activations_active();
        if (int8) {
          scalar::matmul_four_bit_int8(w, inputs[i], n_tokens, ref.data());
        } else {
          scalar::matmul(w, inputs[i], n_tokens, ref.data());
        }
        for (size_t k = 0; k < ref.size(); ++k) {
          ASSERT_NEAR(ys[i][k], ref[k], int8 ? tols.twin[k] : tols.f32[k])
              << "job " << i << " element " << k << " n_tokens " << n_tokens;
        }
      }
    });
  }
}

INSTANTIATE_TEST_SUITE_P(FourBit, Int8Matmul4FastVsTwin, ::testing::ValuesIn(kFourBitFormats),
                         test::format_param_name);

}  // namespace
}  // namespace m2fp4
