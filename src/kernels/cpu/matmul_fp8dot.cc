// AVX512_BF16 + AVX512_VBMI kernel of the bf16-activation FP8 matmul (matmul_fp8dot.h), in
// functions with their own target attributes (as matmul_bf16dot.cc), run only after
// cpu_supported() said yes; plus the scalar twin.
//
// Decoding 64 E4M3 codes (one 64-byte load) to bf16 takes two vpermt2b lookups, indexed by the
// code's 7 magnitude bits into 128-entry tables of the low and the high byte of the exact bf16
// magnitude (subnormal codes are normal bf16 numbers; the two NaN codes give a bf16 NaN), one
// vpternlogd that puts the code's sign bit into the high byte, and two byte unpacks. The unpacks
// interleave within 128-bit lanes, so the two bf16 vectors hold the columns in a fixed permuted
// order: A = columns {0-7, 16-23, 32-39, 48-55}, B = {8-15, 24-31, 40-47, 56-63} of the 64. The
// scaled activations are stored in that same order (A then B per 64 columns), so vdpbf16ps pairs
// each weight with its own activation; the sum does not care about the order. 2-8 tokens run the
// dot products on f32 FMAs with vdpbf16ps's bits (the float overload of dot_step), so a token alone
// and in a batch agree bit for bit.
#include "kernels/cpu/matmul_fp8dot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "base/error.h"
#include "hwy/base.h"  // HWY_UNROLL
#include "kernels/cpu/scratch.h"
#include "numerics/bf16.h"
#include "numerics/fp8_e4m3.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "kernels/cpu/bf16_pair_fma.h"
#define M2FP4_FP8DOT_X86 1
#define M2FP4_FP8DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vbmi")))
#endif

