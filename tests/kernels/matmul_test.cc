// Matmul: the scalar reference against hand-computed values and an independent double-precision
// sum, and the fast kernel against the scalar reference for every weight format.
#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "kernels/test_util.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

using test::kF32Eps;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;

constexpr WeightFormat kAllFormats[] = {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kF16,
                                        WeightFormat::kFp8Block128};

TEST(MatmulScalar, HandComputedF32) {
  // W = [[1, 2, 3], [-1, 0.5, 4]], x0 = [1, 1, 1], x1 = [2, -1, 0.25]
  const float w[] = {1, 2, 3, -1, 0.5f, 4};
  const float x[] = {1, 1, 1, 2, -1, 0.25f};
  Weight weight{WeightFormat::kF32, 2, 3, w, nullptr, 0};
  float y[4];
  scalar::matmul(weight, x, 2, y);
  EXPECT_FLOAT_EQ(y[0], 6.0f);
  EXPECT_FLOAT_EQ(y[1], 3.5f);
  EXPECT_FLOAT_EQ(y[2], 2 - 2 + 0.75f);
  EXPECT_FLOAT_EQ(y[3], -2 - 0.5f + 1.0f);
}

TEST(MatmulScalar, HandComputedHalfFormats) {
  // 1.5, -2, 0.3125 are exact in bf16 and f16: bit patterns written out by hand.
  const uint16_t bf16[] = {0x3FC0, 0xC000, 0x3EA0};
  const uint16_t f16[] = {0x3E00, 0xC000, 0x3500};
  const float x[] = {2, 1, 4};
  float y = 0;
  scalar::matmul(Weight{WeightFormat::kBF16, 1, 3, bf16, nullptr, 0}, x, 1, &y);
  EXPECT_FLOAT_EQ(y, 3 - 2 + 1.25f);
  scalar::matmul(Weight{WeightFormat::kF16, 1, 3, f16, nullptr, 0}, x, 1, &y);
  EXPECT_FLOAT_EQ(y, 3 - 2 + 1.25f);
}

TEST(MatmulScalar, Fp8BlockScalesIndexedByRowBlockThenColBlock) {
  // 130 x 130 weight of e4m3 1.0 (code 0x38) and one 0.5 (code 0x30), 2 x 2 distinct scales:
  // y[r] = sum_c W[r, c] * scale[r / 128][c / 128] with x = 1. Swapping the scale indices
  // ([c/128][r/128]) or dividing by the scale would change the answer.
  const int64_t n = 130;
  std::vector<uint8_t> q(n * n, 0x38);
  q[129 * n + 129] = 0x30;
  const float scales[] = {2.0f, 3.0f, 5.0f, 7.0f};
  Weight w{WeightFormat::kFp8Block128, n, n, q.data(), scales, 2};
  std::vector<float> x(n, 1.0f), y(n);
  scalar::matmul(w, x.data(), 1, y.data());
  EXPECT_FLOAT_EQ(y[0], 128 * 2.0f + 2 * 3.0f);
  EXPECT_FLOAT_EQ(y[127], 128 * 2.0f + 2 * 3.0f);
  EXPECT_FLOAT_EQ(y[128], 128 * 5.0f + 2 * 7.0f);
  EXPECT_FLOAT_EQ(y[129], 128 * 5.0f + 1 * 7.0f + 0.5f * 7.0f);
}

TEST(MatmulScalar, MatchesDoubleSumWithinF32Bound) {
  // Independent check of the reference itself: exact decode (test_util) and a double sum.
  for (WeightFormat format : kAllFormats) {
    test::expect_scalar_matches_double_sum(format, 37, 300, 3);
  }
}

TEST(MatmulScalar, RejectsBadArguments) {
  const float w[4] = {};
  float x[2] = {}, y[2] = {};
  EXPECT_THROW(scalar::matmul(Weight{WeightFormat::kF32, 2, 2, nullptr, nullptr, 0}, x, 1, y),
               Error);
  EXPECT_THROW(scalar::matmul(Weight{WeightFormat::kFp8Block128, 2, 2, w, nullptr, 1}, x, 1, y),
               Error);
  const float s[1] = {1};
  EXPECT_THROW(scalar::matmul(Weight{WeightFormat::kFp8Block128, 2, 2, w, s, 2}, x, 1, y), Error);
  ThreadPool pool(2);
  EXPECT_THROW(matmul(Weight{WeightFormat::kBF16, 2, 2, nullptr, nullptr, 0}, x, 1, y, pool),
               Error);
}

