// Non-matmul kernels: scalar references against hand-computed values and the spec's formulas
// (minimax-m2-architecture.md section 2), fast kernels against the scalar references.
#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/attention_reference.h"
#include "kernels/cpu/simd_target.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::attention_reference;
using test::kF32Eps;
using test::random_floats;

// ---- rms_norm ----

TEST(RmsNormScalar, HandComputed) {
  // mean([3, 4]^2) = 12.5 -> y = x / sqrt(12.5 + eps) * w, weight used as is (not 1 + w).
  const float x[] = {3, 4, 0, -2};
  const float w[] = {1, 2};
  float out[4];
  scalar::rms_norm(x, w, 2, 2, 1e-6f, out);
  const double r0 = 1 / std::sqrt(12.5 + 1e-6), r1 = 1 / std::sqrt(2.0 + 1e-6);
  EXPECT_NEAR(out[0], 3 * r0, 1e-6);
  EXPECT_NEAR(out[1], 8 * r0, 1e-6);
  EXPECT_NEAR(out[2], 0, 1e-7);
  EXPECT_NEAR(out[3], -4 * r1, 1e-6);
}

TEST(RmsNormFast, MatchesScalarAndMayAlias) {
  for (int64_t n : {1, 3, 16, 17, 1024, 3072, 6143}) {
    const int64_t rows = 3;
    std::vector<float> x = random_floats(rows * n, 1 + n, 3.0f);
    std::vector<float> w = random_floats(n, 2 + n);
    std::vector<float> ref(rows * n);
    scalar::rms_norm(x.data(), w.data(), rows, n, 1e-6f, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> fast(rows * n);
      rms_norm(x.data(), w.data(), rows, n, 1e-6f, fast.data());
      // The fast f32 sum of squares (all terms positive) is within n u of the reference's;
      // 1/sqrt halves that relative error, then ~3 u for the rsqrt and two products.
      for (int64_t i = 0; i < rows * n; ++i) {
        ASSERT_NEAR(fast[i], ref[i], (0.5 * n + 4) * kF32Eps * std::abs(ref[i]) + 1e-30)
            << "n=" << n << " i=" << i;
      }
      std::vector<float> in_place = x;
      rms_norm(in_place.data(), w.data(), rows, n, 1e-6f, in_place.data());
      for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(in_place[i], fast[i]);
    });
  }
}

// ---- rope_neox ----

// The spec's formula, written out independently: pairs (i, i + rotary_dim/2), double angles.
std::vector<double> rope_formula(const std::vector<float>& x, int64_t n_heads, int64_t head_dim,
                                 int64_t rotary_dim, int64_t pos, double theta) {
  std::vector<double> out(x.begin(), x.end());
  const int64_t half = rotary_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * std::pow(theta, -2.0 * i / rotary_dim);
      const double x1 = x[h * head_dim + i], x2 = x[h * head_dim + i + half];
      out[h * head_dim + i] = x1 * std::cos(a) - x2 * std::sin(a);
      out[h * head_dim + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  }
  return out;
}

TEST(RopeScalar, HandComputedSmallHead) {
  // head_dim 8, rotary_dim 4, theta 100, position 3: inv_freq = [1, 0.1];
  // channel 0 pairs with 2 at angle 3, channel 1 with 3 at angle 0.3; 4..7 pass through.
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  scalar::rope_neox(x.data(), 1, 8, 4, 3, 100.0);
  EXPECT_NEAR(x[0], 1 * std::cos(3.0) - 3 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(3.0) + 1 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(0.3) - 4 * std::sin(0.3), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(0.3) + 2 * std::sin(0.3), 1e-6);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(x[i], i + 1);
}

TEST(RopeScalar, MiniMaxShapeMatchesFormulaAndPositionZeroIsIdentity) {
  const int64_t n_heads = 3, head_dim = 128, rotary_dim = 64;
  for (int64_t pos : {0, 1, 17, 4095, 150000}) {
    std::vector<float> x = random_floats(n_heads * head_dim, 5 + pos);
    std::vector<double> expect = rope_formula(x, n_heads, head_dim, rotary_dim, pos, 5e6);
    std::vector<float> got = x;
    scalar::rope_neox(got.data(), n_heads, head_dim, rotary_dim, pos, 5e6);
    for (size_t i = 0; i < x.size(); ++i) {
      // Inputs ~N(0,1); cos/sin rounded to f32 and two f32 products and a sum: a few u of |x|.
      ASSERT_NEAR(got[i], expect[i], 1e-6 * (std::abs(x[i]) + 4)) << "pos=" << pos << " i=" << i;
      if (pos == 0) {
        ASSERT_EQ(got[i], x[i]);
      }
    }
  }
}

