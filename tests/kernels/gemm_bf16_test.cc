// The BF16 GEMM (gemm_bf16-inl.cc: rows along the lanes, tokens broadcast, from 9 tokens with
// bf16 activations and from 8 with f32 ones). With bf16 activations every product of a bf16
// weight and a bf16 activation is exact in f32 and the kernel sums each output's columns in
// order with one rounding per step, exactly as the scalar twin (scalar::matmul_bf16_activations)
// does: the results must be equal bit for bit (no subnormals in these inputs, which the twin
// flushes). With f32 activations the fused multiply-add rounds where scalar::matmul rounds the
// product and the sum: both are within (cols + 1) u sum|w x| of the exact sum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/bf16_activation_checks.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::bf16_activations_active;
using test::kF32Eps;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;

// Per output: 2 (cols + 1) u sum_c |w x| (two f32 summations of the same terms).
std::vector<double> order_bounds(const OwnedWeight& o, const std::vector<float>& x,
                                 int64_t n_tokens) {
  const Weight& w = o.w;
  std::vector<double> bound(n_tokens * w.rows);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum_abs = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        sum_abs += std::abs(double(o.at(r, c)) * double(x[t * w.cols + c]));
      }
      bound[t * w.rows + r] = 2.0 * (w.cols + 1) * kF32Eps * sum_abs;
    }
  }
  return bound;
}

// The fast matmul with bf16 activations: equal to the twin where the target rounds, else
// within the summation bound of scalar::matmul.
void expect_equals_twin(const OwnedWeight& o, int64_t n_tokens, ThreadPool& pool, uint32_t seed) {
  const Weight& w = o.w;
  const std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> twin(n_tokens * w.rows), f32;
  scalar::matmul_bf16_activations(w, x.data(), n_tokens, twin.data());
  std::vector<double> bound;  // for targets without the rounding, computed once when needed
  const ScopedBf16Activations mode(Bf16Activations::kBf16);
  test::for_each_simd_target([&] {
    std::vector<float> fast(n_tokens * w.rows, NAN);
    matmul(w, x.data(), n_tokens, fast.data(), pool);
    const bool exact = bf16_activations_active();
    if (!exact && f32.empty()) {
      f32.resize(n_tokens * w.rows);
      scalar::matmul(w, x.data(), n_tokens, f32.data());
      bound = order_bounds(o, x, n_tokens);
    }
    for (size_t i = 0; i < fast.size(); ++i) {
      if (exact) {
        ASSERT_EQ(fast[i], twin[i])
            << "[" << w.rows << " x " << w.cols << "] n_tokens=" << n_tokens
            << " threads=" << pool.size() << " t=" << i / w.rows << " r=" << i % w.rows;
      } else {
        ASSERT_NEAR(fast[i], f32[i], bound[i]) << "i=" << i;
      }
    }
  });
}

TEST(Bf16Gemm, EqualsTwinForPanelEdgesTilesAndThreads) {
  // Rows around the 32-row panels (partial panels decode one by one), columns around the
  // 32-column transposes and the 256-column blocks, token counts around the 12-token tiles.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},    {5, 33},   {31, 64}, {32, 31},
                                                           {33, 256}, {64, 257}, {97, 600}};
  ThreadPool p1(1), p2(2), p3(3);
  uint32_t seed = 500;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, seed++);
    for (int64_t n_tokens : {9, 12, 13, 25, 40}) {
      for (ThreadPool* pool : {&p1, &p2, &p3}) expect_equals_twin(o, n_tokens, *pool, seed++);
    }
  }
}

TEST(Bf16Gemm, EqualsTwinForPrefillShapes) {
  ThreadPool p2(2);
  OwnedWeight expert = random_weight(WeightFormat::kBF16, 512, 1024, 31);
  for (int64_t n_tokens : {64, 75, 130}) expect_equals_twin(expert, n_tokens, p2, 32);
  OwnedWeight odd = random_weight(WeightFormat::kBF16, 515, 1543, 33);
  expect_equals_twin(odd, 70, p2, 34);
}

TEST(Bf16Gemm, F32ActivationsWithinSummationBound) {
  ThreadPool p2(2), p3(3);
  const ScopedBf16Activations mode(Bf16Activations::kF32);
  uint32_t seed = 700;
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{33, 300}, {96, 1024}}) {
    // Named copies: clang 14 does not capture structured bindings in lambdas.
    const int64_t rows = shape.first, cols = shape.second;
    OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, seed++);
    for (int64_t n_tokens : {8, 12, 13, 64, 70}) {
      const std::vector<float> x = random_floats(n_tokens * cols, seed++);
      std::vector<float> ref(n_tokens * rows);
      scalar::matmul(o.w, x.data(), n_tokens, ref.data());
      const std::vector<double> bound = order_bounds(o, x, n_tokens);
      for (ThreadPool* pool : {&p2, &p3}) {
        test::for_each_simd_target([&] {
          std::vector<float> fast(n_tokens * rows, NAN);
          matmul(o.w, x.data(), n_tokens, fast.data(), *pool);
          for (size_t i = 0; i < fast.size(); ++i) {
            ASSERT_NEAR(fast[i], ref[i], bound[i]) << n_tokens << " i=" << i;
          }
        });
      }
    }
  }
}