// Fast vs scalar. Both are f32 sums of the same exactly-decoded products in different orders;
// each is within (n + 1) u sum|terms| of the exact sum, so they differ by at most twice that.
// A single wrongly decoded or skipped element (of size ~sum|terms| / n) exceeds this bound.
// The fast kernel runs once per SIMD target the CPU supports.
void expect_fast_matches_scalar(const OwnedWeight& o, int64_t n_tokens, ThreadPool& pool,
                                uint32_t seed) {
  const ScopedBf16Activations f32_activations(Bf16Activations::kF32);
  const Weight& w = o.w;
  std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> ref(n_tokens * w.rows), tol(n_tokens * w.rows);
  scalar::matmul(w, x.data(), n_tokens, ref.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum_abs = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum_abs += std::abs(o.at(r, c) * x[t * w.cols + c]);
      tol[t * w.rows + r] = 2.0 * (w.cols + 1) * kF32Eps * sum_abs;
    }
  }
  test::for_each_simd_target([&] {
    std::vector<float> fast(n_tokens * w.rows, NAN);
    matmul(w, x.data(), n_tokens, fast.data(), pool);
    for (int64_t i = 0; i < n_tokens * w.rows; ++i) {
      ASSERT_NEAR(fast[i], ref[i], tol[i])
          << weight_format_name(w.format) << " [" << w.rows << " x " << w.cols
          << "] n_tokens=" << n_tokens << " threads=" << pool.size() << " t=" << i / w.rows
          << " r=" << i % w.rows;
    }
  });
}

class MatmulFastVsScalar : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(MatmulFastVsScalar, OddShapesTokensAndThreads) {
  const WeightFormat format = GetParam();
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {1, 7}, {3, 16}, {5, 17}, {17, 33}, {31, 129}, {130, 257}, {67, 300}, {129, 1000}};
  uint32_t seed = 100;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (auto [rows, cols] : shapes) {
      OwnedWeight o = random_weight(format, rows, cols, seed++);
      for (int64_t n_tokens : {1, 3, 17}) expect_fast_matches_scalar(o, n_tokens, pool, seed++);
    }
  }
}

TEST_P(MatmulFastVsScalar, LargerDecodeAndPrefillShapes) {
  ThreadPool pool(2);
  OwnedWeight o = random_weight(GetParam(), 515, 1543, 7);
  for (int64_t n_tokens : {1, 2, 4, 9, 40, 64}) expect_fast_matches_scalar(o, n_tokens, pool, 8);
}

TEST_P(MatmulFastVsScalar, ManyRowsOneThreadSeveralTokenBlocks) {
  // One thread gets all 801 rows (several row panels of the GEMM path); 70 tokens span two
  // token blocks.
  ThreadPool pool(1);
  OwnedWeight o = random_weight(GetParam(), 801, 300, 21);
  for (int64_t n_tokens : {5, 70}) expect_fast_matches_scalar(o, n_tokens, pool, 22);
}

TEST_P(MatmulFastVsScalar, ZeroTokensOrRowsWriteNothing) {
  ThreadPool pool(2);
  OwnedWeight o = random_weight(GetParam(), 4, 9, 3);
  std::vector<float> x(9, 1.0f), y(4, 123.0f);
  matmul(o.w, x.data(), 0, y.data(), pool);
  for (float v : y) EXPECT_EQ(v, 123.0f);
}

