// Per-target (Highway) driver of the int8-activation 4-bit GEMV (matmul4_int8.h): decodes each
// tile's group multipliers with the target's decoder (matmul4-inl.cc) and hands whole row tiles
// to the VNNI kernel of matmul4_int8.cc. Included by matmul-inl.cc after matmul4-inl.cc; not
// compiled on its own. Only the AVX-512 targets take this path (and only on CPUs with VNNI and
// VBMI); the others keep the f32-activation kernels.

#if defined(M2FP4_KERNELS_CPU_MATMUL4_INT8_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL4_INT8_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL4_INT8_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL4_INT8_INL_CC_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwy/highway.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/weight.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {

namespace four_bit_int8 {

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kTargetHasPath = true;
#else
constexpr bool kTargetHasPath = false;
#endif

// Whether a GEMV job on w takes the int8-activation kernel.
inline bool use_for(const Weight& w) {
  return kTargetHasPath && four_bit_activations() == FourBitActivations::kInt8 &&
         int8_gemv::weight_supported(w) && int8_gemv::cpu_supported();
}

// The multipliers of n groups from row r0's first on (rows back to back) into out, by the short
// ways this target has, exactly as group_scale_value() gives them: NVFP4 with |global| < 256
// (E4M3 bits placed in an f32 read as value * 2^-120, times global * 2^120, both exact: one
// rounding of value * global) and IQ4_NL x16 (vcvtph2ps). Returns false where it has no short
// way or some multiplier may not be finite (out then unspecified).
inline bool decode_finite_scales(const Weight& w, int64_t r0, int64_t n, float* out) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const int64_t groups = w.cols / w.group_size;
  if (w.format == WeightFormat::kNvfp4 && std::abs(w.global_scale) < 256.0f) {
    const uint8_t* p = w.group_scale + r0 * groups;
    const __m512 global = _mm512_set1_ps(w.global_scale * 0x1p120f);
    const __m128i magnitude = _mm_set1_epi8(0x7F);
    __mmask16 nan = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m =
          n - i >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (n - i)) - 1u);
      const __m128i code = _mm_maskz_loadu_epi8(m, p + i);
      nan |= _mm_mask_cmpeq_epi8_mask(m, _mm_and_si128(code, magnitude), magnitude);
      const __m512i bits = _mm512_and_si512(_mm512_slli_epi32(_mm512_cvtepi8_epi32(code), 20),
                                            _mm512_set1_epi32(static_cast<int32_t>(0x87F00000u)));
      _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_castsi512_ps(bits), global));
    }
    return nan == 0;
  }
  if (w.format == WeightFormat::kIq4nl16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(w.group_scale) + r0 * groups;
    const __m256i exponent = _mm256_set1_epi16(0x7C00);
    __mmask16 special = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m =
          n - i >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (n - i)) - 1u);
      const __m256i h = _mm256_maskz_loadu_epi16(m, p + i);
      special |= _mm256_mask_cmpeq_epi16_mask(m, _mm256_and_si256(h, exponent), exponent);
      _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(h));
    }
    return special == 0;
  }
#else
  (void)w, (void)r0, (void)n, (void)out;
#endif
  return false;
}

