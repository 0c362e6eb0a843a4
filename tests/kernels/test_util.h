// Shared helpers for the kernel tests: random weights in each stored format and the f32
// summation-order error bound the fast kernels are held to.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hwy/targets.h"
#include "kernels/cpu/simd_target.h"

#include "base/thread_pool.h"

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/weight.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4::test {

// Unit roundoff of float32.
inline constexpr double kF32Eps = 1.0 / (1 << 24);

// Hand-written decode tables of the 4-bit formats (quant-formats.md §1.1 and §3.3), kept apart
// from the kernels' own tables so the tests do not share a mistake with them.
inline constexpr double kTestE2m1[16] = {0,  0.5,  1,  1.5,  2,  3,  4,  6,
                                         -0, -0.5, -1, -1.5, -2, -3, -4, -6};
inline constexpr double kTestIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// E8M0 (§1.3): 2^(e - 127), 0xFF is NaN.
inline double test_e8m0(uint8_t e) {
  return e == 0xFF ? std::numeric_limits<double>::quiet_NaN() : std::ldexp(1.0, int{e} - 127);
}

// The 4-bit code of column c of row r, codes packed along the row, even column low (§2.4).
inline int test_nibble(const std::vector<uint8_t>& packed, int64_t cols, int64_t r, int64_t c) {
  const uint8_t byte = packed[static_cast<size_t>(r * (cols / 2) + c / 2)];
  return (c % 2 == 0) ? (byte & 0xF) : (byte >> 4);
}

// A weight with its storage owned by the object.
struct OwnedWeight {
  Weight w;
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  std::vector<uint8_t> u8;
  std::vector<float> scales;
  std::vector<uint8_t> group_scales;  // 4-bit formats: E4M3 / E8M0 bytes or f16 pairs

  // Points w at the owned buffers (after the vectors were filled or modified in size).
  void bind() {
    w.data = !f32.empty()   ? static_cast<const void*>(f32.data())
             : !u16.empty() ? static_cast<const void*>(u16.data())
                            : static_cast<const void*>(u8.data());
    w.block_scale = scales.empty() ? nullptr : scales.data();
    w.group_scale = group_scales.empty() ? nullptr : group_scales.data();
  }

  // The f32 multiplier of group g of row r, as the format defines it. NVFP4's dequantizing
  // kernels round e4m3(S) * global_scale to f32 once, then multiply the element by it.
  float group_multiplier(int64_t r, int64_t g) const {
    const int64_t i = r * (w.cols / w.group_size) + g;
    switch (w.format) {
      case WeightFormat::kNvfp4:
        return e4m3_to_f32(group_scales[i]) * w.global_scale;
      case WeightFormat::kMxfp4:
        return static_cast<float>(test_e8m0(group_scales[i]));
      case WeightFormat::kIq4nl16: {
        const uint16_t bits =
            static_cast<uint16_t>(group_scales[2 * i] | (group_scales[2 * i + 1] << 8));
        return f16_to_f32(bits);
      }
      default:
        ADD_FAILURE() << "no group scales in " << weight_format_name(w.format);
        return 0.0f;
    }
  }

  // Exact decoded value of element (r, c), computed independently of the kernels.
  double at(int64_t r, int64_t c) const {
    const int64_t i = r * w.cols + c;
    switch (w.format) {
      case WeightFormat::kF32:
        return f32[i];
      case WeightFormat::kBF16:
        return bf16_to_f32(u16[i]);
      case WeightFormat::kF16:
        return f16_to_f32(u16[i]);
      case WeightFormat::kFp8Block128:
        return double{e4m3_to_f32(u8[i])} * scales[(r / 128) * w.scale_cols + c / 128];
      case WeightFormat::kNvfp4:
      case WeightFormat::kMxfp4: {
        // Element times the group multiplier, rounded to f32 like any f32 product.
        const float m = group_multiplier(r, c / w.group_size);
        return static_cast<float>(kTestE2m1[test_nibble(u8, w.cols, r, c)] * double{m});
      }
      case WeightFormat::kIq4nl16: {
        // level (7 bits) times an f16 scale (11 bits) is exact in f32.
        return kTestIq4nl[test_nibble(u8, w.cols, r, c)] *
               double{group_multiplier(r, c / w.group_size)};
      }
      default:
        ADD_FAILURE() << "no independent decoder for " << weight_format_name(w.format);
        return 0.0;
    }
  }
};

// The 4-bit formats, and the group size random_weight gives each.
inline constexpr WeightFormat kFourBitFormats[] = {WeightFormat::kNvfp4, WeightFormat::kMxfp4,
                                                   WeightFormat::kIq4nl16};
inline int64_t group_of(WeightFormat format) {
  return format == WeightFormat::kMxfp4 ? 32 : 16;
}

// Random weight: values ~ N(0, 1) (with some tiny ones so f16/fp8 subnormals are exercised),
// fp8 codes uniform over all non-NaN codes, block scales spread over several octaves.
inline OwnedWeight random_weight(WeightFormat format, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> coin(0, 15);
  auto value = [&] {
    float v = normal(rng);
    if (coin(rng) == 0) v *= 1e-6f;  // f16 subnormal range
    return v;
  };
  OwnedWeight o;
  o.w.format = format;
  o.w.rows = rows;
  o.w.cols = cols;
  const int64_t n = rows * cols;
  switch (format) {
    case WeightFormat::kF32:
      o.f32.resize(n);
      for (auto& v : o.f32) v = value();
      o.w.data = o.f32.data();
      break;
    case WeightFormat::kBF16:
      o.u16.resize(n);
      for (auto& v : o.u16) v = f32_to_bf16(value());
      o.w.data = o.u16.data();
      break;
    case WeightFormat::kF16:
      o.u16.resize(n);
      for (auto& v : o.u16) v = f32_to_f16(value());
      o.w.data = o.u16.data();
      break;
    case WeightFormat::kFp8Block128: {
      std::uniform_int_distribution<int> code(0, 255);
      o.u8.resize(n);
      for (auto& v : o.u8) {
        int c = code(rng);
        while ((c & 0x7F) == 0x7F) c = code(rng);  // skip the two NaN codes
        v = static_cast<uint8_t>(c);
      }
      o.w.scale_cols = (cols + 127) / 128;
      o.scales.resize(((rows + 127) / 128) * o.w.scale_cols);
      std::uniform_real_distribution<float> octave(-8.0f, 2.0f);
      for (auto& s : o.scales) s = std::exp2(octave(rng));
      o.w.data = o.u8.data();
      o.w.block_scale = o.scales.data();
      break;
    }
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16: {
      const int64_t group = group_of(format);
      if (cols % group != 0) {
        ADD_FAILURE() << weight_format_name(format) << " needs cols divisible by " << group;
        return o;
      }
      o.w.group_size = group;
      std::uniform_int_distribution<int> byte(0, 255);
      o.u8.resize(static_cast<size_t>(n / 2));
      for (auto& v : o.u8) v = static_cast<uint8_t>(byte(rng));  // every code pair
      const int64_t n_groups = rows * (cols / group);
      std::uniform_int_distribution<int> rare(0, 63);
      if (format == WeightFormat::kNvfp4) {
        // Block scales as producers write them: positive E4M3 up to 448 (0x7E), mostly normal
        // (>= 0x08), some subnormal and zero. Global scale = amax / 2688 for an amax ~ 1..8.
        std::uniform_int_distribution<int> normal_code(0x08, 0x7E), small_code(0x00, 0x07);
        for (int64_t g = 0; g < n_groups; ++g) {
          o.group_scales.push_back(
              static_cast<uint8_t>(rare(rng) == 0 ? small_code(rng) : normal_code(rng)));
        }
        std::uniform_real_distribution<float> amax(1.0f, 8.0f);
        o.w.global_scale = amax(rng) / 2688.0f;
      } else if (format == WeightFormat::kMxfp4) {
        // E8M0 exponents around 127 (1.0), a few far out: 0 (2^-127, an f32 subnormal) and
        // 2^100 (large, yet products and sums stay finite).
        std::normal_distribution<float> spread(0.0f, 4.0f);
        for (int64_t g = 0; g < n_groups; ++g) {
          int e = 127 + static_cast<int>(std::lround(spread(rng)));
          if (rare(rng) == 0) e = rare(rng) % 2 ? 0 : 227;
          o.group_scales.push_back(static_cast<uint8_t>(std::clamp(e, 0, 254)));
        }
      } else {
        // Signed f16 scales (a negative scale mirrors the grid), magnitudes 1e-4..1e-1, some
        // f16 subnormals and zeros.
        std::uniform_real_distribution<float> log10_mag(-4.0f, -1.0f);
        for (int64_t g = 0; g < n_groups; ++g) {
          float d = std::pow(10.0f, log10_mag(rng)) * (coin(rng) < 8 ? -1.0f : 1.0f);
          const int kind = rare(rng);
          if (kind == 0) d = 0.0f;
          if (kind == 1) d *= 1e-3f;  // f16 subnormal
          const uint16_t h = f32_to_f16(d);
          o.group_scales.push_back(static_cast<uint8_t>(h & 0xFF));
          o.group_scales.push_back(static_cast<uint8_t>(h >> 8));
        }
      }
      o.bind();
      break;
    }
    default:
      ADD_FAILURE() << "no random generator for " << weight_format_name(format);
  }
  return o;
}

// Sets the process-wide 4-bit activation mode for a scope (tests of the f32 numerics pin kF32:
// the default rounds GEMV activations to int8).
class ScopedFourBitActivations {
 public:
  explicit ScopedFourBitActivations(FourBitActivations mode) : saved_(four_bit_activations()) {
    set_four_bit_activations(mode);
  }
  ~ScopedFourBitActivations() { set_four_bit_activations(saved_); }
  ScopedFourBitActivations(const ScopedFourBitActivations&) = delete;
  ScopedFourBitActivations& operator=(const ScopedFourBitActivations&) = delete;

 private:
  FourBitActivations saved_;
};

// Runs fn once with the kernels' runtime dispatch forced to each SIMD target this CPU supports
// (AVX-512, AVX2, SSE4, ... on x86), so every compiled variant is checked, not just the best.
template <class Fn>
void for_each_simd_target(Fn&& fn) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    EXPECT_STREQ(kernels_simd_target(), hwy::TargetName(target));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Whether the current dispatch target is one of the AVX-512 ones (AVX3, AVX3_DL, ...), the only
// ones with the int8 and bf16 dot-product kernels (which also need the CPU's instructions).
inline bool on_avx512_target() {
  return std::string(kernels_simd_target()).rfind("AVX3", 0) == 0;
}

// Test-name suffix of a weight-format parameter ("iq4nl-16" -> "iq4nl_16"), for
// INSTANTIATE_TEST_SUITE_P.
inline std::string format_param_name(const ::testing::TestParamInfo<WeightFormat>& info) {
  std::string name = weight_format_name(info.param);
  for (char& ch : name) {
    if (ch == '-') ch = '_';
  }
  return name;
}

// Whether matmul() on the current dispatch target runs the int8-activation 4-bit kernels (with
// kInt8 set): the AVX-512 targets on a CPU with VNNI and VBMI.
inline bool int8_activations_active() {
  return on_avx512_target() && int8_gemv::cpu_supported();
}

// fast[i] against ref[i] for every i: NaN where ref is NaN, the same infinity where ref is
// infinite, else within tol[i]. where(i) names element i in the failure message.
template <class Tolerances, class Where>
void expect_near_or_same_nonfinite(const std::vector<float>& fast, const std::vector<float>& ref,
                                   const Tolerances& tol, const Where& where) {
  ASSERT_EQ(fast.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i])) {
      ASSERT_TRUE(std::isnan(fast[i])) << where(i) << " got " << fast[i];
    } else if (std::isinf(ref[i])) {
      ASSERT_EQ(fast[i], ref[i]) << where(i);
    } else {
      ASSERT_NEAR(fast[i], ref[i], tol[i]) << where(i);
    }
  }
}