namespace m2fp4 {

namespace {

// The activation as the kernel multiplies it: bf16(x * s), products below 2^-126 in magnitude a
// zero of their sign (vcvtne2ps2bf16 reads f32 subnormals as zero, vdpbf16ps bf16 ones).
float scaled_activation(float x, float scale) {
  const float v = x * scale;
  if (std::abs(v) < 0x1p-126f) return std::copysign(0.0f, v);
  return round_to_bf16(v);
}

}  // namespace

namespace scalar {

void matmul_fp8_bf16_activations(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  if (w.format != WeightFormat::kFp8Block128) {
    fail("matmul_fp8_bf16_activations: weight is not FP8 block-128");
  }
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = data + r * w.cols;
      const float* scales = w.block_scale + (r / 128) * w.scale_cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) {
        acc += e4m3_to_f32(row[c]) * scaled_activation(xt[c], scales[c / 128]);
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace scalar

namespace fp8dot {

bool takes(int64_t cols, int64_t n_tokens) {
  return n_tokens <= 8 || n_tokens * cols <= 8192;
}

#if defined(M2FP4_FP8DOT_X86)

namespace {

// Low and high byte of the bf16 of each E4M3 magnitude code 0..127 (0x7F: NaN, 0x7FC0).
struct DecodeTables {
  alignas(64) std::array<uint8_t, 128> lo;
  alignas(64) std::array<uint8_t, 128> hi;
};

constexpr DecodeTables make_decode_tables() {
  DecodeTables t{};
  for (int m = 0; m < 128; ++m) {
    const uint16_t b = f32_to_bf16(e4m3_to_f32(static_cast<uint8_t>(m)));
    t.lo[m] = static_cast<uint8_t>(b & 0xFF);
    t.hi[m] = static_cast<uint8_t>(b >> 8);
  }
  return t;
}

constexpr DecodeTables kDecodeTables = make_decode_tables();

// Columns of a scaled activation row: cols padded with zeros to a multiple of 64 (one load of
// codes, two bf16 vectors).
int64_t padded_columns(int64_t cols) {
  return (cols + 63) / 64 * 64;
}

// Tokens dotted in registers per pass over a tile: R x TB accumulators, R = 8 for one token, else 2
// (the accumulators + 5 tables + the decoded weights fit the 32 registers).
constexpr int64_t kMaxTokenGroup = 8;

struct Tables {
  __m512i lo0, lo1, hi0, hi1, sign;
};

M2FP4_FP8DOT inline Tables load_tables() {
  return Tables{_mm512_load_si512(kDecodeTables.lo.data()),
                _mm512_load_si512(kDecodeTables.lo.data() + 64),
                _mm512_load_si512(kDecodeTables.hi.data()),
                _mm512_load_si512(kDecodeTables.hi.data() + 64), _mm512_set1_epi8(-128)};
}

M2FP4_FP8DOT inline __m512bh as_bh(__m512i v) {
  return reinterpret_cast<__m512bh&>(v);
}

// 64 codes to bf16: wa = columns {0-7, 16-23, 32-39, 48-55}, wb = the other 32 (file comment).
M2FP4_FP8DOT inline void decode64(const Tables& tb, __m512i codes, __m512i& wa, __m512i& wb) {
  const __m512i lo = _mm512_permutex2var_epi8(tb.lo0, codes, tb.lo1);
  const __m512i hi_magnitude = _mm512_permutex2var_epi8(tb.hi0, codes, tb.hi1);
  // hi_magnitude | (codes & 0x80)
  const __m512i hi = _mm512_ternarylogic_epi32(hi_magnitude, codes, tb.sign, 0xF8);
  wa = _mm512_unpacklo_epi8(lo, hi);
  wb = _mm512_unpackhi_epi8(lo, hi);
}

// One step of 64 columns (at c) of R rows' codes against TB tokens: the R rows decoded first,
// then each token's two activation vectors loaded once for all R rows (R x fewer loads than
// token-inner order, which matters once the tokens' rows spill from L1).
template <int R, int TB>
M2FP4_FP8DOT inline void dot_step(__m512 (&acc)[R][TB], const __m512i (&codes)[R],
                                  const uint16_t* xs, int64_t x_stride, int64_t c,
                                  const Tables& tb) {
  __m512i wa[R], wb[R];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) decode64(tb, codes[r], wa[r], wb[r]);
  HWY_UNROLL(8)
  for (int t = 0; t < TB; ++t) {
    const uint16_t* xt = xs + t * x_stride + c;
    const __m512bh xa = as_bh(_mm512_loadu_si512(xt));
    const __m512bh xb = as_bh(_mm512_loadu_si512(xt + 32));
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      acc[r][t] = _mm512_dpbf16_ps(acc[r][t], as_bh(wa[r]), xa);
      acc[r][t] = _mm512_dpbf16_ps(acc[r][t], as_bh(wb[r]), xb);
    }
  }
}

// dot_step on f32 FMAs for 2-8 tokens with vdpbf16ps's bits (bf16_pair_fma.h): each decoded
// bf16 vector widened to its odd and its even columns, the tokens' scaled activations widened
// once per scale block (xw: per 64 columns, the odd then the even halves of vector A, then of
// B), under ScopedSubnormalsAsZero.
template <int R, int TB>
M2FP4_FP8DOT inline void dot_step(__m512 (&acc)[R][TB], const __m512i (&codes)[R], const float* xw,
                                  int64_t x_stride, int64_t c, const Tables& tb) {
  using namespace bf16_pair_fma;
  __m512i wa[R], wb[R];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) decode64(tb, codes[r], wa[r], wb[r]);
  HWY_UNROLL(2)
  for (int half = 0; half < 2; ++half) {
    __m512 odd[R], even[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      const __m512i w = half == 0 ? wa[r] : wb[r];
      odd[r] = odd_columns(w);
      even[r] = even_columns(w);
    }
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      const float* xt = xw + t * x_stride + c + 32 * half;
      const __m512 x_odd = _mm512_load_ps(xt), x_even = _mm512_load_ps(xt + 16);
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) acc[r][t] = dot_pairs(acc[r][t], odd[r], even[r], x_odd, x_even);
    }
  }
}

using bf16_pair_fma::ColumnBlock;

// The tokens' rows as a tile reads them: bf16 (vdpbf16ps) or widened to f32 (FMA path).
template <bool kFma>
using TokenRows = std::conditional_t<kFma, float, uint16_t>;

