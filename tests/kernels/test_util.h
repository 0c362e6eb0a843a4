// Shared helpers for the kernel tests: random weights in each stored format and the f32
// summation-order error bound the fast kernels are held to.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "hwy/targets.h"
#include "kernels/cpu/simd_target.h"

#include "kernels/weight.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4::test {

// Unit roundoff of float32.
inline constexpr double kF32Eps = 1.0 / (1 << 24);

// A weight with its storage owned by the object.
struct OwnedWeight {
  Weight w;
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  std::vector<uint8_t> u8;
  std::vector<float> scales;

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
      default:
        ADD_FAILURE() << "no independent decoder for " << weight_format_name(w.format);
        return 0.0;
    }
  }
};

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
    default:
      ADD_FAILURE() << "no random generator for " << weight_format_name(format);
  }
  return o;
}

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

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

}  // namespace m2fp4::test