// One job of a mixed-batch test: a random weight of this format and shape on n_tokens tokens.
struct BatchJobSpec {
  WeightFormat format;
  int64_t rows, cols, n_tokens;
};

// Runs weights[i] on xs[i] for specs[i].n_tokens tokens, all in one matmul_batch, with each
// thread count on every SIMD target: every output within tols[i] of refs[i].
inline void expect_batch_matches(const std::vector<BatchJobSpec>& specs,
                                 const std::vector<OwnedWeight>& weights,
                                 const std::vector<std::vector<float>>& xs,
                                 const std::vector<std::vector<float>>& refs,
                                 const std::vector<std::vector<float>>& tols,
                                 std::initializer_list<int> thread_counts) {
  for (int threads : thread_counts) {
    ThreadPool pool(threads);
    for_each_simd_target([&] {
      std::vector<std::vector<float>> ys;
      std::vector<MatmulJob> jobs;
      for (size_t i = 0; i < specs.size(); ++i) ys.emplace_back(specs[i].n_tokens * specs[i].rows);
      for (size_t i = 0; i < specs.size(); ++i) {
        jobs.push_back({&weights[i].w, xs[i].data(), specs[i].n_tokens, ys[i].data()});
      }
      matmul_batch(jobs.data(), static_cast<int64_t>(jobs.size()), pool);
      for (size_t i = 0; i < specs.size(); ++i) {
        for (size_t k = 0; k < ys[i].size(); ++k) {
          ASSERT_NEAR(ys[i][k], refs[i][k], tols[i][k])
              << "job " << i << " element " << k << " threads " << threads;
        }
      }
    });
  }
}

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Checks scalar::matmul of a random weight against a double-precision sum of the independently
// decoded terms: sequential f32 summation of n products errs by at most (n + 1) u sum|terms|.
inline void expect_scalar_matches_double_sum(WeightFormat format, int64_t rows, int64_t cols,
                                             int64_t n_tokens) {
  OwnedWeight o = random_weight(format, rows, cols, 11);
  std::vector<float> x = random_floats(n_tokens * cols, 12);
  std::vector<float> y(n_tokens * rows);
  scalar::matmul(o.w, x.data(), n_tokens, y.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0, sum_abs = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double term = o.at(r, c) * x[t * cols + c];
        sum += term;
        sum_abs += std::abs(term);
      }
      EXPECT_NEAR(y[t * rows + r], sum, (cols + 1) * kF32Eps * sum_abs)
          << weight_format_name(format) << " t=" << t << " r=" << r;
    }
  }
}

}  // namespace m2fp4::test