// y[t * y_stride + r] = row r (of R) dotted with scaled token t (of TB), for the R contiguous
// rows at `rows` (cols bytes each).
//
// Prefetch: while it reads line c of each of its rows, the tile prefetches line c of the same
// row of the next tile (the R rows after its own, which the thread reads next), R x cols bytes
// ahead of the stream. Per-row prefetches 512-2048 bytes ahead (as the BF16 GEMV's) left the
// wide preset's 200064 x 3072 lm_head at 19-21 GB/s on 2 threads; one tile ahead streamed it at
// 25-29 GB/s (a stand-alone probe, same minute), as fast as the BF16 GEMV's bytes. Near a
// matrix's end the prefetches run past it (never faulting) into whatever lies after.
// With kFma, xs is the widened activations (the FMA dot_step), the caller has set DAZ and FTZ,
// and the tile covers one column block: its accumulators start at zero or parked in acc_mem,
// and end reduced into y or parked (block_rows).
template <int R, int TB, bool kFma = false>
M2FP4_FP8DOT void dot_tile(const uint8_t* rows, const ColumnBlock& b, const TokenRows<kFma>* xs,
                           int64_t x_stride, __m512* acc_mem, float* y, int64_t y_stride,
                           const Tables& tb) {
  const int64_t cols = b.cols;
  __m512 acc[R][TB];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) acc[r][t] = b.first ? _mm512_setzero_ps() : acc_mem[r * TB + t];
  }
  int64_t c = b.c0;
  for (; c + 64 <= b.c1; c += 64) {
    __m512i codes[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows + (R + r) * cols + c), _MM_HINT_T0);
      codes[r] = _mm512_loadu_si512(rows + r * cols + c);
    }
    dot_step<R, TB>(acc, codes, xs, x_stride, c, tb);
  }
  if (c < b.c1) {
    // Codes past cols load as 0 (+0.0); the activations' padding is zero as well.
    const __mmask64 m = (uint64_t{1} << (b.c1 - c)) - 1u;
    __m512i codes[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) codes[r] = _mm512_maskz_loadu_epi8(m, rows + r * cols + c);
    dot_step<R, TB>(acc, codes, xs, x_stride, c, tb);
  }
  bf16_pair_fma::finish_block(acc, b.last, acc_mem, y, y_stride);
}

template <int R, bool kFma>
M2FP4_FP8DOT void dot_tile_tokens(const uint8_t* rows, const ColumnBlock& b,
                                  const TokenRows<kFma>* xs, int64_t x_stride, int64_t nt,
                                  __m512* acc_mem, float* y, int64_t y_stride, const Tables& tb) {
  switch (nt) {
    case 1:
      return dot_tile<R, 1, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 2:
      return dot_tile<R, 2, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 3:
      return dot_tile<R, 3, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 4:
      return dot_tile<R, 4, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 5:
      return dot_tile<R, 5, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 6:
      return dot_tile<R, 6, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    case 7:
      return dot_tile<R, 7, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
    default:
      return dot_tile<R, 8, kFma>(rows, b, xs, x_stride, acc_mem, y, y_stride, tb);
  }
}

// Column blocks of the FMA path (2-8 tokens): the widened tokens' columns of one block (n_tokens
// x block x 4 bytes <= 32 KiB) stay in L1 while the scale block's row tiles stream past them,
// each tile's accumulators parked between blocks (acc_mem: 128 x 8 vectors at most), so every
// lane adds the same products in the same order as over the whole row (the BF16 GEMV's reason).
constexpr int64_t kFmaBlockFloats = 8192;

// Rounds x[t] * scales[c / 128] to bf16 for n_tokens tokens into out (stride words per token) in
// the decoder's column order; the padding is zero.
M2FP4_FP8DOT void scale_activations(const float* x, int64_t cols, int64_t n_tokens,
                                    const float* scales, uint16_t* out, int64_t stride) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    uint16_t* o = out + t * stride;
    for (int64_t c = 0; c < stride; c += 64) {
      const __m512 s = _mm512_set1_ps(scales[c / 128]);
      __m512 v[4];
      HWY_UNROLL(8)
      for (int i = 0; i < 4; ++i) {
        const int64_t left = std::clamp<int64_t>(cols - c - 16 * i, 0, 16);
        const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
        // Zero-masked multiply: the padding stays 0 whatever the scale (0 * inf would be NaN).
        v[i] = _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(m, xt + c + 16 * i), s);
      }
      // vcvtne2ps2bf16: round-to-nearest-even; b's 16 values in the low half.
      const __m512bh h01 = _mm512_cvtne2ps_pbh(v[1], v[0]);
      const __m512bh h23 = _mm512_cvtne2ps_pbh(v[3], v[2]);
      const __m512i c01 = reinterpret_cast<const __m512i&>(h01);  // 128-bit lanes: 0-7, 8-15, ..
      const __m512i c23 = reinterpret_cast<const __m512i&>(h23);  // 32-39, 40-47, ..
      _mm512_storeu_si512(o + c, _mm512_shuffle_i64x2(c01, c23, _MM_SHUFFLE(2, 0, 2, 0)));
      _mm512_storeu_si512(o + c + 32, _mm512_shuffle_i64x2(c01, c23, _MM_SHUFFLE(3, 1, 3, 1)));
    }
  }
}