// Rows [row_begin, row_end) for n_tokens tokens (x: f32, xq: the same quantized; y[t * w.rows +
// r]), all tokens per row tile.
inline void rows_for_tokens(const Weight& w, const float* x, const uint8_t* xq, int64_t n_tokens,
                            int64_t row_begin, int64_t row_end, float* y) {
  constexpr int kRows = 4;
  const int64_t groups = w.cols / w.group_size;
  const int64_t stride = four_bit::multiplier_stride(groups);  // >= groups + 16
  float* storage = thread_scratch(1, static_cast<size_t>(kRows * stride));
  const uint8_t* codes = static_cast<const uint8_t*>(w.data);
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kRows) {
    const int n = static_cast<int>(std::min<int64_t>(kRows, row_end - r0));
    const uint8_t* rows[kRows];
    const float* mult[kRows];
    for (int i = 0; i < n; ++i) rows[i] = codes + (r0 + i) * (w.cols / 2);
    // The tile's rows have their scales back to back: one decode and one check for all of them
    // (a row's last chunk may read the next row's multipliers in lanes past its columns, where
    // the activations are 0 with scale 0: finite multipliers keep those lanes 0).
    bool finite_tile = decode_finite_scales(w, r0, n * groups, storage);
    if (!finite_tile) {
      four_bit::decode_group_scales(w, r0, 0, n * groups, storage);
      finite_tile = four_bit::all_finite(storage, n * groups);
    }
    std::memset(storage + n * groups, 0, 16 * sizeof(float));
    if (finite_tile) {
      for (int i = 0; i < n; ++i) mult[i] = storage + i * groups;
      int8_gemv::dot_rows(w, n, rows, mult, xq, n_tokens, y + r0, w.rows);
      continue;
    }
    bool finite[kRows];
    for (int i = 0; i < n; ++i) {
      float* m = storage + i * stride;
      four_bit::decode_group_scales(w, r0 + i, 0, groups, m);
      std::memset(m + groups, 0, 16 * sizeof(float));
      finite[i] = four_bit::all_finite(m, groups);
      mult[i] = m;
    }
    // A NaN or infinite multiplier: that row as scalar::matmul computes it (f32 activations),
    // so it gives the same NaN or infinity; the others as usual.
    for (int i = 0; i < n; ++i) {
      if (finite[i]) {
        int8_gemv::dot_rows(w, 1, rows + i, mult + i, xq, n_tokens, y + r0 + i, w.rows);
        continue;
      }
      for (int64_t t = 0; t < n_tokens; ++t) {
        float acc = 0.0f;
        for (int64_t c = 0; c < w.cols; ++c)
          acc += weight_element(w, r0 + i, c) * x[t * w.cols + c];
        y[t * w.rows + r0 + i] = acc;
      }
    }
  }
}

// Up to this many tokens a GEMV takes the decode kernel (int8_gemv::decode_rows): decode steps
// and the experts' few tokens each.
constexpr int64_t kMaxDecodeTokens = 8;

// Rows [row_begin, row_end) for n_tokens <= kMaxDecodeTokens tokens by the decode kernel; the
// tiles it hands back (a group scale it does not decode) by rows_for_tokens.
inline void decode_rows(const Weight& w, const float* x, const uint8_t* xq, int64_t n_tokens,
                        int64_t row_begin, int64_t row_end, float* y) {
  int64_t r = row_begin;
  while (r < row_end) {
    r = int8_gemv::decode_rows(w, r, row_end, xq, n_tokens, y, w.rows);
    if (r == row_end) break;
    const int64_t tile_end = std::min(row_end, r + int8_gemv::kDecodeTileRows);
    rows_for_tokens(w, x, xq, n_tokens, r, tile_end, y);
    r = tile_end;
  }
}

// Quantized activations read per pass over a thread's rows: the token block stays in L2 while
// each row tile's codes (decoded once per 4 tokens in the kernel) meet all of its tokens.
constexpr int64_t kTokenBlockBytes = 192 << 10;

// Rows [row_begin, row_end) for all n_tokens tokens (x: f32, xq: the same quantized). Many tokens
// (prefill) run in blocks of tokens, each over all the rows; a (row, token) result takes the same
// steps whatever the block, the tile shape or n_tokens.
inline void gemv_rows(const Weight& w, const float* x, const uint8_t* xq, int64_t n_tokens,
                      int64_t row_begin, int64_t row_end, float* y) {
  if (n_tokens <= kMaxDecodeTokens && int8_gemv::decode_supported(w)) {
    decode_rows(w, x, xq, n_tokens, row_begin, row_end, y);
    return;
  }
  const int64_t token_bytes = int8_gemv::activation_bytes(w.cols, 1);
  const int64_t block = std::max<int64_t>(4, kTokenBlockBytes / token_bytes / 4 * 4);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += block) {
    rows_for_tokens(w, x + t0 * w.cols, xq + t0 * token_bytes, std::min(block, n_tokens - t0),
                    row_begin, row_end, y + t0 * w.rows);
  }
}

}  // namespace four_bit_int8

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
