// The bf16-activation BF16 matmul (matmul_bf16dot.h): the scalar twin against hand-computed values
// and an independent double-precision sum of the same rounded products, the fast kernel (every
// SIMD target, thread count, token count: decode and prefill alike) against the twin, the result
// against the f32-activation matmul within the bound the activation rounding allows
// (|x - bf16(x)| <= 2^-8 |x|: 8 significant bits, half a spacing of 2^-7 on [1, 2)), and NaN /
// infinity propagation.
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
#include "kernels/test_util.h"
#include "numerics/bf16.h"

namespace m2fp4 {
namespace {

using test::AbsSums;
using test::bf16_activations_active;
using test::kF32Eps;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;

// w bf16(x) and w x.
std::pair<double, double> bf16_products(const OwnedWeight& o, int64_t r, int64_t c, float x) {
  return {double(o.at(r, c)) * double(round_to_bf16(x)), double(o.at(r, c)) * double(x)};
}

// The BF16 kernel for the shared checks (bf16_activation_checks.h): every token count on the
// targets that round.
const test::Bf16ActivationKernel kBf16Dot{
    &scalar::matmul_bf16_activations, [](int64_t, int64_t) { return bf16_activations_active(); },
    &bf16_products, 0x1p-8};

TEST(Bf16ActivationsScalar, HandComputed) {
  // Row [1, 2, 3]; x = [1 + 2^-8 (a tie: rounds to even, 1), 0.5, 3 + 2^-8 (below half the spacing
  // 2^-6: 3)]: 1 * 1 + 2 * 0.5 + 3 * 3 = 11 (f32 activations would give 11 + 2^-8 + 3 * 2^-8).
  const uint16_t w[3] = {f32_to_bf16(1.0f), f32_to_bf16(2.0f), f32_to_bf16(3.0f)};
  const float x[3] = {1.0f + 0x1p-8f, 0.5f, 3.0f + 0x1p-8f};
  float y = 0;
  scalar::matmul_bf16_activations(Weight{WeightFormat::kBF16, 1, 3, w, nullptr, 0}, x, 1, &y);
  EXPECT_EQ(y, 11.0f);
  // bf16 keeps 7 fraction bits: 1 + 2^-7 + 2^-9 (below the midpoint 1 + 2^-7 + 2^-8) rounds
  // down to 1 + 2^-7.
  const float x2[3] = {1.0f + 0x1p-7f + 0x1p-9f, 0.0f, 0.0f};
  scalar::matmul_bf16_activations(Weight{WeightFormat::kBF16, 1, 3, w, nullptr, 0}, x2, 1, &y);
  EXPECT_EQ(y, 1.0f + 0x1p-7f);
}

TEST(Bf16ActivationsScalar, SubnormalsCountAsZero) {
  // A subnormal bf16 weight (2^-130) times 2^100 is 2^-30 in f32, 0 as vdpbf16ps reads it.
  const uint16_t w[2] = {f32_to_bf16(0x1p-130f), f32_to_bf16(1.0f)};
  const float x[2] = {0x1p100f, 0.25f};
  float y = 0;
  scalar::matmul_bf16_activations(Weight{WeightFormat::kBF16, 1, 2, w, nullptr, 0}, x, 1, &y);
  EXPECT_EQ(y, 0.25f);
}

TEST(Bf16ActivationsScalar, MatchesDoubleSumOfRoundedProducts) {
  const int64_t cols = 517, n_tokens = 3;
  const OwnedWeight o = random_weight(WeightFormat::kBF16, 9, cols, 5);
  test::expect_twin_matches_double_sum(kBf16Dot, o, random_floats(n_tokens * cols, 6), n_tokens);
}

TEST(Bf16ActivationsScalar, ParseAndRejectNames) {
  EXPECT_EQ(parse_bf16_activations("f32"), Bf16Activations::kF32);
  EXPECT_EQ(parse_bf16_activations("bf16"), Bf16Activations::kBf16);
  EXPECT_THROW(parse_bf16_activations("int8"), Error);
  EXPECT_THROW(scalar::matmul_bf16_activations(
                   Weight{WeightFormat::kF32, 1, 1, nullptr, nullptr, 0}, nullptr, 0, nullptr),
               Error);
}

TEST(Bf16ActivationsFast, OddShapesTokenCountsAndThreads) {
  ThreadPool p1(1), p2(2), p3(3);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {1, 7}, {3, 16}, {5, 31}, {5, 33}, {17, 64}, {31, 129}, {130, 257}, {67, 300}};
  uint32_t seed = 100;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, seed++);
    for (int64_t n_tokens : {1, 2, 3, 4, 5, 17}) {
      test::expect_fast_matches_twin(kBf16Dot, o, n_tokens, {&p1, &p2, &p3}, seed++);
    }
  }
}