TEST(RopeFast, MatchesScalar) {
  for (const auto& shape : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {48, 128, 64}, {8, 128, 64}, {3, 10, 6}, {2, 64, 64}, {5, 34, 0}, {1, 130, 66}}) {
    // Plain variables: the lambda below captures them (clang 14 cannot capture bindings).
    const int64_t n_heads = std::get<0>(shape), head_dim = std::get<1>(shape),
                  rotary_dim = std::get<2>(shape);
    for (int64_t pos : {0, 5, 1000, 123457}) {
      const std::vector<float> x = random_floats(n_heads * head_dim, pos + head_dim);
      std::vector<float> b = x;
      scalar::rope_neox(b.data(), n_heads, head_dim, rotary_dim, pos, 5e6);
      test::for_each_simd_target([&] {
        std::vector<float> a = x;
        rope_neox(a.data(), n_heads, head_dim, rotary_dim, pos, 5e6);
        for (size_t i = 0; i < a.size(); ++i) {
          // Same f32 cos/sin; only FMA contraction may differ: ~2 u of the largest term.
          ASSERT_NEAR(a[i], b[i], 1e-6 * (std::abs(b[i]) + 4)) << "i=" << i;
        }
      });
    }
  }
}

TEST(Rope, RejectsBadRotaryDim) {
  float x[8] = {};
  EXPECT_THROW(scalar::rope_neox(x, 1, 8, 5, 1, 1e4), Error);
  EXPECT_THROW(rope_neox(x, 1, 8, 10, 1, 1e4), Error);
}

// ---- attention ----

TEST(AttentionScalar, SinglePositionCopiesValueOfMappedKvHead) {
  // n_ctx = 1: softmax weight 1, so head h's output is v of KV head h / (n_heads / n_kv) = h / 3
  // (not h % 2).
  const int64_t n_heads = 6, n_kv = 2, hd = 4;
  std::vector<float> q = random_floats(n_heads * hd, 1);
  std::vector<float> k = random_floats(n_kv * hd, 2);
  std::vector<float> v = {10, 11, 12, 13, 20, 21, 22, 23};
  std::vector<float> out(n_heads * hd), scratch(1);
  scalar::attention(q.data(), k.data(), v.data(), 1, n_kv * hd, n_heads, n_kv, hd, out.data(),
                    scratch.data());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t d = 0; d < hd; ++d) EXPECT_FLOAT_EQ(out[h * hd + d], v[(h / 3) * hd + d]);
  }
}

TEST(AttentionScalar, TwoPositionsHandComputed) {
  // One head, head_dim 4 (scale 1/2): q = [1, 0, 0, 0], k0 = [2, 0, 0, 0], k1 = [0, 0, 0, 0]
  // -> scores [1, 0], p = [e/(e+1), 1/(e+1)]; v0 = [1, 0, 0, 0], v1 = [0, 1, 0, 0].
  const float q[] = {1, 0, 0, 0};
  const float k[] = {2, 0, 0, 0, 0, 0, 0, 0};
  const float v[] = {1, 0, 0, 0, 0, 1, 0, 0};
  float out[4], scratch[2];
  scalar::attention(q, k, v, 2, 4, 1, 1, 4, out, scratch);
  const double e = std::exp(1.0);
  EXPECT_NEAR(out[0], e / (e + 1), 1e-6);
  EXPECT_NEAR(out[1], 1 / (e + 1), 1e-6);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.0f);
}

struct AttentionCase {
  int64_t n_ctx, n_heads, n_kv, hd, stride_pad;
};

