// FP8 (E4M3) KV cache: kv_store_fp8 against a brute-force nearest-code search, and attention
// over E4M3 K/V (scalar twin, fast, parallel) against a double-precision reference and the f32
// attention on the dequantized cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/attention_reference.h"
#include "kernels/cpu/ops.h"
#include "kernels/test_util.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

using test::attention_reference;
using test::kF32Eps;
using test::random_floats;

// ---- kv_store_fp8 ----

// The E4M3 code a saturating RNE store must produce for v, by search over all finite codes:
// nearest value, ties to the even code (mantissa LSB 0); beyond the largest finite +-448.
uint8_t nearest_e4m3(double v) {
  if (std::isnan(v)) return 0x7F;
  const bool negative = std::signbit(v);
  const double m = std::abs(v);
  int best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7E; ++c) {
    const double err = std::abs(double{e4m3_to_f32(static_cast<uint8_t>(c))} - m);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(best | (negative ? 0x80 : 0));
}

std::vector<float> store_inputs() {
  std::vector<float> x = random_floats(3000, 1, 100.0f);
  std::vector<float> small = random_floats(1000, 2, 0.01f);  // e4m3 subnormals
  x.insert(x.end(), small.begin(), small.end());
  // Exact ties and edges: halfway points of the subnormal grid (2^-10 odd multiples), of the
  // normal grid, 448, 464 (ties down to 448), 465, 480, inf, NaN, signed zeros.
  for (int i = 0; i < 16; ++i) x.push_back((2 * i + 1) * 0x1p-10f);
  for (float t : {1.0625f, 1.1875f, 3.25f, 3.75f, 240.0f, 432.0f, 448.0f, 464.0f, 465.0f, 480.0f,
                  1e30f, 0x1p-6f, 0x1p-7f, 0.0f, -0.0f}) {
    x.push_back(t);
    x.push_back(-t);
  }
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  return x;
}

TEST(KvStoreFp8, ScalarIsNearestCodeSaturating) {
  const std::vector<float> x = store_inputs();
  for (float scale : {1.0f, 0.25f, 3.0f}) {
    std::vector<uint8_t> out(x.size());
    scalar::kv_store_fp8(x.data(), static_cast<int64_t>(x.size()), scale, out.data());
    for (size_t i = 0; i < x.size(); ++i) {
      const float q = x[i] / scale;  // the store divides in f32
      const uint8_t expect = nearest_e4m3(q);
      if (std::isnan(q)) {
        EXPECT_EQ(out[i] & 0x7F, 0x7F) << "x=" << x[i];
      } else {
        EXPECT_EQ(out[i], expect) << "x=" << x[i] << " scale=" << scale;
      }
    }
  }
}

TEST(KvStoreFp8, FastMatchesScalarBitForBit) {
  const std::vector<float> x = store_inputs();
  for (float scale : {1.0f, 0.25f, 3.0f, 1e-3f}) {
    std::vector<uint8_t> ref(x.size());
    scalar::kv_store_fp8(x.data(), static_cast<int64_t>(x.size()), scale, ref.data());
    test::for_each_simd_target([&] {
      for (int64_t n : {static_cast<int64_t>(x.size()), int64_t{1}, int64_t{17}}) {
        std::vector<uint8_t> fast(x.size(), 0x55);
        kv_store_fp8(x.data(), n, scale, fast.data());
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(fast[i], ref[i]) << "x=" << x[i] << " scale=" << scale << " n=" << n;
        }
      }
    });
  }
}

TEST(KvStoreFp8, RejectsBadScale) {
  float x[2] = {1, 2};
  uint8_t out[2];
  EXPECT_THROW(kv_store_fp8(x, 2, 0.0f, out), Error);
  EXPECT_THROW(kv_store_fp8(x, 2, -1.0f, out), Error);
  EXPECT_THROW(scalar::kv_store_fp8(x, 2, std::numeric_limits<float>::quiet_NaN(), out), Error);
}

