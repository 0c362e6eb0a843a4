// Matmul on the 4-bit weight formats (NVFP4, MXFP4, IQ4_NL x16): the scalar decoder against
// hand-computed blocks (quant-formats.md §2.8) and an independent decoder (test_util.h), and the
// fast kernels (GEMV and GEMM paths, every SIMD target) against the scalar twin, with f32
// activations (the int8-activation GEMV is tested in matmul4_int8_test.cc).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::group_of;
using test::kF32Eps;
using test::kFourBitFormats;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;

// ---- scalar decode and matmul, hand-computed ----

TEST(Matmul4Scalar, WorkedNvfp4BlockDecodes) {
  // quant-formats.md §2.8: codes [0,0,2,2,4,4,6,6,7,7,9,8,12,15,1,6] packed as
  // 00 22 44 66 77 89 FC 61 with block scale 0x38 (1.0) and weight_scale_2 1.0.
  const uint8_t packed[] = {0x00, 0x22, 0x44, 0x66, 0x77, 0x89, 0xFC, 0x61};
  const float expect[] = {0, 0, 1, 1, 2, 2, 4, 4, 6, 6, -0.5f, -0.0f, -2, -6, 0.5f, 4};
  uint8_t scale = 0x38;
  Weight w;
  w.format = WeightFormat::kNvfp4;
  w.rows = 1;
  w.cols = 16;
  w.data = packed;
  w.group_scale = &scale;
  w.group_size = 16;
  w.global_scale = 1.0f;
  float row[16];
  decode_weight_row(w, 0, row);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(row[c], expect[c]) << "c=" << c;
  EXPECT_TRUE(std::signbit(row[11]));  // code 8 is -0
  // x = 1..16: sum_c value[c] * (c + 1), written out.
  float x[16];
  for (int c = 0; c < 16; ++c) x[c] = static_cast<float>(c + 1);
  float y = 0;
  scalar::matmul(w, x, 1, &y);
  EXPECT_EQ(y, 3 * 1 + 4 * 1 + 5 * 2 + 6 * 2 + 7 * 4 + 8 * 4 + 9 * 6 + 10 * 6 - 11 * 0.5f - 13 * 2 -
                   14 * 6 + 15 * 0.5f + 16 * 4);
  // Block scale 0x40 (2.0) with global 0.25: every value halves.
  scale = 0x40;
  w.global_scale = 0.25f;
  decode_weight_row(w, 0, row);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(row[c], expect[c] * 0.5f) << "c=" << c;
}

TEST(Matmul4Scalar, Mxfp4GroupsOf32AndNibbleOrder) {
  // Row 0: group 0 all code 3 (1.5) with E8M0 128 (2.0), group 1 all code 9 (-0.5) with 126
  // (0.5). Row 1: bytes 0x71 (even column code 1 = 0.5, odd column code 7 = 6.0), scale 127.
  std::vector<uint8_t> packed(2 * 32);
  for (int j = 0; j < 16; ++j) packed[j] = 0x33;
  for (int j = 16; j < 32; ++j) packed[j] = 0x99;
  for (int j = 32; j < 64; ++j) packed[j] = 0x71;
  const uint8_t scales[] = {128, 126, 127, 127};
  Weight w;
  w.format = WeightFormat::kMxfp4;
  w.rows = 2;
  w.cols = 64;
  w.data = packed.data();
  w.group_scale = scales;
  w.group_size = 32;
  std::vector<float> x(64);
  for (int c = 0; c < 64; ++c) x[c] = c % 2 == 0 ? 1.0f : 0.0f;  // even columns only
  float y[2];
  scalar::matmul(w, x.data(), 1, y);
  EXPECT_EQ(y[0], 16 * 1.5f * 2.0f + 16 * -0.5f * 0.5f);
  EXPECT_EQ(y[1], 32 * 0.5f);  // 32 * 6.0 if the nibble order were swapped
}

TEST(Matmul4Scalar, Iq4nl16NegativeF16ScaleMirrorsLevels) {
  // Codes 0..15 in order (bytes 0x10, 0x32, ...), f16 scale -0.5 (0xB800): W[c] = -0.5 level[c].
  uint8_t packed[8];
  for (int j = 0; j < 8; ++j) packed[j] = static_cast<uint8_t>((2 * j) | ((2 * j + 1) << 4));
  const uint8_t scale[] = {0x00, 0xB8};  // little endian 0xB800
  Weight w;
  w.format = WeightFormat::kIq4nl16;
  w.rows = 1;
  w.cols = 16;
  w.data = packed;
  w.group_scale = scale;
  w.group_size = 16;
  float row[16];
  decode_weight_row(w, 0, row);
  const float levels[] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(row[c], -0.5f * levels[c]) << "c=" << c;
  std::vector<float> ones(16, 1.0f);
  float y = 0;
  scalar::matmul(w, ones.data(), 1, &y);
  EXPECT_EQ(y, 47.0f);  // levels sum to -94
}