TEST(Bf16ActivationsFast, DecodeAndPrefillShapes) {
  ThreadPool p1(1), p2(2);
  OwnedWeight o = random_weight(WeightFormat::kBF16, 515, 1543, 7);
  for (int64_t n_tokens : {1, 4, 40, 64, 70, 130})
    test::expect_fast_matches_twin(kBf16Dot, o, n_tokens, {&p2}, 8);
  OwnedWeight tall = random_weight(WeightFormat::kBF16, 801, 300, 21);
  test::expect_fast_matches_twin(kBf16Dot, tall, 70, {&p1}, 22);
}

TEST(Bf16ActivationsFast, OptionSelectsTheKernel) {
  ThreadPool p2(2);
  OwnedWeight o = random_weight(WeightFormat::kBF16, 64, 512, 31);
  const std::vector<float> x = random_floats(2 * 512, 32);
  std::vector<float> exact(2 * 64), f32_mode_y(2 * 64), bf16_mode_y(2 * 64);
  scalar::matmul(o.w, x.data(), 2, exact.data());
  test::for_each_simd_target([&] {
    {
      const ScopedBf16Activations mode(Bf16Activations::kF32);
      matmul(o.w, x.data(), 2, f32_mode_y.data(), p2);
    }
    {
      const ScopedBf16Activations mode(Bf16Activations::kBf16);
      matmul(o.w, x.data(), 2, bf16_mode_y.data(), p2);
    }
    // The f32 setting keeps the f32 kernels (only summation order differs from scalar::matmul,
    // far below the activation rounding); the bf16 setting, where it runs, rounds.
    double f32_dev = 0, bf16_dev = 0;
    for (size_t i = 0; i < exact.size(); ++i) {
      f32_dev = std::max(f32_dev, std::abs(double(f32_mode_y[i]) - exact[i]));
      bf16_dev = std::max(bf16_dev, std::abs(double(bf16_mode_y[i]) - exact[i]));
    }
    EXPECT_LT(f32_dev, 1e-3);
    if (bf16_activations_active()) {
      EXPECT_GT(bf16_dev, 1e-3);
    } else {
      EXPECT_EQ(bf16_mode_y, f32_mode_y);
    }
  });
}

TEST(Bf16ActivationsFast, NanAndInfinityPropagate) {
  const int64_t rows = 6, cols = 70, n_tokens = 3;
  OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, 41);
  o.u16[1 * cols + 5] = 0x7FC0;   // row 1: NaN weight
  o.u16[2 * cols + 69] = 0x7F80;  // row 2: +inf weight in the tail (column 69)
  std::vector<float> x = random_floats(n_tokens * cols, 42);
  x[1 * cols + 40] = std::numeric_limits<float>::quiet_NaN();  // token 1: NaN activation
  ThreadPool p2(2);
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  std::vector<float> twin(n_tokens * rows);
  scalar::matmul_bf16_activations(o.w, x.data(), n_tokens, twin.data());
  test::for_each_simd_target([&] {
    std::vector<float> fast(n_tokens * rows);
    matmul(o.w, x.data(), n_tokens, fast.data(), p2);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float v = fast[t * rows + r];
        if (t == 1 || r == 1) {
          EXPECT_TRUE(std::isnan(v)) << t << " " << r;
        } else if (r == 2) {
          EXPECT_EQ(v, twin[t * rows + r]) << t;  // +-inf, by the sign of x[t, 69]
          EXPECT_TRUE(std::isinf(v)) << t;
        } else {
          EXPECT_TRUE(std::isfinite(v)) << t << " " << r;
        }
      }
    }
  });
}