TEST(MatmulFast, Fp8NanCodesAndLargeScalesDecodeLikeScalar) {
  // 0x7F / 0xFF are NaN in e4m3fn and must poison their row; a block scale >= 2^8 takes the
  // two-multiply decode, which must still equal e4m3 * scale rounded once.
  const int64_t rows = 5, cols = 200;
  OwnedWeight o = random_weight(WeightFormat::kFp8Block128, rows, cols, 9);
  o.u8[1 * cols + 3] = 0x7F;
  o.u8[3 * cols + 150] = 0xFF;
  std::vector<float> x = random_floats(cols, 10);
  std::vector<float> ref(rows);
  ThreadPool pool(2);
  // The f32-activation kernels (bf16 activations take matmul_fp8dot.h, tested there).
  const ScopedBf16Activations f32_activations(Bf16Activations::kF32);
  for (float big_scale : {0.5f, 300.0f, 3e30f}) {
    o.scales[1] = big_scale;
    scalar::matmul(o.w, x.data(), 1, ref.data());
    EXPECT_TRUE(std::isnan(ref[1]));
    EXPECT_TRUE(std::isnan(ref[3]));
    test::for_each_simd_target([&] {
      for (int64_t n_tokens : {1, 20}) {
        std::vector<float> xs(n_tokens * cols), ys(n_tokens * rows);
        for (int64_t t = 0; t < n_tokens; ++t) std::copy(x.begin(), x.end(), xs.begin() + t * cols);
        matmul(o.w, xs.data(), n_tokens, ys.data(), pool);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r : {0, 2, 4}) {
            double sum_abs = 0;
            for (int64_t c = 0; c < cols; ++c) sum_abs += std::abs(o.at(r, c) * x[c]);
            EXPECT_NEAR(ys[t * rows + r], ref[r], 2.0 * (cols + 1) * kF32Eps * sum_abs);
          }
          EXPECT_TRUE(std::isnan(ys[t * rows + 1]));
          EXPECT_TRUE(std::isnan(ys[t * rows + 3]));
        }
      }
    });
  }
}

TEST(MatmulBatch, MixedJobsMatchScalarForEveryThreadCount) {
  // Formats, shapes and token counts mixed in one region (GEMV and GEMM jobs together), plus
  // jobs without work; each output must match the scalar twin of its own job.
  const std::vector<test::BatchJobSpec> specs = {{WeightFormat::kBF16, 67, 130, 1},
                                                 {WeightFormat::kF32, 5, 33, 3},
                                                 {WeightFormat::kFp8Block128, 130, 257, 17},
                                                 {WeightFormat::kF16, 41, 96, 0},
                                                 {WeightFormat::kBF16, 0, 16, 4},
                                                 {WeightFormat::kF16, 200, 70, 2},
                                                 {WeightFormat::kBF16, 13, 300, 64}};
  std::vector<OwnedWeight> weights;
  std::vector<std::vector<float>> xs, refs, tols;
  for (size_t i = 0; i < specs.size(); ++i) {
    const test::BatchJobSpec& s = specs[i];
    weights.push_back(random_weight(s.format, s.rows, s.cols, 300 + i));
    xs.push_back(random_floats(s.n_tokens * s.cols, 400 + i));
    refs.emplace_back(s.n_tokens * s.rows);
    tols.emplace_back(s.n_tokens * s.rows);
    for (int64_t t = 0; t < s.n_tokens; ++t) {
      for (int64_t r = 0; r < s.rows; ++r) {
        double sum_abs = 0;
        for (int64_t c = 0; c < s.cols; ++c) {
          sum_abs += std::abs(weights[i].at(r, c) * xs[i][t * s.cols + c]);
        }
        tols[i][t * s.rows + r] = 2.0 * (s.cols + 1) * kF32Eps * sum_abs;
      }
    }
  }
  std::vector<MatmulJob> ref_jobs;
  for (size_t i = 0; i < specs.size(); ++i) {
    ref_jobs.push_back({&weights[i].w, xs[i].data(), specs[i].n_tokens, refs[i].data()});
  }
  scalar::matmul_batch(ref_jobs.data(), static_cast<int64_t>(ref_jobs.size()));
  const ScopedBf16Activations f32_activations(Bf16Activations::kF32);
  test::expect_batch_matches(specs, weights, xs, refs, tols, {1, 2, 3, 7});
}

TEST(MatmulBatch, RejectsJobWithoutWeight) {
  ThreadPool pool(2);
  MatmulJob job;
  EXPECT_THROW(matmul_batch(&job, 1, pool), Error);
  EXPECT_THROW(scalar::matmul_batch(&job, 1), Error);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, MatmulFastVsScalar, ::testing::ValuesIn(kAllFormats),
                         test::format_param_name);

}  // namespace
}  // namespace m2fp4