// The row tiles of rows [b0, b1) (one 128-row scale block) against all n_tokens tokens.
template <bool kFma>
M2FP4_FP8DOT void block_rows(const uint8_t* data, int64_t rows_total, int64_t cols, int64_t b0,
                             int64_t b1, const TokenRows<kFma>* xs, int64_t stride,
                             int64_t n_tokens, __m512* acc_mem, float* y, const Tables& tb) {
  // vdpbf16ps takes 1 or more than 8 tokens (matmul_rows); FMA: 2-row tiles (16 accumulators + 2
  // rows' decoded and widened vectors + the tables fit the 32 registers), all the tokens at once.
  const int64_t tile_rows = n_tokens == 1 ? 8 : 2;
  const int64_t group = kFma ? n_tokens : kMaxTokenGroup;
  const int64_t block_cols =
      kFma ? std::max<int64_t>(64, kFmaBlockFloats / n_tokens / 64 * 64) : cols;
  for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
    const ColumnBlock cb{c0, std::min(cols, c0 + block_cols), cols, c0 == 0,
                         c0 + block_cols >= cols};
    for (int64_t r = b0; r < b1;) {
      // The widest tile that fits (the block's last rows: 4, 2 or 1 at a time).
      int64_t nr = tile_rows;
      while (nr > b1 - r) nr /= 2;
      const uint8_t* rows = data + r * cols;
      __m512* tile_acc = acc_mem + (r - b0) * n_tokens;
      for (int64_t t = 0; t < n_tokens; t += group) {
        const int64_t nt = std::min(group, n_tokens - t);
        const TokenRows<kFma>* xt = xs + t * stride;
        float* yt = y + t * rows_total + r;
        switch (nr) {
          case 8:
            dot_tile<8, 1, kFma>(rows, cb, xt, stride, tile_acc, yt, rows_total, tb);  // 1 token
            break;
          case 4:
            dot_tile_tokens<4, kFma>(rows, cb, xt, stride, nt, tile_acc, yt, rows_total, tb);
            break;
          case 2:
            dot_tile_tokens<2, kFma>(rows, cb, xt, stride, nt, tile_acc, yt, rows_total, tb);
            break;
          default:
            dot_tile_tokens<1, kFma>(rows, cb, xt, stride, nt, tile_acc, yt, rows_total, tb);
            break;
        }
      }
      r += nr;
    }
  }
}

}  // namespace

bool cpu_supported() {
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
      __builtin_cpu_supports("avx512vbmi");
  return supported;
}

M2FP4_FP8DOT void matmul_rows(const Weight& w, const float* x, int64_t n_tokens, int64_t row_begin,
                              int64_t row_end, float* y) {
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  const int64_t cols = w.cols;
  if (cols == 0) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = row_begin; r < row_end; ++r) y[t * w.rows + r] = 0.0f;
    }
    return;
  }
  const int64_t stride = padded_columns(cols);
  uint16_t* xs = reinterpret_cast<uint16_t*>(
      thread_scratch(1, static_cast<size_t>((n_tokens * stride + 1) / 2)));
  const Tables tb = load_tables();
  // 2-8 tokens: f32 FMAs on widened activations (the FMA dot_step), with DAZ and FTZ set around the
  // dot products only (scale_activations must read subnormal x as they are).
  const bool fma = n_tokens >= 2 && n_tokens <= kMaxTokenGroup;
  // Scratch: the widened tokens, then a scale block's parked accumulators (64-byte aligned).
  float* xw = fma ? thread_scratch(3, static_cast<size_t>(n_tokens * stride + 16 * 128 * n_tokens))
                  : nullptr;
  __m512* acc_mem = fma ? reinterpret_cast<__m512*>(xw + n_tokens * stride) : nullptr;
  // One 128-row block of scales at a time: its scaled activations, then its rows.
  for (int64_t b0 = row_begin; b0 < row_end;) {
    const int64_t block = b0 / 128;
    const int64_t b1 = std::min(row_end, (block + 1) * 128);
    scale_activations(x, cols, n_tokens, w.block_scale + block * w.scale_cols, xs, stride);
    if (fma) {
      bf16_pair_fma::widen(xs, n_tokens * stride, xw);
      const bf16_pair_fma::ScopedSubnormalsAsZero subnormals_as_zero;
      block_rows<true>(data, w.rows, cols, b0, b1, xw, stride, n_tokens, acc_mem, y, tb);
    } else {
      block_rows<false>(data, w.rows, cols, b0, b1, xs, stride, n_tokens, nullptr, y, tb);
    }
    b0 = b1;
  }
}

#else  // !M2FP4_FP8DOT_X86

bool cpu_supported() {
  return false;
}

void matmul_rows(const Weight&, const float*, int64_t, int64_t, int64_t, float*) {
  fail("fp8dot::matmul_rows: not built for this CPU");
}

#endif

}  // namespace fp8dot

}  // namespace m2fp4