// ---- attention over E4M3 K/V ----

struct Fp8Cache {
  std::vector<uint8_t> k8, v8;
  std::vector<float> k, v;  // dequantized: e4m3(code) * scale
  float k_scale = 1, v_scale = 1;
};

// Random K/V (std 1 and 2) stored with calibrated scales amax / 448 (§4.1).
Fp8Cache make_cache(int64_t n, uint32_t seed) {
  Fp8Cache c;
  std::vector<float> k = random_floats(n, seed), v = random_floats(n, seed + 1, 2.0f);
  auto amax = [](const std::vector<float>& x) {
    float m = 0;
    for (float e : x) m = std::max(m, std::abs(e));
    return m;
  };
  c.k_scale = amax(k) / 448.0f;
  c.v_scale = amax(v) / 448.0f;
  c.k8.resize(n);
  c.v8.resize(n);
  scalar::kv_store_fp8(k.data(), n, c.k_scale, c.k8.data());
  scalar::kv_store_fp8(v.data(), n, c.v_scale, c.v8.data());
  c.k.resize(n);
  c.v.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    c.k[i] = e4m3_to_f32(c.k8[i]) * c.k_scale;
    c.v[i] = e4m3_to_f32(c.v8[i]) * c.v_scale;
  }
  return c;
}

TEST(AttentionFp8Scalar, SinglePositionCopiesDequantizedValue) {
  // n_ctx = 1: softmax weight 1, so each head returns e4m3(v) * v_scale of its KV head.
  const int64_t n_heads = 4, n_kv = 2, hd = 4;
  std::vector<float> q = random_floats(n_heads * hd, 1);
  const uint8_t k[] = {0x38, 0x40, 0xB8, 0x00, 0x30, 0x31, 0x32, 0x33};
  const uint8_t v[] = {0x38, 0x40, 0xB8, 0x01, 0x7E, 0xFE, 0x08, 0x10};  // 1 2 -1 2^-9 448 ...
  std::vector<float> out(n_heads * hd);
  float scratch[1];
  scalar::attention_fp8(q.data(), k, v, 1, n_kv * hd, n_heads, n_kv, hd, 0.5f, 0.25f, out.data(),
                        scratch);
  const float expect[2][4] = {{0.25f, 0.5f, -0.25f, 0x1p-11f}, {112.0f, -112.0f, 0x1p-8f, 0x1p-7f}};
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t d = 0; d < hd; ++d) EXPECT_EQ(out[h * hd + d], expect[h / 2][d]) << h << " " << d;
  }
}

TEST(AttentionFp8Scalar, TwoPositionsHandComputed) {
  // head_dim 4 (scale 1/2), k_scale 2: k0 = e4m3 1.0 * 2 = [2, 0, 0, 0], k1 = 0; q = [1, 0, 0, 0]
  // -> scores [1, 0]; v_scale 0.5: v0 = [1, 0, 0, 0], v1 = [0, 1, 0, 0] (codes 0x40 = 2.0).
  const float q[] = {1, 0, 0, 0};
  const uint8_t k[] = {0x38, 0, 0, 0, 0, 0, 0, 0};
  const uint8_t v[] = {0x40, 0, 0, 0, 0, 0x40, 0, 0};
  float out[4], scratch[2];
  scalar::attention_fp8(q, k, v, 2, 4, 1, 1, 4, 2.0f, 0.5f, out, scratch);
  const double e = std::exp(1.0);
  EXPECT_NEAR(out[0], e / (e + 1), 1e-6);
  EXPECT_NEAR(out[1], 1 / (e + 1), 1e-6);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.0f);
}

struct Case {
  int64_t n_ctx, n_heads, n_kv, hd, stride_pad;
};

