// W4A4 activation quantizer: argument checks, the SIMD path (nvfp4_activation-inl.cc, one
// per Highway target, chosen at runtime) and its scalar twin.
#include "kernels/cpu/nvfp4_activation.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/nvfp4_activation-inl.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "kernels/cpu/nvfp4_activation-inl.cc"

#if HWY_ONCE
#include <bit>
#include <cmath>
#include <cstdint>

#include "base/error.h"
#include "numerics/e2m1.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {

namespace {
constexpr int64_t kBlock = 16;
}  // namespace

HWY_EXPORT(Nvfp4QuantizeActivationsImpl);

namespace {
void check_args(const float* x, int64_t n, int64_t cols, float input_scale, const float* x_out) {
  M2_CHECK(n >= 0 && cols > 0 && cols % kBlock == 0,
           "nvfp4_quantize_activations: need n >= 0 and cols a positive multiple of 16, got [", n,
           ", ", cols, "]");
  M2_CHECK(std::isfinite(input_scale) && input_scale > 0.0f,
           "nvfp4_quantize_activations: input_scale must be finite and > 0, got ", input_scale);
  M2_CHECK(n == 0 || (x != nullptr && x_out != nullptr), "nvfp4_quantize_activations: null buffer");
}
}  // namespace

void nvfp4_quantize_activations(const float* x, int64_t n, int64_t cols, float input_scale,
                                float* x_out) {
  check_args(x, n, cols, input_scale, x_out);
  if (n == 0) return;
  if (!HWY_DYNAMIC_DISPATCH(Nvfp4QuantizeActivationsImpl)(x, n * cols, 1.0f / input_scale, x_out)) {
    scalar::nvfp4_quantize_activations(x, n, cols, input_scale, x_out);
  }
}

namespace scalar {

void nvfp4_quantize_activations(const float* x, int64_t n, int64_t cols, float input_scale,
                                float* x_out) {
  check_args(x, n, cols, input_scale, x_out);
  if (n == 0) return;
  const float global = 1.0f / input_scale;
  constexpr float kOneSixth = 1.0f / 6.0f;  // the kernels multiply by f32(1/6), not divide by 6
  for (int64_t b = 0; b < n * cols; b += kBlock) {
    const float* xb = x + b;
    // max |x| on the bit patterns: NaN and inf sort above every finite value.
    uint32_t max_bits = 0;
    for (int64_t i = 0; i < kBlock; ++i) {
      const uint32_t a = std::bit_cast<uint32_t>(xb[i]) & 0x7FFFFFFFu;
      max_bits = a > max_bits ? a : max_bits;
    }
    const float vmax =
        max_bits >= 0x7F800000u ? __builtin_nanf("") : std::bit_cast<float>(max_bits);
    const float scale =
        e4m3_to_f32(f32_to_e4m3(global * (vmax * kOneSixth), Fp8Overflow::kSaturate));
    const float to_codes = scale != 0.0f ? global / scale : 0.0f;  // NaN scale stays NaN
    float* ob = x_out + b;
    for (int64_t i = 0; i < kBlock; ++i) {
      ob[i] = e2m1_to_f32(f32_to_e2m1(xb[i] * to_codes)) * scale / global;
    }
  }
}

}  // namespace scalar

}  // namespace m2fp4
#endif  // HWY_ONCE