TEST(Attention, ScalarAndFastMatchDoubleReference) {
  const std::vector<AttentionCase> cases = {
      {1, 4, 1, 8, 0},        {3, 6, 2, 16, 5},    {17, 48, 8, 128, 0}, {100, 3, 3, 33, 7},
      {2049, 12, 2, 128, 64}, {5000, 6, 1, 64, 0}, {300, 16, 2, 40, 3}};
  for (const auto& c : cases) {
    const int64_t stride = c.n_kv * c.hd + c.stride_pad;
    // q scaled so softmax is neither flat nor one-hot.
    std::vector<float> q = random_floats(c.n_heads * c.hd, 1 + c.n_ctx, 0.3f);
    std::vector<float> k = random_floats(c.n_ctx * stride, 2 + c.n_ctx);
    std::vector<float> v = random_floats(c.n_ctx * stride, 3 + c.n_ctx);
    std::vector<double> expect =
        attention_reference(q, k, v, c.n_ctx, stride, c.n_heads, c.n_kv, c.hd);
    std::vector<float> ref(c.n_heads * c.hd), scratch(c.n_ctx);
    scalar::attention(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd,
                      ref.data(), scratch.data());
    // Error budget: f32 dot products (hd u relative to sum|q k|, |score| <~ 5) perturb the
    // softmax weights by <~ 5 hd u each, then the f32 weighted sum over n_ctx values of |v| <~ 4
    // adds n_ctx u of sum p|v|; bound both by (hd * 5 + n_ctx) * u * 4 + small absolute floor.
    const double tol = (c.hd * 5.0 + c.n_ctx) * kF32Eps * 4 + 1e-6;
    for (size_t i = 0; i < expect.size(); ++i) {
      ASSERT_NEAR(ref[i], expect[i], tol) << "scalar n_ctx=" << c.n_ctx << " i=" << i;
    }
    ThreadPool pool(3);
    test::for_each_simd_target([&] {
      std::vector<float> fast(c.n_heads * c.hd), par(c.n_heads * c.hd);
      attention(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd, fast.data(),
                scratch.data());
      attention_parallel(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd,
                         par.data(), pool);
      for (size_t i = 0; i < expect.size(); ++i) {
        ASSERT_NEAR(fast[i], expect[i], tol) << "fast n_ctx=" << c.n_ctx << " i=" << i;
        ASSERT_EQ(par[i], fast[i]) << "parallel n_ctx=" << c.n_ctx << " i=" << i;
      }
    });
  }
}

TEST(Attention, RejectsBadHeadCounts) {
  float buf[64] = {};
  EXPECT_THROW(scalar::attention(buf, buf, buf, 1, 8, 3, 2, 4, buf, buf), Error);
  EXPECT_THROW(attention(buf, buf, buf, 0, 8, 2, 2, 4, buf, buf), Error);
  EXPECT_THROW(attention(buf, buf, buf, 1, 4, 2, 2, 4, buf, buf), Error);  // stride too small
}

// ---- route_sigmoid_topk ----

double sigmoid(double x) {
  return 1 / (1 + std::exp(-x));
}

TEST(RouteScalar, BiasChoosesExpertsButNotWeights) {
  // Scores: sigmoid([2, 1, 0, -1]) = [.881, .731, .5, .269]. Bias +1 on expert 3 lifts it to
  // first place; without bias top-2 would be {0, 1}.
  const float logits[] = {2, 1, 0, -1};
  const float bias[] = {0, 0, 0, 1};
  int32_t ids[2];
  float weights[2];
  scalar::route_sigmoid_topk(logits, bias, 4, 2, ids, weights);
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 0);
  const double s3 = sigmoid(-1), s0 = sigmoid(2);
  EXPECT_NEAR(weights[0], s3 / (s3 + s0), 1e-6);
  EXPECT_NEAR(weights[1], s0 / (s3 + s0), 1e-6);

  scalar::route_sigmoid_topk(logits, nullptr, 4, 2, ids, weights);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 1);
  const double s1 = sigmoid(1);
  EXPECT_NEAR(weights[0], s0 / (s0 + s1), 1e-6);
  EXPECT_NEAR(weights[1], s1 / (s0 + s1), 1e-6);
}

TEST(Route, FastMatchesScalarOnMiniMaxShape) {
  for (uint32_t seed = 0; seed < 50; ++seed) {
    for (auto [n_experts, top_k] :
         std::vector<std::pair<int64_t, int64_t>>{{256, 8}, {64, 8}, {7, 7}, {33, 1}}) {
      std::vector<float> logits = random_floats(n_experts, seed, 2.0f);
      std::vector<float> bias = random_floats(n_experts, seed + 1000, 0.1f);
      std::vector<int32_t> id_ref(top_k), id_fast(top_k);
      std::vector<float> w_ref(top_k), w_fast(top_k);
      scalar::route_sigmoid_topk(logits.data(), bias.data(), n_experts, top_k, id_ref.data(),
                                 w_ref.data());
      route_sigmoid_topk(logits.data(), bias.data(), n_experts, top_k, id_fast.data(),
                         w_fast.data());
      EXPECT_EQ(id_fast, id_ref);
      float sum = 0;
      for (int64_t j = 0; j < top_k; ++j) {
        // Descending order of score + bias, weights are the renormalised unbiased scores.
        const int32_t e = id_ref[j];
        if (j > 0) {
          EXPECT_GE(sigmoid(logits[id_ref[j - 1]]) + bias[id_ref[j - 1]],
                    sigmoid(logits[e]) + bias[e] - 1e-6);
        }
        EXPECT_NEAR(w_fast[j], w_ref[j], 4 * top_k * kF32Eps * w_ref[j]);
        sum += w_ref[j];
      }
      EXPECT_NEAR(sum, 1.0f, 1e-6);
      // Every unchosen expert has score + bias no larger than the last chosen one.
      const int32_t last = id_ref[top_k - 1];
      for (int64_t e = 0; e < n_experts; ++e) {
        if (std::find(id_ref.begin(), id_ref.end(), e) != id_ref.end()) continue;
        EXPECT_LE(sigmoid(logits[e]) + bias[e], sigmoid(logits[last]) + bias[last] + 1e-6);
      }
    }
  }
}

