// NVFP4 block scales, 16 blocks per AVX-512 vector. Each lane performs the scalar twin's float32
// operations (IEEE division and multiply, the bf16 and E4M3 round-to-nearest-even on the bits,
// the same clamps); the quant layer builds with -ffp-contract=off. Inputs are non-negative and
// finite (the caller checks the block amaxes), so the sign and NaN branches of f32_to_e4m3 reduce
// to the overflow-to-NaN one.
#include "quant/nvfp4_simd.h"

#include "numerics/fp8_e4m3.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_NVFP4_SIMD 1
#endif

namespace m2fp4 {

#ifdef M2FP4_NVFP4_SIMD

#define M2FP4_AVX512 __attribute__((target("avx512f")))

namespace {

// f32_to_e4m3(s, Fp8Overflow::kNan) for s >= +0 (any bits with the sign clear, NaN included).
M2FP4_AVX512 inline __m512i e4m3_code_nonnegative(__m512 s) {
  const __m512i a = _mm512_castps_si512(s);
  // Normal range: (a + 0x7FFFF + ((a >> 20) & 1)) >> 20 is q + up of the scalar code.
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0x7FFFF)), odd), 20);
  __m512i code = _mm512_sub_epi32(rounded, _mm512_set1_epi32(120 << 3));
  // Below 2^-6: the subnormal grid of 2^-9, s * 512 (exact) rounded half to even.
  const __mmask16 subnormal = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(0x3C800000));
  const __m512i whole = _mm512_cvt_roundps_epi32(_mm512_mul_ps(s, _mm512_set1_ps(512.0f)),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  code = _mm512_mask_mov_epi32(code, subnormal, whole);
  // Past 464, inf and NaN: 0x7F.
  const __mmask16 overflow = _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x43E80000));
  return _mm512_mask_mov_epi32(code, overflow, _mm512_set1_epi32(0x7F));
}

// e4m3_to_f32 of codes 0..0x7F.
M2FP4_AVX512 inline __m512 e4m3_value_nonnegative(__m512i code) {
  const __m512 normal = _mm512_castsi512_ps(
      _mm512_add_epi32(_mm512_slli_epi32(code, 20), _mm512_set1_epi32(120 << 23)));
  const __m512 subnormal =
      _mm512_mul_ps(_mm512_cvtepi32_ps(code), _mm512_set1_ps(1.0f / 512.0f));  // m * 2^-9
  const __mmask16 is_subnormal = _mm512_cmplt_epi32_mask(code, _mm512_set1_epi32(8));
  __m512 v = _mm512_mask_mov_ps(normal, is_subnormal, subnormal);
  const __mmask16 nan = _mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(0x7F));
  return _mm512_mask_mov_ps(v, nan, _mm512_set1_ps(__builtin_nanf("")));
}

// round_to_bf16 for finite values (NaN cannot reach it here).
M2FP4_AVX512 inline __m512 round_to_bf16_finite(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), odd);
  return _mm512_castsi512_ps(
      _mm512_and_si512(sum, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

}  // namespace

M2FP4_AVX512 void nvfp4_block_scales_avx512(const float* block_amax, int64_t n, float global_scale,
                                            const Nvfp4Options& options, uint8_t* scales,
                                            float* divisor) {
  const __m512 global = _mm512_set1_ps(global_scale);
  const bool modelopt = options.convention == Nvfp4Convention::kModelopt;
  const float t = 6.0f * global_scale;  // modelopt's divisor of the block amax
  for (int64_t b = 0; b < n; b += 16) {
    const __mmask16 live =
        n - b >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - b)) - 1);
    const __m512 amax = _mm512_maskz_loadu_ps(live, block_amax + b);
    __m512i code;
    __m512 value, div;
    if (modelopt) {
      __m512 s = t > 0.0f ? _mm512_div_ps(amax, _mm512_set1_ps(t)) : _mm512_setzero_ps();
      const __mmask16 zero = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_EQ_OQ);
      s = _mm512_mask_mov_ps(s, zero, _mm512_set1_ps(1.0f));
      if (options.modelopt_clamp_block_scale) {
        s = _mm512_min_ps(_mm512_max_ps(s, _mm512_set1_ps(1.0f / 512.0f)), _mm512_set1_ps(448.0f));
      }
      code = e4m3_code_nonnegative(s);
      value = e4m3_value_nonnegative(code);
      div = _mm512_mul_ps(value, global);
    } else {
      __m512 w = _mm512_div_ps(amax, _mm512_set1_ps(6.0f));
      if (options.ct_work_dtype == WorkDtype::kBF16) w = round_to_bf16_finite(w);
      const __m512 s = _mm512_min_ps(
          _mm512_max_ps(_mm512_mul_ps(global, w), _mm512_set1_ps(-448.0f)), _mm512_set1_ps(448.0f));
      code = e4m3_code_nonnegative(s);
      // A zero scale byte becomes 0.125 (compressed-tensors' guard against dividing by 0).
      const __mmask16 zero = _mm512_cmpeq_epi32_mask(code, _mm512_setzero_si512());
      code = _mm512_mask_mov_epi32(code, zero, _mm512_set1_epi32(0x20));
      value = e4m3_value_nonnegative(code);
      div = _mm512_div_ps(value, global);
    }
    _mm512_mask_cvtepi32_storeu_epi8(scales + b, live, code);
    _mm512_mask_storeu_ps(divisor + b, live, div);
  }
}

bool nvfp4_simd_available() {
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
}

void nvfp4_block_scales_simd(const float* block_amax, int64_t n, float global_scale,
                             const Nvfp4Options& options, uint8_t* scales, float* divisor) {
  nvfp4_block_scales_avx512(block_amax, n, global_scale, options, scales, divisor);
}

#else

bool nvfp4_simd_available() {
  return false;
}

void nvfp4_block_scales_simd(const float*, int64_t, float, const Nvfp4Options&, uint8_t*, float*) {}

#endif

}  // namespace m2fp4