TEST(AttentionFp8, ScalarFastAndParallelMatchReferenceOnDequantizedCache) {
  const std::vector<Case> cases = {{1, 4, 1, 8, 0},     {3, 6, 2, 16, 5},    {17, 48, 8, 128, 0},
                                   {100, 3, 3, 33, 7},  {300, 16, 2, 40, 3}, {700, 12, 2, 128, 64},
                                   {2049, 6, 1, 64, 0}, {129, 12, 1, 100, 1}};
  ThreadPool pool(3);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.n_ctx);
    const int64_t stride = c.n_kv * c.hd + c.stride_pad;
    std::vector<float> q = random_floats(c.n_heads * c.hd, 1 + c.n_ctx, 0.3f);
    const Fp8Cache cache = make_cache(c.n_ctx * stride, 2 + c.n_ctx);
    const std::vector<double> expect =
        attention_reference(q, cache.k, cache.v, c.n_ctx, stride, c.n_heads, c.n_kv, c.hd);
    // As for the f32 attention test (|v| up to ~2x larger here): f32 dot products perturb the
    // softmax weights by <~ 5 hd u each, the weighted sum adds n_ctx u of sum p|v|.
    const double tol = (c.hd * 5.0 + c.n_ctx) * kF32Eps * 8 + 1e-6;
    std::vector<float> ref(c.n_heads * c.hd), scratch(c.n_ctx);
    scalar::attention_fp8(q.data(), cache.k8.data(), cache.v8.data(), c.n_ctx, stride, c.n_heads,
                          c.n_kv, c.hd, cache.k_scale, cache.v_scale, ref.data(), scratch.data());
    for (size_t i = 0; i < expect.size(); ++i)
      ASSERT_NEAR(ref[i], expect[i], tol) << "scalar " << i;
    test::for_each_simd_target([&] {
      std::vector<float> fast(c.n_heads * c.hd), par(c.n_heads * c.hd), f32(c.n_heads * c.hd);
      attention_fp8(q.data(), cache.k8.data(), cache.v8.data(), c.n_ctx, stride, c.n_heads, c.n_kv,
                    c.hd, cache.k_scale, cache.v_scale, fast.data(), scratch.data());
      attention_fp8_parallel(q.data(), cache.k8.data(), cache.v8.data(), c.n_ctx, stride, c.n_heads,
                             c.n_kv, c.hd, cache.k_scale, cache.v_scale, par.data(), pool);
      attention(q.data(), cache.k.data(), cache.v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd,
                f32.data(), scratch.data());
      for (size_t i = 0; i < expect.size(); ++i) {
        ASSERT_NEAR(fast[i], expect[i], tol) << "fast " << i;
        ASSERT_NEAR(fast[i], f32[i], 2 * tol) << "fast vs f32 attention " << i;
        ASSERT_EQ(par[i], fast[i]) << "parallel " << i;
      }
    });
  }
}

TEST(AttentionFp8, RejectsBadArguments) {
  float q[64] = {}, out[64] = {}, scratch[4] = {};
  uint8_t kv[64] = {};
  EXPECT_THROW(attention_fp8(q, kv, kv, 1, 8, 2, 2, 4, 0.0f, 1.0f, out, scratch), Error);
  EXPECT_THROW(attention_fp8(q, kv, kv, 1, 8, 2, 2, 4, 1.0f, -1.0f, out, scratch), Error);
  EXPECT_THROW(scalar::attention_fp8(q, kv, kv, 1, 8, 3, 2, 4, 1.0f, 1.0f, out, scratch), Error);
  ThreadPool pool(2);
  EXPECT_THROW(attention_fp8_parallel(q, kv, kv, 0, 8, 2, 2, 4, 1.0f, 1.0f, out, pool), Error);
  EXPECT_THROW(attention_fp8_parallel(q, kv, kv, 1, 4, 2, 2, 4, 1.0f, 1.0f, out, pool), Error);
}

}  // namespace
}  // namespace m2fp4
