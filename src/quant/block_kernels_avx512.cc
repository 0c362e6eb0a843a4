#include "quant/block_kernels_avx512.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_E2M1_AVX512 1
#endif

namespace m2fp4::quant_detail {

#ifdef M2FP4_E2M1_AVX512

#define M2FP4_AVX512 __attribute__((target("avx512f")))

namespace {

// Magnitude code of |v|: the sum of the threshold comparisons of e2m1_magnitude_rne (ties to
// even: >= at 0.75, 1.75, 3.5) or of e2m1_magnitude_ties_toward_zero (all strict). Ordered
// comparisons: a NaN gives 0, as in the scalar code.
template <bool kTiesEven>
M2FP4_AVX512 inline __m512i magnitude_code(__m512 m) {
  constexpr int kTie = kTiesEven ? _CMP_GE_OQ : _CMP_GT_OQ;
  const __m512i one = _mm512_set1_epi32(1);
  const __m512 thresholds[7] = {_mm512_set1_ps(0.25f), _mm512_set1_ps(0.75f), _mm512_set1_ps(1.25f),
                                _mm512_set1_ps(1.75f), _mm512_set1_ps(2.5f),  _mm512_set1_ps(3.5f),
                                _mm512_set1_ps(5.0f)};
  __m512i code = _mm512_setzero_si512();
  for (int i = 0; i < 7; ++i) {
    // Odd thresholds (0.75, 1.75, 3.5) are the ties-to-even ones.
    const __mmask16 above = (i % 2 == 1) ? _mm512_cmp_ps_mask(m, thresholds[i], kTie)
                                         : _mm512_cmp_ps_mask(m, thresholds[i], _CMP_GT_OQ);
    code = _mm512_mask_add_epi32(code, above, code, one);
  }
  return code;
}

// 16 codes (one per 32-bit lane) -> 8 bytes, even index in the low nibble: each 64-bit lane
// holds an (even, odd) pair, and its low byte after or-ing in the odd code shifted down by 28.
M2FP4_AVX512 inline void store_packed(__m512i code, uint8_t* packed) {
  const __m512i pairs = _mm512_or_si512(code, _mm512_srli_epi64(code, 28));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(packed), _mm512_cvtepi64_epi8(pairs));
}

M2FP4_AVX512 inline __m512i with_sign(__m512i code, __mmask16 negative) {
  return _mm512_mask_or_epi32(code, negative, code, _mm512_set1_epi32(kE2m1SignBit));
}

}  // namespace

bool e2m1_avx512_available() {
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
}

M2FP4_AVX512 void encode_e2m1_rne_avx512(const float* x, const float* factor, int64_t n_blocks,
                                         bool multiply, uint8_t* packed) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m512 xs = _mm512_loadu_ps(x + 16 * b);
    const __m512 f = _mm512_set1_ps(factor[b]);
    const __m512 v = multiply ? _mm512_mul_ps(xs, f) : _mm512_div_ps(xs, f);
    const __m512i code = magnitude_code<true>(_mm512_abs_ps(v));
    store_packed(with_sign(code, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ)), packed + 8 * b);
  }
}

M2FP4_AVX512 void encode_e2m1_toward_zero_avx512(const float* x, const float* divisor,
                                                 int64_t n_blocks, E2m1ZeroSign zero_sign,
                                                 uint8_t* packed) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + 16 * b), _mm512_set1_ps(divisor[b]));
    const __m512i code = magnitude_code<false>(_mm512_abs_ps(v));
    __mmask16 negative = 0;
    switch (zero_sign) {
      case E2m1ZeroSign::kNegativeInput:
        negative = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
        break;
      case E2m1ZeroSign::kNeverNegZero:
        negative = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ) &
                   _mm512_test_epi32_mask(code, code);  // and a non-zero magnitude
        break;
      case E2m1ZeroSign::kNonPositiveInput:
        negative = _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ);
        break;
    }
    store_packed(with_sign(code, negative), packed + 8 * b);
  }
}

#else

bool e2m1_avx512_available() {
  return false;
}

void encode_e2m1_rne_avx512(const float*, const float*, int64_t, bool, uint8_t*) {}

void encode_e2m1_toward_zero_avx512(const float*, const float*, int64_t, E2m1ZeroSign, uint8_t*) {}

#endif

}  // namespace m2fp4::quant_detail
