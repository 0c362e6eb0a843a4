// Per-target (Highway) W4A4 activation quantizer; included by nvfp4_activation.cc once per SIMD
// target via foreach_target.h. Not compiled on its own (the CMake glob skips *-inl.cc).
//
// Same float32 operations as the scalar twin (nvfp4_activation.cc) per element: the block max
// on the bit patterns, the E4M3 scale per block (scalar, once per 16 elements), x * to_codes,
// RNE E2M1 by the threshold comparisons of e2m1_magnitude_rne (as value selects; NaN compares
// false and gives 0, the sign follows x < 0), then (value * scale) / global. Bit-identical.

#if defined(M2FP4_KERNELS_CPU_NVFP4_ACTIVATION_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_NVFP4_ACTIVATION_INL_CC_
#undef M2FP4_KERNELS_CPU_NVFP4_ACTIVATION_INL_CC_
#else
#define M2FP4_KERNELS_CPU_NVFP4_ACTIVATION_INL_CC_
#endif

#include <algorithm>
#include <bit>
#include <cstdint>

#include "hwy/highway.h"
#include "numerics/fp8_e4m3.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Blocks of 16: whole vectors when the lanes divide 16 (every x86 target), else the caller
// falls back to the scalar twin.
HWY_NOINLINE bool Nvfp4QuantizeActivationsImpl(const float* x, int64_t n_values, float global,
                                               float* x_out) {
  constexpr int64_t kBlock = 16;
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  if (kBlock % lanes != 0 || lanes > kBlock) return false;
  const int64_t per_block = kBlock / lanes;
  constexpr float kOneSixth = 1.0f / 6.0f;
  const auto abs_bits = hn::Set(du, 0x7FFFFFFFu);
  const auto zero = hn::Zero(df);
  const auto global_v = hn::Set(df, global);
  for (int64_t b = 0; b < n_values; b += kBlock) {
    auto max_bits = hn::Zero(du);
    for (int64_t v = 0; v < per_block; ++v) {
      const auto bits = hn::BitCast(du, hn::LoadU(df, x + b + v * lanes));
      max_bits = hn::Max(max_bits, hn::And(bits, abs_bits));
    }
    const uint32_t block_max = hn::GetLane(hn::MaxOfLanes(du, max_bits));
    const float vmax =
        block_max >= 0x7F800000u ? __builtin_nanf("") : std::bit_cast<float>(block_max);
    const float scale =
        e4m3_to_f32(f32_to_e4m3(global * (vmax * kOneSixth), Fp8Overflow::kSaturate));
    const float to_codes = scale != 0.0f ? global / scale : 0.0f;  // NaN scale stays NaN
    const auto to_codes_v = hn::Set(df, to_codes);
    const auto scale_v = hn::Set(df, scale);
    for (int64_t v = 0; v < per_block; ++v) {
      const auto q = hn::Mul(hn::LoadU(df, x + b + v * lanes), to_codes_v);
      const auto m = hn::Abs(q);
      auto value = zero;
      value = hn::IfThenElse(hn::Gt(m, hn::Set(df, 0.25f)), hn::Set(df, 0.5f), value);
      value = hn::IfThenElse(hn::Ge(m, hn::Set(df, 0.75f)), hn::Set(df, 1.0f), value);
      value = hn::IfThenElse(hn::Gt(m, hn::Set(df, 1.25f)), hn::Set(df, 1.5f), value);
      value = hn::IfThenElse(hn::Ge(m, hn::Set(df, 1.75f)), hn::Set(df, 2.0f), value);
      value = hn::IfThenElse(hn::Gt(m, hn::Set(df, 2.5f)), hn::Set(df, 3.0f), value);
      value = hn::IfThenElse(hn::Ge(m, hn::Set(df, 3.5f)), hn::Set(df, 4.0f), value);
      value = hn::IfThenElse(hn::Gt(m, hn::Set(df, 5.0f)), hn::Set(df, 6.0f), value);
      value = hn::IfThenElse(hn::Lt(q, zero), hn::Neg(value), value);  // small negatives: -0
      hn::StoreU(hn::Div(hn::Mul(value, scale_v), global_v), df, x_out + b + v * lanes);
    }
  }
  return true;
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