TEST(Route, RejectsBadTopK) {
  float logits[4] = {}, w[8];
  int32_t ids[8];
  EXPECT_THROW(scalar::route_sigmoid_topk(logits, nullptr, 4, 5, ids, w), Error);
  EXPECT_THROW(route_sigmoid_topk(logits, nullptr, 4, 0, ids, w), Error);
}

// ---- silu_mul ----

TEST(SiluMulScalar, HandComputed) {
  const float gate[] = {1, 0, -2};
  const float up[] = {2, 5, 3};
  float out[3];
  scalar::silu_mul(gate, up, 3, out);
  EXPECT_NEAR(out[0], 1 * sigmoid(1) * 2, 1e-6);  // 2 * 0.7310586
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_NEAR(out[2], -2 * sigmoid(-2) * 3, 1e-6);
}

TEST(SiluMulFast, MatchesScalarAndMayAlias) {
  for (int64_t n : {1, 7, 16, 31, 1536, 1537}) {
    std::vector<float> gate = random_floats(n, n, 4.0f), up = random_floats(n, n + 1);
    gate[0] = -100.0f;  // exp overflow side: silu -> -0
    if (n > 1) gate[1] = 90.0f;
    std::vector<float> ref(n);
    scalar::silu_mul(gate.data(), up.data(), n, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> fast(n);
      silu_mul(gate.data(), up.data(), n, fast.data());
      for (int64_t i = 0; i < n; ++i) {
        // exp implementations differ by ~1 ulp each; silu's relative sensitivity to exp is <= 1,
        // plus the add, divide and multiply roundings. Past exp's range silu is ~0 (1e-36).
        ASSERT_NEAR(fast[i], ref[i], 8 * kF32Eps * std::abs(ref[i]) + 1e-30) << "i=" << i;
      }
      std::vector<float> in_place = gate;
      silu_mul(in_place.data(), up.data(), n, in_place.data());
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(in_place[i], fast[i]);
    });
  }
}

// ---- add_scaled ----

TEST(AddScaledScalar, HandComputed) {
  // 1 + 0.5 * 3 = 2.5; -2 + 0.5 * 4 = 0; and one rounding, not two: -1 + (1 + 2^-23)(1 - 2^-23)
  // = -1 + (1 - 2^-46) = -2^-46 (the product alone would round to 1, and the sum to 0).
  float y[3] = {1.0f, -2.0f, -1.0f};
  const float x[3] = {3.0f, 4.0f, 1.0f - 0x1p-23f};
  scalar::add_scaled(y, x, 0.5f, 2);
  EXPECT_EQ(y[0], 2.5f);
  EXPECT_EQ(y[1], 0.0f);
  scalar::add_scaled(y + 2, x + 2, 1.0f + 0x1p-23f, 1);
  EXPECT_EQ(y[2], -0x1p-46f);
}

TEST(AddScaledFast, MatchesScalarBitForBitWhereFused) {
  for (int64_t n : {1, 7, 16, 31, 1024, 3073}) {
    const std::vector<float> y0 = random_floats(n, 2 * n), x = random_floats(n, 2 * n + 1);
    for (float a : {0.37f, -1.0f + 0x1p-23f, 0.0f}) {
      std::vector<float> fused = y0;
      scalar::add_scaled(fused.data(), x.data(), a, n);
      test::for_each_simd_target([&] {
        // AVX2 and AVX-512 have FMA: std::fma's bits; the SSE targets round the product first.
        const bool has_fma = std::string(kernels_simd_target()).rfind("AVX", 0) == 0;
        std::vector<float> fast = y0;
        add_scaled(fast.data(), x.data(), a, n);
        for (int64_t i = 0; i < n; ++i) {
          const float product = a * x[i];
          const float expected = has_fma ? fused[i] : y0[i] + product;
          ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(expected))
              << "n=" << n << " a=" << a << " i=" << i;
        }
      });
    }
  }
}

}  // namespace
}  // namespace m2fp4