TEST(Bf16Gemm, JobsSharingAnInputAndOneOnAPrefixOfIt) {
  // w1 and w3 of an expert read one input (packed once); a third job reads the first 10 of
  // its 20 tokens (same pointer, another token count: packed on its own), a fourth another
  // width.
  OwnedWeight a = random_weight(WeightFormat::kBF16, 64, 96, 41);
  OwnedWeight b = random_weight(WeightFormat::kBF16, 40, 96, 42);
  OwnedWeight c = random_weight(WeightFormat::kBF16, 33, 96, 43);
  OwnedWeight d = random_weight(WeightFormat::kBF16, 32, 200, 44);
  const std::vector<float> x = random_floats(20 * 96, 45), x2 = random_floats(20 * 200, 46);
  struct Case {
    const OwnedWeight* o;
    const float* x;
    int64_t n_tokens;
  };
  const Case cases[] = {
      {&a, x.data(), 20}, {&b, x.data(), 20}, {&c, x.data(), 10}, {&d, x2.data(), 20}};
  const ScopedBf16Activations mode(Bf16Activations::kBf16);
  ThreadPool p2(2);
  test::for_each_simd_target([&] {
    std::vector<std::vector<float>> ys;
    std::vector<MatmulJob> jobs;
    for (const Case& k : cases) ys.emplace_back(k.n_tokens * k.o->w.rows, NAN);
    for (size_t i = 0; i < std::size(cases); ++i) {
      jobs.push_back({&cases[i].o->w, cases[i].x, cases[i].n_tokens, ys[i].data()});
    }
    matmul_batch(jobs.data(), static_cast<int64_t>(jobs.size()), p2);
    for (size_t i = 0; i < std::size(cases); ++i) {
      const Case& k = cases[i];
      std::vector<float> ref(ys[i].size());
      const std::vector<float> xk(k.x, k.x + k.n_tokens * k.o->w.cols);
      if (bf16_activations_active()) {
        scalar::matmul_bf16_activations(k.o->w, k.x, k.n_tokens, ref.data());
        ASSERT_EQ(ys[i], ref) << "job " << i;
      } else {
        scalar::matmul(k.o->w, k.x, k.n_tokens, ref.data());
        const std::vector<double> bound = order_bounds(*k.o, xk, k.n_tokens);
        for (size_t e = 0; e < ref.size(); ++e) ASSERT_NEAR(ys[i][e], ref[e], bound[e]);
      }
    }
  });
}

TEST(Bf16Gemm, NanAndInfinityPropagate) {
  const int64_t rows = 40, cols = 300, n_tokens = 20;
  OwnedWeight o = random_weight(WeightFormat::kBF16, rows, cols, 51);
  o.u16[1 * cols + 5] = 0x7FC0;     // row 1: NaN weight
  o.u16[2 * cols + 299] = 0x7F80;   // row 2: +inf weight in the last (tail) column
  o.u16[35 * cols + 100] = 0xFF80;  // row 35 (second, partial panel): -inf weight
  std::vector<float> x = random_floats(n_tokens * cols, 52);
  x[7 * cols + 40] = std::numeric_limits<float>::quiet_NaN();  // token 7: NaN activation
  ThreadPool p2(2);
  for (Bf16Activations mode : {Bf16Activations::kBf16, Bf16Activations::kF32}) {
    const ScopedBf16Activations scoped(mode);
    test::for_each_simd_target([&] {
      std::vector<float> fast(n_tokens * rows);
      matmul(o.w, x.data(), n_tokens, fast.data(), p2);
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const float v = fast[t * rows + r];
          if (t == 7 || r == 1) {
            EXPECT_TRUE(std::isnan(v)) << t << " " << r;
          } else if (r == 2 || r == 35) {
            const float sign = (r == 2 ? 1.0f : -1.0f) * x[t * cols + (r == 2 ? 299 : 100)];
            EXPECT_EQ(v, std::copysign(std::numeric_limits<float>::infinity(), sign)) << t;
          } else {
            EXPECT_TRUE(std::isfinite(v)) << t << " " << r;
          }
        }
      }
    });
  }
}

}  // namespace
}  // namespace m2fp4