TEST(Bf16ActivationsFast, TokenAloneMatchesBatchBitForBit) {
  // One token runs vdpbf16ps; 2-8 tokens the f32 FMA tile, which must give vdpbf16ps's bits
  // (matmul_bf16dot.cc): odd then even product added with a rounding each, subnormal inputs
  // and results as zero. Rows 0-3 hold subnormal bf16 weights, rows 4-7 weights near 2^-70
  // (products with token 1's activations near 2^-70 are f32 subnormals, which vdpbf16ps
  // flushes: an FMA without FTZ would keep them); odd row and column counts take the tails.
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  ThreadPool p2(2);
  // Plain variables, not a structured binding: the lambda below captures them (clang 14 cannot
  // capture structured bindings).
  for (const std::pair<int64_t, int64_t>& shape :
       {std::pair<int64_t, int64_t>{37, 1000}, {19, 3072}, {131, 2080}, {9, 65}}) {
    const int64_t rows = shape.first, cols = shape.second;
    OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, 61);
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < 4; ++r) {
        if ((c + r) % 3 == 0) o.u16[r * cols + c] = static_cast<uint16_t>(1 + (c * 7 + r) % 127);
      }
      for (int64_t r = 4; r < 8; ++r) {
        o.u16[r * cols + c] = f32_to_bf16(bf16_to_f32(o.u16[r * cols + c]) * 0x1p-70f);
      }
    }
    std::vector<float> x = random_floats(8 * cols, 62);
    for (int64_t c = 0; c < cols; ++c) x[1 * cols + c] *= 0x1p-70f;
    test::for_each_simd_target([&] {
      if (!bf16_activations_active()) return;
      std::vector<float> alone(8 * rows);
      for (int64_t t = 0; t < 8; ++t) {
        matmul(o.w, x.data() + t * cols, 1, alone.data() + t * rows, p2);
      }
      for (int64_t n_tokens = 2; n_tokens <= 8; ++n_tokens) {
        std::vector<float> batch(n_tokens * rows);
        matmul(o.w, x.data(), n_tokens, batch.data(), p2);
        for (int64_t i = 0; i < n_tokens * rows; ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(batch[i]), std::bit_cast<uint32_t>(alone[i]))
              << rows << "x" << cols << " tokens " << n_tokens << " token " << i / rows << " row "
              << i % rows << ": " << batch[i] << " vs " << alone[i];
        }
      }
    });
  }
}

TEST(Bf16ActivationsFast, JobsSharingAnInputInOneBatch) {
  // Two BF16 jobs on the same input (rounded once) and a third on another, with an f32 job.
  OwnedWeight a = random_weight(WeightFormat::kBF16, 40, 96, 51);
  OwnedWeight b = random_weight(WeightFormat::kBF16, 23, 96, 52);
  OwnedWeight c = random_weight(WeightFormat::kBF16, 9, 200, 53);
  OwnedWeight d = random_weight(WeightFormat::kF32, 7, 96, 54);
  const std::vector<float> x = random_floats(5 * 96, 55), x2 = random_floats(5 * 200, 56);
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  ThreadPool p3(3);
  test::for_each_simd_target([&] {
    const bool active = bf16_activations_active();
    std::vector<float> ya(5 * 40), yb(5 * 23), yc(5 * 9), yd(5 * 7);
    MatmulJob jobs[] = {{&a.w, x.data(), 5, ya.data()},
                        {&d.w, x.data(), 5, yd.data()},
                        {&b.w, x.data(), 5, yb.data()},
                        {&c.w, x2.data(), 5, yc.data()}};
    matmul_batch(jobs, 4, p3);
    struct Check {
      const OwnedWeight* o;
      const std::vector<float>* x;
      const std::vector<float>* y;
    };
    for (const Check& k : {Check{&a, &x, &ya}, Check{&b, &x, &yb}, Check{&c, &x2, &yc}}) {
      const Weight& w = k.o->w;
      std::vector<float> ref(5 * w.rows);
      if (active) {
        scalar::matmul_bf16_activations(w, k.x->data(), 5, ref.data());
      } else {
        scalar::matmul(w, k.x->data(), 5, ref.data());
      }
      const AbsSums sums = test::abs_sums(kBf16Dot, *k.o, *k.x, 5);
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR((*k.y)[i], ref[i],
                    2.0 * (w.cols + 1) * kF32Eps * std::max(sums.rounded[i], sums.exact[i]));
      }
    }
    std::vector<float> refd(5 * 7);
    scalar::matmul(d.w, x.data(), 5, refd.data());
    for (size_t i = 0; i < refd.size(); ++i) ASSERT_NEAR(yd[i], refd[i], 1e-3);
  });
}

}  // namespace
}  // namespace m2fp4