TEST(Matmul4Scalar, DecoderMatchesIndependentDecoder) {
  for (WeightFormat format : kFourBitFormats) {
    SCOPED_TRACE(weight_format_name(format));
    const int64_t rows = 7, cols = 4 * group_of(format) * 3;
    OwnedWeight o = random_weight(format, rows, cols, 5);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      decode_weight_row(o.w, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        const float expect = static_cast<float>(o.at(r, c));
        ASSERT_EQ(weight_element(o.w, r, c), expect) << "r=" << r << " c=" << c;
        ASSERT_EQ(row[c], expect) << "r=" << r << " c=" << c;
      }
    }
  }
}

TEST(Matmul4Scalar, MatchesDoubleSumWithinF32Bound) {
  for (WeightFormat format : kFourBitFormats) {
    test::expect_scalar_matches_double_sum(format, 9, 10 * group_of(format), 3);
  }
}

TEST(Matmul4Scalar, RejectsMissingScalesAndRaggedGroups) {
  const uint8_t codes[64] = {};
  const uint8_t scales[8] = {};
  float x[64] = {}, y[4] = {};
  Weight w;
  w.format = WeightFormat::kNvfp4;
  w.rows = 2;
  w.cols = 32;
  w.data = codes;
  w.group_size = 16;
  EXPECT_THROW(scalar::matmul(w, x, 1, y), Error);  // no group scales
  w.group_scale = scales;
  w.cols = 24;  // not a multiple of 16
  EXPECT_THROW(scalar::matmul(w, x, 1, y), Error);
  ThreadPool pool(2);
  EXPECT_THROW(matmul(w, x, 1, y, pool), Error);
  w.cols = 32;
  w.group_size = 0;
  EXPECT_THROW(matmul(w, x, 1, y, pool), Error);
}

// ---- fast vs scalar ----

// Tolerance of one output: both sides are f32 sums of the same exactly decoded products in
// different orders, each within (n + 1) u sum|terms| of the exact sum.
std::vector<float> tolerances(const OwnedWeight& o, const std::vector<float>& x, int64_t n_tokens) {
  const Weight& w = o.w;
  std::vector<float> tol(n_tokens * w.rows);
  for (int64_t r = 0; r < w.rows; ++r) {
    std::vector<double> wr(w.cols);
    for (int64_t c = 0; c < w.cols; ++c) wr[c] = std::abs(o.at(r, c));
    for (int64_t t = 0; t < n_tokens; ++t) {
      double sum_abs = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum_abs += wr[c] * std::abs(x[t * w.cols + c]);
      tol[t * w.rows + r] = static_cast<float>(2.0 * (w.cols + 1) * kF32Eps * sum_abs);
    }
  }
  return tol;
}

// Runs the fast matmul on every SIMD target with each pool and compares with the scalar twin
// (NaN where the scalar result is NaN).
void expect_fast_matches_scalar(const OwnedWeight& o, int64_t n_tokens,
                                std::vector<ThreadPool*> pools, uint32_t seed) {
  const test::ScopedFourBitActivations f32_activations(FourBitActivations::kF32);
  const Weight& w = o.w;
  std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> ref(n_tokens * w.rows);
  scalar::matmul(w, x.data(), n_tokens, ref.data());
  const std::vector<float> tol = tolerances(o, x, n_tokens);
  for (ThreadPool* pool : pools) {
    test::for_each_simd_target([&] {
      std::vector<float> fast(n_tokens * w.rows, 12345.0f);
      matmul(w, x.data(), n_tokens, fast.data(), *pool);
      test::expect_near_or_same_nonfinite(fast, ref, tol, [&](int64_t i) {
        return std::string(weight_format_name(w.format)) + " [" + std::to_string(w.rows) + " x " +
               std::to_string(w.cols) + "] n_tokens=" + std::to_string(n_tokens) +
               " threads=" + std::to_string(pool->size()) + " t=" + std::to_string(i / w.rows) +
               " r=" + std::to_string(i % w.rows);
      });
    });
  }
}

class Matmul4FastVsScalar : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(Matmul4FastVsScalar, OddRowsTokenCountsAndThreads) {
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format);
  // cols: one group, a few groups, exactly one 128-column chunk, chunks plus a ragged tail,
  // the GEMM column chunk (256) plus a group.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, g}, {3, 2 * g}, {7, 128}, {17, 8 * g + g}, {31, 256 + g}, {67, 384}};
  ThreadPool p1(1), p2(2), p3(3);
  uint32_t seed = 100;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(format, rows, cols, seed++);
    for (int64_t n_tokens : {1, 2, 3, 5, 17, 40, 64, 70}) {
      expect_fast_matches_scalar(o, n_tokens, {&p1, &p2, &p3}, seed++);
    }
  }
}

TEST_P(Matmul4FastVsScalar, DecodeAndPrefillShapes) {
  // 515 rows split unevenly over threads; 1088 columns = 8.5 chunks of 128.
  ThreadPool p1(1), p2(2);
  OwnedWeight o = random_weight(GetParam(), 515, 1088, 7);
  for (int64_t n_tokens : {1, 2, 4, 9, 64}) expect_fast_matches_scalar(o, n_tokens, {&p1, &p2}, 8);
}

TEST_P(Matmul4FastVsScalar, ManyRowsOneThreadSeveralTokenBlocks) {
  // One thread gets all 801 rows (several GEMM row panels); 70 tokens span two token blocks.
  ThreadPool pool(1);
  OwnedWeight o = random_weight(GetParam(), 801, 320, 21);
  for (int64_t n_tokens : {5, 70}) expect_fast_matches_scalar(o, n_tokens, {&pool}, 22);
}

TEST_P(Matmul4FastVsScalar, NanScalesPoisonTheirRowOnly) {
  // NaN group scales (E4M3 0x7F, E8M0 0xFF, f16 NaN) and, for IQ4_NL, an infinite f16 scale:
  // the scalar twin gives NaN/inf rows and the fast kernels must agree, leaving other rows intact.
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format), rows = 5, cols = 8 * g;
  OwnedWeight o = random_weight(format, rows, cols, 31);
  const int64_t groups = cols / g;
  switch (format) {
    case WeightFormat::kNvfp4:
      o.group_scales[1 * groups + 3] = 0x7F;
      o.group_scales[3 * groups + 0] = 0xFF;
      break;
    case WeightFormat::kMxfp4:
      o.group_scales[1 * groups + 3] = 0xFF;
      o.group_scales[3 * groups + 0] = 0xFF;
      break;
    default:
      o.group_scales[2 * (1 * groups + 3) + 1] = 0x7E;  // f16 0x7E00: NaN
      o.group_scales[2 * (3 * groups + 0) + 1] = 0xFC;  // f16 0xFC00: -inf
      break;
  }
  ThreadPool p2(2);
  for (int64_t n_tokens : {1, 3, 20, 64}) expect_fast_matches_scalar(o, n_tokens, {&p2}, 32);
}

TEST_P(Matmul4FastVsScalar, ExtremeNvfp4GlobalScales) {
  // The NVFP4 multiplier is e4m3(S) * global rounded once, whatever the global's magnitude
  // (large globals overflow any fixed rescaling trick; tiny ones give f32 subnormal weights).
  if (GetParam() != WeightFormat::kNvfp4) GTEST_SKIP() << "NVFP4 only";
  ThreadPool p2(2);
  OwnedWeight o = random_weight(WeightFormat::kNvfp4, 9, 256, 41);
  for (float global : {1.0f, 300.0f, 3e30f, 1e-38f, 0.0f}) {
    SCOPED_TRACE(global);
    o.w.global_scale = global;
    for (int64_t n_tokens : {1, 17}) expect_fast_matches_scalar(o, n_tokens, {&p2}, 42);
  }
}

TEST(Matmul4Batch, MixedFourBitJobsMatchScalar) {
  const std::vector<test::BatchJobSpec> specs = {
      {WeightFormat::kNvfp4, 67, 256, 1},     {WeightFormat::kMxfp4, 5, 96, 3},
      {WeightFormat::kIq4nl16, 130, 272, 17}, {WeightFormat::kNvfp4, 41, 128, 0},
      {WeightFormat::kBF16, 13, 300, 64},     {WeightFormat::kIq4nl16, 201, 64, 2},
      {WeightFormat::kMxfp4, 33, 320, 64}};
  std::vector<OwnedWeight> weights;
  std::vector<std::vector<float>> xs, refs, tols;
  for (size_t i = 0; i < specs.size(); ++i) {
    const test::BatchJobSpec& s = specs[i];
    weights.push_back(random_weight(s.format, s.rows, s.cols, 300 + i));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const test::BatchJobSpec& s = specs[i];
    xs.push_back(random_floats(s.n_tokens * s.cols, 400 + i));
    refs.emplace_back(s.n_tokens * s.rows);
    tols.push_back(tolerances(weights[i], xs[i], s.n_tokens));
    scalar::matmul(weights[i].w, xs[i].data(), s.n_tokens, refs[i].data());
  }
  const test::ScopedFourBitActivations f32_activations(FourBitActivations::kF32);
  const ScopedBf16Activations f32_bf16_activations(Bf16Activations::kF32);
  test::expect_batch_matches(specs, weights, xs, refs, tols, {1, 2, 3});
}

INSTANTIATE_TEST_SUITE_P(FourBit, Matmul4FastVsScalar, ::testing::ValuesIn(kFourBitFormats),
                         test::format_param_name);

}  // namespace
}  // namespace m2fp4
