// Per-target (Highway) code of the fast matmul; included by matmul.cc once per SIMD target via
// foreach_target.h. Not compiled on its own (the CMake glob skips *-inl.cc).
//
// Numerics: every weight is decoded exactly to f32 (for FP8, e4m3 * block scale rounded once, as
// the scalar twin does) and multiplied/accumulated with f32 FMA; only the summation order
// differs from scalar::matmul.
//
// Two paths:
// - GEMV (few tokens): R weight rows at a time are decoded straight from memory into registers
//   and dotted with up to 4 tokens; each thread streams a disjoint slice of rows once per group of
//   4 tokens (the slice's rows stay in L1 between groups). This is the decode path and must run
//   at memory bandwidth.
// - GEMM (many tokens, prefill and busy experts): the input is transposed once so tokens lie along
//   the vector lanes, R rows are decoded into an f32 tile, and a register-blocked kernel
//   broadcasts one weight and updates R x TV token vectors per column. Weights are decoded once
//   per block of 64 tokens.
// BF16 weights take their own GEMM from 8-9 tokens (gemm_bf16-inl.cc: rows along the lanes,
// tokens broadcast, weights decoded once per call).
// The 4-bit formats (NVFP4, MXFP4, IQ4_NL x16) take both paths with the chunked decoder of
// matmul4-inl.cc, which yields columns in a permuted order: their GEMV input is permuted and their
// GEMM input packed in that same order, once per call on the calling thread.

#if defined(M2FP4_KERNELS_CPU_MATMUL_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL_INL_CC_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "base/thread_pool.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/gemm_bf16-inl.cc"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4-inl.cc"
#include "kernels/cpu/matmul4_int8-inl.cc"
#include "kernels/cpu/matmul4_int8_gemm-inl.cc"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/cpu/matmul_fp8dot.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/weight.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// x86 AVX2/SSE have 16 vector registers; AVX-512, NEON, SVE have 32.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr bool kManyRegisters = false;
#else
constexpr bool kManyRegisters = true;
#endif

// ---- Decoders: N consecutive weights of one row to f32 ----

struct FormatF32 {
  using Stored = float;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const float* p, VF) { return hn::LoadU(df, p); }
  static float at(const float* p) { return *p; }
};

struct FormatBF16 {
  using Stored = uint16_t;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const uint16_t* p, VF) {
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  }
  static float at(const uint16_t* p) { return bf16_to_f32(*p); }
};

struct FormatF16 {
  using Stored = uint16_t;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const uint16_t* p, VF) {
    const hn::Rebind<hwy::float16_t, DF> df16;
    return hn::PromoteTo(df, hn::LoadU(df16, reinterpret_cast<const hwy::float16_t*>(p)));
  }
  static float at(const uint16_t* p) { return f16_to_f32(*p); }
};

// 2^120: an e4m3 code's bits placed in an f32's sign/exponent/mantissa fields read as the code's
// value times 2^-120 (subnormal codes become f32 subnormals, also exact).
constexpr float kTwoTo120 = 1.329227995784916e36f;

// FP8 with the exponent bias fixed by one multiply. `mul` is block_scale * 2^120, which is exact
// and gives the same single rounding as e4m3 * block_scale when |block_scale| < 2^8; larger
// scales take FormatFp8TwoStep. NaN codes (0x7F, 0xFF) need a compare and blend; the GEMV path
// first checks 4 vectors of codes at once with any_nan() and, when there are none (always, in
// a sound checkpoint), decodes them with load_finite().
struct FormatFp8 {
  using Stored = uint8_t;
  static constexpr bool kScaled = true;
  static constexpr bool kHasNanCodes = true;
  static hn::Vec<hn::RebindToSigned<DF>> bits(DF df, const uint8_t* p) {
    const hn::Rebind<int8_t, DF> di8;
    const hn::RebindToSigned<DF> di32;
    (void)df;
    // Sign-extended code << 20 puts the sign in bit 31 and E4M3 in bits 20..26.
    const auto code = hn::PromoteTo(di32, hn::LoadU(di8, reinterpret_cast<const int8_t*>(p)));
    return hn::And(hn::ShiftLeft<20>(code), hn::Set(di32, int32_t(0x87F00000u)));
  }
  static VF load_finite(DF df, const uint8_t* p, VF mul) {
    return hn::Mul(hn::BitCast(df, bits(df, p)), mul);
  }
  static VF load(DF df, const uint8_t* p, VF mul) {
    const hn::RebindToSigned<DF> di32;
    const auto b = bits(df, p);
    const auto magnitude = hn::Set(di32, 0x07F00000);
    const auto is_nan = hn::Eq(hn::And(b, magnitude), magnitude);
    return hn::IfThenElse(hn::RebindMask(df, is_nan),
                          hn::Set(df, std::numeric_limits<float>::quiet_NaN()),
                          hn::Mul(hn::BitCast(df, b), mul));
  }
  // Whether any of the 4 * Lanes(DF) codes at p is a NaN code.
  static bool any_nan(DF df, const uint8_t* p) {
    const hn::ScalableTag<uint8_t> du8;  // 4x the f32 lanes (1 on HWY_SCALAR: loop below)
    const size_t n = 4 * hn::Lanes(df);
    if (hn::Lanes(du8) == n) {
      const auto v = hn::And(hn::LoadU(du8, p), hn::Set(du8, uint8_t{0x7F}));
      return !hn::AllFalse(du8, hn::Eq(v, hn::Set(du8, uint8_t{0x7F})));
    }
    for (size_t i = 0; i < n; ++i) {
      if ((p[i] & 0x7F) == 0x7F) return true;
    }
    return false;
  }
  static float at(const uint8_t* p) { return e4m3_to_f32(*p); }
};

struct FormatFp8TwoStep {
  using Stored = uint8_t;
  static constexpr bool kScaled = true;
  static constexpr bool kHasNanCodes = true;
  static VF load(DF df, const uint8_t* p, VF scale) {
    return hn::Mul(FormatFp8::load(df, p, hn::Set(df, kTwoTo120)), scale);
  }
  static VF load_finite(DF df, const uint8_t* p, VF scale) {
    return hn::Mul(FormatFp8::load_finite(df, p, hn::Set(df, kTwoTo120)), scale);
  }
  static bool any_nan(DF df, const uint8_t* p) { return FormatFp8::any_nan(df, p); }
  static float at(const uint8_t* p) { return e4m3_to_f32(*p); }
};

// Per-row view of a weight with the block scale (1 for unscaled formats) of a column segment.
template <class Format>
struct RowSource {
  const typename Format::Stored* base;
  int64_t cols;
  const float* block_scale;
  int64_t scale_cols;

  const typename Format::Stored* row(int64_t r) const { return base + r * cols; }
  float scale(int64_t r, int64_t c) const {
    return Format::kScaled ? block_scale[(r / 128) * scale_cols + c / 128] : 1.0f;
  }
  // Multiplier vector handed to Format::load for the segment containing column c.
  VF multiplier(DF df, int64_t r, int64_t c) const {
    if constexpr (std::is_same_v<Format, FormatFp8>) return hn::Set(df, scale(r, c) * kTwoTo120);
    return hn::Set(df, scale(r, c));
  }
};

// Column segments share one block scale: 128 columns for FP8, the whole row otherwise.
template <class Format>
int64_t segment_length(int64_t cols) {
  return Format::kScaled ? 128 : std::max<int64_t>(cols, 1);
}

// ---- GEMV path ----

// Format::load_finite exists only for formats with NaN codes. It is named in a function template
// (not in a discarded branch of the generic lambda below) because clang checks such a branch's
// non-dependent names when the enclosing function is instantiated.
template <class Format, bool kFinite>
HWY_INLINE VF load_weights(DF df, const typename Format::Stored* p, VF mul) {
  if constexpr (kFinite) {
    return Format::load_finite(df, p, mul);
  } else {
    return Format::load(df, p, mul);
  }
}

// Elements ahead of the current column that each row stream prefetches (512 bytes): the
// hardware prefetcher stops at 4 KiB boundaries and follows few streams, while decode runs R row
// streams through many small matrices back to back.
template <class Format>
constexpr int64_t kPrefetchElements = 512 / sizeof(typename Format::Stored);

// y[t, r0 + r] for r < R, t < TB: rows decoded once and dotted with TB tokens.
template <class Format, int R, int TB>
HWY_NOINLINE void gemv_tile(const RowSource<Format>& src, int64_t r0, const float* x,
                            int64_t n_rows_total, float* y) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = src.cols;
  const typename Format::Stored* rows[R];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) rows[r] = src.row(r0 + r);
  VF acc[R][TB];
  float tail[R][TB];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      acc[r][t] = hn::Zero(df);
      tail[r][t] = 0.0f;
    }
  }
  const int64_t seg = segment_length<Format>(cols);
  for (int64_t s0 = 0; s0 < cols; s0 += seg) {
    const int64_t s1 = std::min(cols, s0 + seg);
    VF mul[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) mul[r] = src.multiplier(df, r0 + r, s0);
    // One vector of columns for all R rows and TB tokens.
    auto step = [&](int64_t c, auto finite) {
      VF w[R];
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        w[r] = load_weights<Format, decltype(finite)::value>(df, rows[r] + c, mul[r]);
      }
      HWY_UNROLL(8)
      for (int t = 0; t < TB; ++t) {
        const VF xv = hn::LoadU(df, x + t * cols + c);
        HWY_UNROLL(8)
        for (int r = 0; r < R; ++r) acc[r][t] = hn::MulAdd(w[r], xv, acc[r][t]);
      }
    };
    // Each row stream prefetches kPrefetchBytes ahead once per 64-byte line (see below).
    auto prefetch = [&](int64_t col) {
      if (col + kPrefetchElements<Format> < cols) {
        HWY_UNROLL(8)
        for (int r = 0; r < R; ++r) hwy::Prefetch(rows[r] + col + kPrefetchElements<Format>);
      }
    };
    int64_t c = s0;
    if constexpr (Format::kHasNanCodes) {
      for (; c + 4 * n <= s1; c += 4 * n) {
        prefetch(c);
        bool finite = true;
        HWY_UNROLL(8)
        for (int r = 0; r < R; ++r) finite &= !Format::any_nan(df, rows[r] + c);
        HWY_UNROLL(4)
        for (int64_t u = 0; u < 4; ++u) {
          if (finite) {
            step(c + u * n, std::true_type());
          } else {
            step(c + u * n, std::false_type());
          }
        }
      }
    }
    // One prefetch per row per 64 bytes of codes (AVX-512: 2 vectors of bf16, 4 of f32).
    constexpr int64_t kStepsPerLine =
        std::max<int64_t>(1, 64 / (sizeof(typename Format::Stored) * hn::MaxLanes(DF())));
    for (; c + kStepsPerLine * n <= s1; c += kStepsPerLine * n) {
      prefetch(c);
      HWY_UNROLL(4)
      for (int64_t u = 0; u < kStepsPerLine; ++u) step(c + u * n, std::false_type());
    }
    for (; c + n <= s1; c += n) step(c, std::false_type());
    for (; c < s1; ++c) {
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        const float w = Format::at(rows[r] + c) * src.scale(r0 + r, c);
        HWY_UNROLL(8)
        for (int t = 0; t < TB; ++t) tail[r][t] += w * x[t * cols + c];
      }
    }
  }
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      y[t * n_rows_total + r0 + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t])) + tail[r][t];
    }
  }
}

// Tokens [t0, t0 + TB) on rows [r0, r0 + R).
template <class Format, int R>
void gemv_tile_tokens(const RowSource<Format>& src, int64_t r0, const float* x, int64_t t0,
                      int64_t nt, int64_t n_rows_total, float* y) {
  const float* xt = x + t0 * src.cols;
  float* yt = y + t0 * n_rows_total;
  switch (nt) {
    case 1:
      return gemv_tile<Format, R, 1>(src, r0, xt, n_rows_total, yt);
    case 2:
      return gemv_tile<Format, R, 2>(src, r0, xt, n_rows_total, yt);
    case 3:
      return gemv_tile<Format, R, 3>(src, r0, xt, n_rows_total, yt);
    default:
      return gemv_tile<Format, R, 4>(src, r0, xt, n_rows_total, yt);
  }
}

// Rows [row_begin, row_end) for all tokens: each tile of R rows is read from memory once and
// reused from L1/L2 for every group of up to 4 tokens.
template <class Format, int R>
void gemv_rows_tiled(const RowSource<Format>& src, int64_t row_begin, int64_t row_end,
                     const float* x, int64_t n_tokens, int64_t n_rows_total, float* y) {
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
      gemv_tile_tokens<Format, R>(src, r, x, t0, std::min<int64_t>(4, n_tokens - t0), n_rows_total,
                                  y);
    }
  }
  for (; r < row_end; ++r) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
      gemv_tile_tokens<Format, 1>(src, r, x, t0, std::min<int64_t>(4, n_tokens - t0), n_rows_total,
                                  y);
    }
  }
}

// 4 rows keep enough multiply-adds in flight for one token; with 16 registers and 3-4 tokens
// per tile, 2 rows avoid spilling the 4 x 4 accumulators.
template <class Format>
void gemv_rows(const RowSource<Format>& src, int64_t row_begin, int64_t row_end, const float* x,
               int64_t n_tokens, int64_t n_rows_total, float* y) {
  if (kManyRegisters || n_tokens <= 2) {
    gemv_rows_tiled<Format, 4>(src, row_begin, row_end, x, n_tokens, n_rows_total, y);
  } else {
    gemv_rows_tiled<Format, 2>(src, row_begin, row_end, x, n_tokens, n_rows_total, y);
  }
}

// ---- GEMM path ----

constexpr int kGemmRows = kManyRegisters ? 6 : 4;          // R: weight rows per register tile
constexpr int kGemmTokenVectors = kManyRegisters ? 4 : 2;  // TV: token vectors per tile
// Columns per pass: the packed input chunk (kGemmCols x 64 tokens, 64 KiB) stays in L2 and the
// decoded weight tile (R x kGemmCols) in L1. A multiple of 128, so FP8 scale blocks align.
constexpr int64_t kGemmCols = 256;
// The 4-bit tile decoder takes column chunks that start on its 8-lane chunks (<= 256 columns).
static_assert(kGemmCols <= four_bit::kMaxTileColumns, "4-bit decode_tile buffer too small");

// Tokens per block: a multiple of the lanes, about 64.
int64_t gemm_block_tokens(int64_t lanes) {
  const int64_t per_tile = lanes * kGemmTokenVectors;
  return std::max<int64_t>(per_tile, 64 / per_tile * per_tile);
}

// Decodes columns [c0, c1) of rows [r0, r0 + nr) into out (kGemmRows x (c1 - c0)); rows past
// nr are zero.
template <class Format>
void decode_tile(const RowSource<Format>& src, int64_t r0, int64_t nr, int64_t c0, int64_t c1,
                 float* out) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t width = c1 - c0;
  const int64_t seg = segment_length<Format>(src.cols);
  for (int64_t r = 0; r < nr; ++r) {
    const typename Format::Stored* row = src.row(r0 + r);
    float* o = out + r * width - c0;
    for (int64_t s0 = c0; s0 < c1; s0 += seg) {
      const int64_t s1 = std::min(c1, s0 + seg);
      const VF mul = src.multiplier(df, r0 + r, s0);
      int64_t c = s0;
      for (; c + n <= s1; c += n) hn::StoreU(Format::load(df, row + c, mul), df, o + c);
      const float scale = src.scale(r0 + r, s0);
      for (; c < s1; ++c) o[c] = Format::at(row + c) * scale;
    }
  }
  if (nr < kGemmRows) std::memset(out + nr * width, 0, (kGemmRows - nr) * width * sizeof(float));
}

// acc[r][j * N + lane] (+)= sum_c wtile[r][c] * xt[c][j * N + lane] for TV token vectors: one
// broadcast weight updates TV vectors of tokens. Continuing from the stored partial sums keeps
// the summation sequential over columns, as in the scalar twin.
template <int TV>
HWY_NOINLINE void gemm_tile(const float* HWY_RESTRICT wtile, int64_t width,
                            const float* HWY_RESTRICT xt, int64_t xt_stride,
                            float* HWY_RESTRICT yacc, int64_t yacc_stride, bool first) {
  constexpr int R = kGemmRows;
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  VF acc[R][TV];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int j = 0; j < TV; ++j) {
      acc[r][j] = first ? hn::Zero(df) : hn::Load(df, yacc + r * yacc_stride + j * n);
    }
  }
  for (int64_t c = 0; c < width; ++c) {
    VF xv[TV];
    HWY_UNROLL(8)
    for (int j = 0; j < TV; ++j) xv[j] = hn::Load(df, xt + c * xt_stride + j * n);
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      const VF w = hn::Set(df, wtile[r * width + c]);
      HWY_UNROLL(8)
      for (int j = 0; j < TV; ++j) acc[r][j] = hn::MulAdd(w, xv[j], acc[r][j]);
    }
  }
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int j = 0; j < TV; ++j) hn::Store(acc[r][j], df, yacc + r * yacc_stride + j * n);
  }
}

void gemm_tile_dispatch(int64_t tv, const float* wtile, int64_t width, const float* xt,
                        int64_t xt_stride, float* yacc, int64_t yacc_stride, bool first) {
  if (tv == 1) return gemm_tile<1>(wtile, width, xt, xt_stride, yacc, yacc_stride, first);
  if constexpr (kGemmTokenVectors == 2) {
    return gemm_tile<2>(wtile, width, xt, xt_stride, yacc, yacc_stride, first);
  } else {
    if (tv == 2) return gemm_tile<2>(wtile, width, xt, xt_stride, yacc, yacc_stride, first);
    if (tv == 3) return gemm_tile<3>(wtile, width, xt, xt_stride, yacc, yacc_stride, first);
    return gemm_tile<4>(wtile, width, xt, xt_stride, yacc, yacc_stride, first);
  }
}

// Packs tokens [t0, t0 + nt) of x into xt[p][t - t0] with `stride` floats per position p
// (padding tokens are zero). Position p holds column p, or for the 4-bit formats
// four_bit::permuted_column(p) (chunk > 0).
void pack_tokens(const float* x, int64_t cols, int64_t t0, int64_t nt, int64_t stride,
                 int64_t chunk, int64_t full, float* xt) {
  // 128 positions at a time (whole 4-bit chunks, whose columns stay inside them): each token's
  // 128 columns are read as 8 whole lines, not one column across tokens a row stride apart.
  constexpr int64_t kPositions = 128;
  for (int64_t p0 = 0; p0 < cols; p0 += kPositions) {
    const int64_t p1 = std::min(cols, p0 + kPositions);
    int64_t column[kPositions];  // the permutation's divisions once per position, not per token
    for (int64_t p = p0; p < p1; ++p) {
      column[p - p0] = chunk > 0 ? four_bit::permuted_column(p, chunk, full) : p;
    }
    for (int64_t t = 0; t < nt; ++t) {
      const float* xrow = x + (t0 + t) * cols;
      for (int64_t p = p0; p < p1; ++p) xt[p * stride + t] = xrow[column[p - p0]];
    }
    for (int64_t p = p0; p < p1; ++p) {
      for (int64_t t = nt; t < stride; ++t) xt[p * stride + t] = 0.0f;
    }
  }
}

// Rows per panel: the panel's partial sums (384 x 64 tokens, 96 KiB) stay in L2 while the column
// chunks sweep past. A multiple of every kGemmRows.
constexpr int64_t kGemmPanelRows = 384;

// Rows [row_begin, row_end) for all tokens: per block of tokens, per panel of rows, per column
// chunk, per group of R rows: decode the R x chunk weight tile once, then run it against every
// token vector of the block. decode(r0, nr, c0, c1, out) writes the kGemmRows x (c1 - c0) tile
// (rows past nr zero) in the column order the packed input uses.
template <class DecodeTile>
void gemm_rows(const DecodeTile& decode, int64_t cols, int64_t row_begin, int64_t row_end,
               const float* xt_all, int64_t n_tokens, int64_t block_tokens, int64_t n_rows_total,
               float* y) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t yacc_floats = kGemmPanelRows * block_tokens;
  float* yacc = thread_scratch(1, yacc_floats + kGemmRows * kGemmCols);
  float* wtile = yacc + yacc_floats;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
    const int64_t nt = std::min(block_tokens, n_tokens - t0);
    const int64_t n_vectors = (nt + n - 1) / n;
    const float* xt = xt_all + (t0 / block_tokens) * cols * block_tokens;
    for (int64_t p0 = row_begin; p0 < row_end; p0 += kGemmPanelRows) {
      const int64_t p1 = std::min(row_end, p0 + kGemmPanelRows);
      for (int64_t c0 = 0; c0 < cols; c0 += kGemmCols) {
        const int64_t c1 = std::min(cols, c0 + kGemmCols);
        for (int64_t r0 = p0; r0 < p1; r0 += kGemmRows) {
          decode(r0, std::min<int64_t>(kGemmRows, p1 - r0), c0, c1, wtile);
          float* ygroup = yacc + (r0 - p0) * block_tokens;
          for (int64_t j = 0; j < n_vectors; j += kGemmTokenVectors) {
            gemm_tile_dispatch(std::min<int64_t>(kGemmTokenVectors, n_vectors - j), wtile, c1 - c0,
                               xt + c0 * block_tokens + j * n, block_tokens, ygroup + j * n,
                               block_tokens, c0 == 0);
          }
        }
      }
      // Copy out 16 rows (one 64-byte line of each token's output) at a time: one row across
      // all tokens would store with a stride of n_rows_total floats, often 4 KiB, so every
      // store lands in the same L1 set (measured: this loop cost half as much as the tiles).
      for (int64_t rb = p0; rb < p1; rb += 16) {
        const int64_t re = std::min<int64_t>(p1, rb + 16);
        for (int64_t t = 0; t < nt; ++t) {
          float* yt = y + (t0 + t) * n_rows_total;
          const float* ya = yacc + t;
          for (int64_t r = rb; r < re; ++r) yt[r] = ya[(r - p0) * block_tokens];
        }
      }
    }
  }
}

// ---- Driver ----

// GEMM pays off once a register tile holds at least two full token vectors: with one, the
// broadcast loads outnumber the multiply-adds and the GEMV path (4 tokens per pass over rows
// cached in L1) is as fast (measured with BM_MatmulTokenSweep).
bool use_gemm(int64_t n_tokens) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  return n_tokens >= std::max<int64_t>(8, 2 * n);
}

bool fp8_scales_small(const Weight& w) {
  const int64_t n = ((w.rows + 127) / 128) * w.scale_cols;
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::abs(w.block_scale[i]) < 256.0f)) return false;
  }
  return true;
}

// How one job runs on a range of its rows.
struct JobPlan {
  const MatmulJob* job;
  bool gemm;
  bool four_bit;       // chunked 4-bit decoder (four_bit::Source)
  const float* xt;     // GEMM: packed input blocks
  const float* xp;     // 4-bit GEMV: the input in four_bit's permuted column order
  const uint8_t* xq;   // 4-bit GEMV with int8 activations: the input quantized (matmul4_int8.h)
  const uint16_t* xb;  // BF16 GEMV with bf16 activations: the input rounded (matmul_bf16dot.h)
  bool bf16_packed;    // BF16 GEMM with bf16 activations: the packed input rounded
  const float* xr;     // BF16 f32 GEMV with bf16 activations: the input rounded; BF16 GEMM:
                       // the input packed in token tiles (gemm_bf16-inl.cc); else nullptr
  int64_t block_tokens;
  int64_t unit;  // rows per scheduling unit (a register tile)
  int64_t n_units;
  double unit_cost;
  void (*run)(const JobPlan&, int64_t row_begin, int64_t row_end);
};

template <class Format>
void run_rows(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const RowSource<Format> src{static_cast<const typename Format::Stored*>(w.data), w.cols,
                              w.block_scale, w.scale_cols};
  if (plan.gemm) {
    auto decode = [&](int64_t r0, int64_t nr, int64_t c0, int64_t c1, float* out) {
      decode_tile(src, r0, nr, c0, c1, out);
    };
    gemm_rows(decode, w.cols, row_begin, row_end, plan.xt, plan.job->n_tokens, plan.block_tokens,
              w.rows, plan.job->y);
  } else {
    gemv_rows<Format>(src, row_begin, row_end, plan.xr != nullptr ? plan.xr : plan.job->x,
                      plan.job->n_tokens, w.rows, plan.job->y);
  }
}

bool is_four_bit(const Weight& w) {
  return w.format == WeightFormat::kNvfp4 || w.format == WeightFormat::kMxfp4 ||
         w.format == WeightFormat::kIq4nl16;
}

// The 4-bit formats with the chunked decoder (matmul4-inl.cc): GEMV on the permuted input, or
// GEMM on decoded tiles against the input packed in the same permuted order.
void run_rows_four_bit(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const four_bit::Source src = four_bit::make_source(w);
  if (plan.gemm) {
    auto decode = [&](int64_t r0, int64_t nr, int64_t c0, int64_t c1, float* out) {
      four_bit::decode_tile(src, r0, nr, kGemmRows, c0, c1, out);
    };
    gemm_rows(decode, w.cols, row_begin, row_end, plan.xt, plan.job->n_tokens, plan.block_tokens,
              w.rows, plan.job->y);
  } else {
    four_bit::gemv_rows(src, row_begin, row_end, plan.xp, plan.job->n_tokens, w.rows, plan.job->y);
  }
}

// The 4-bit GEMV / GEMM with activations rounded to int8 (matmul4_int8*-inl.cc).
void run_rows_four_bit_int8(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  four_bit_int8::matmul_rows(*plan.job->w, plan.job->x, plan.xq, plan.job->n_tokens, row_begin,
                             row_end, plan.job->y);
}

// BF16 weights with activations rounded to bf16 (matmul_bf16dot.h) on the AVX-512 targets of CPUs
// with AVX512_BF16: the GEMV (few tokens) takes the vdpbf16ps kernel; the GEMM keeps its f32
// tiles on the packed activations rounded to bf16 (the same exact products: vdpbf16ps measured
// about half the f32 FMA's multiply-adds per second on this Xeon host, so it loses there).
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kTargetHasBf16Dot = true;
#else
constexpr bool kTargetHasBf16Dot = false;
#endif

// Token counts up to which the vdpbf16ps GEMV beats the f32 GEMV on bf16-rounded activations
// (measured with BM_MatmulTokenSweep, BF16 4096 x 4096, 2 threads: 1.3-1.9x at 1-6 tokens, even
// at 8, slower from 12 where the multiply-adds, not the weight stream, bound it).
constexpr int64_t kMaxBf16DotTokens = 8;

bool use_bf16_activations(const Weight& w) {
  return kTargetHasBf16Dot && w.format == WeightFormat::kBF16 &&
         bf16_activations() == Bf16Activations::kBf16 && bf16dot::cpu_supported();
}

void run_rows_bf16_dot(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  bf16dot::matmul_rows(*plan.job->w, plan.xb, plan.job->n_tokens, row_begin, row_end, plan.job->y);
}

// BF16 weights from this many tokens take the rows-along-lanes GEMM (gemm_bf16-inl.cc); fewer
// take the GEMV kernels. With bf16 activations the vdpbf16ps GEMV keeps up to kMaxBf16DotTokens.
constexpr int64_t kMinBf16GemmTokens = 8;

bool use_bf16_gemm(const Weight& w, int64_t n_tokens) {
  if (w.format != WeightFormat::kBF16) return false;
  return n_tokens >= (use_bf16_activations(w) ? kMaxBf16DotTokens + 1 : kMinBf16GemmTokens);
}

// On the input packed in token tiles (plan.xr, rounded to bf16 with bf16 activations).
void run_rows_bf16_gemm(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  bf16_gemm::gemm_rows(static_cast<const uint16_t*>(w.data), w.cols, row_begin, row_end, plan.xr,
                       plan.job->n_tokens, w.rows, plan.job->y);
}

// FP8 weights with activations rounded to bf16 (matmul_fp8dot.h), same targets and CPUs: the GEMV
// (fewer tokens than the GEMM threshold) takes the vdpbf16ps kernel, which reads x itself (each
// thread scales and rounds it once per 128-row block); the GEMM keeps its f32 tiles.
bool use_fp8_dot(const Weight& w) {
  return kTargetHasBf16Dot && w.format == WeightFormat::kFp8Block128 &&
         bf16_activations() == Bf16Activations::kBf16 && fp8dot::cpu_supported();
}

void run_rows_fp8_dot(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  fp8dot::matmul_rows(*plan.job->w, plan.job->x, plan.job->n_tokens, row_begin, row_end,
                      plan.job->y);
}

// 4-bit weights the chunked decoder does not handle (group sizes that are not a multiple of 8
// lining up with the chunks): each row is decoded once into an f32 buffer, then dotted with
// every token.
void run_rows_decoded(const JobPlan& plan, int64_t row_begin, int64_t row_end) {
  const Weight& w = *plan.job->w;
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = w.cols;
  float* row = thread_scratch(1, static_cast<size_t>(cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    decode_weight_row(w, r, row);
    for (int64_t t = 0; t < plan.job->n_tokens; ++t) {
      const float* xt = plan.job->x + t * cols;
      VF acc0 = hn::Zero(df), acc1 = hn::Zero(df);
      int64_t c = 0;
      for (; c + 2 * N <= cols; c += 2 * N) {
        acc0 = hn::MulAdd(hn::LoadU(df, row + c), hn::LoadU(df, xt + c), acc0);
        acc1 = hn::MulAdd(hn::LoadU(df, row + c + N), hn::LoadU(df, xt + c + N), acc1);
      }
      float acc = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
      for (; c < cols; ++c) acc += row[c] * xt[c];
      plan.job->y[t * w.rows + r] = acc;
    }
  }
}

auto* runner_for(const Weight& w) {
  switch (w.format) {
    case WeightFormat::kF32:
      return &run_rows<FormatF32>;
    case WeightFormat::kBF16:
      return &run_rows<FormatBF16>;
    case WeightFormat::kF16:
      return &run_rows<FormatF16>;
    case WeightFormat::kFp8Block128:
      return fp8_scales_small(w) ? &run_rows<FormatFp8> : &run_rows<FormatFp8TwoStep>;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16:
      return four_bit::supported(w) ? &run_rows_four_bit : &run_rows_decoded;
  }
  return &run_rows<FormatF32>;
}

// One input of int8 4-bit jobs to quantize (int8_gemv::quantize).
struct Int8QuantizeTask {
  const Weight* w;
  const float* x;
  int64_t n_tokens;
  uint8_t* out;
};

// From this many tokens in all (prefill) the quantizations are split by tokens over the pool's
// threads: on the calling thread alone they took ~8% of a 4-bit pp512 run while the others
// waited (the inputs are other ops' fresh outputs, partly in the other cores' caches).
constexpr int64_t kMinParallelQuantizeTokens = 64;

void run_int8_quantize_tasks(const std::vector<Int8QuantizeTask>& tasks, int64_t n_tokens,
                             ThreadPool& pool) {
  auto quantize_part = [&](int64_t k, int64_t parts) {
    for (const Int8QuantizeTask& q : tasks) {
      const int64_t t0 = q.n_tokens * k / parts, t1 = q.n_tokens * (k + 1) / parts;
      const int64_t token_bytes = int8_gemv::activation_bytes(q.w->cols, 1);
      if (t0 < t1)
        int8_gemv::quantize(*q.w, q.x + t0 * q.w->cols, t1 - t0, q.out + t0 * token_bytes);
    }
  };
  if (n_tokens < kMinParallelQuantizeTokens || pool.size() == 1) {
    quantize_part(0, 1);
  } else {
    pool.run(pool.size(), [&](int64_t k, int) { quantize_part(k, pool.size()); });
  }
}

// Below this much work (~bytes streamed) a job list runs on the calling thread alone: waking a
// worker costs about a microsecond, in which ~64 KiB stream.
constexpr double kMinParallelCost = 64 << 10;

// An input of BF16 GEMM jobs to pack (bf16_gemm::pack_tokens).
struct Bf16PackTask {
  const float* x;
  int64_t cols, n_tokens;
  bool round;
  float* out;
};

// Packs on all threads, each a share of every input's token tiles, from this many floats (the
// calling thread alone would leave the others waiting: ~6% of a BF16 prefill's samples).
constexpr int64_t kMinParallelPackFloats = 64 << 10;

void run_bf16_pack_tasks(const std::vector<Bf16PackTask>& tasks, int64_t floats, ThreadPool& pool) {
  auto pack_part = [&](int64_t k, int64_t parts) {
    for (const Bf16PackTask& t : tasks) {
      bf16_gemm::pack_tokens(t.x, t.cols, t.n_tokens, t.round, t.out, k, parts);
    }
  };
  if (floats < kMinParallelPackFloats || pool.size() == 1) {
    pack_part(0, 1);
  } else {
    pool.run(pool.size(), [&](int64_t k, int) { pack_part(k, pool.size()); });
  }
}

// Entry point for this target; jobs already validated, none empty.
void MatmulBatchImpl(const MatmulJob* jobs, int64_t n_jobs, ThreadPool& pool) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t block_tokens = gemm_block_tokens(lanes);
  // Reused across calls (no allocation per call). Named through a reference: lambdas run on the
  // workers would otherwise see their own thread's instance.
  thread_local std::vector<JobPlan> caller_plans;
  std::vector<JobPlan>& plans = caller_plans;
  plans.resize(n_jobs);
  int64_t scratch_floats = 0;
  double total_cost = 0;
  for (int64_t i = 0; i < n_jobs; ++i) {
    const Weight& w = *jobs[i].w;
    const int64_t n_tokens = jobs[i].n_tokens;
    JobPlan& p = plans[i];
    p.job = &jobs[i];
    p.run = runner_for(w);
    p.four_bit = p.run == &run_rows_four_bit;
    // int8 activations take every token count (GEMV and prefill GEMM alike), so a token's
    // result does not depend on how many tokens share the call.
    const bool int8 = p.four_bit && four_bit_int8::use_for(w);
    p.gemm = !int8 && use_gemm(n_tokens) && (!is_four_bit(w) || p.four_bit);
    if (int8) p.run = &run_rows_four_bit_int8;
    const bool bf16_rounded = use_bf16_activations(w);
    const bool bf16_dot = bf16_rounded && !p.gemm && n_tokens <= kMaxBf16DotTokens;
    if (bf16_dot) p.run = &run_rows_bf16_dot;
    if (!p.gemm && use_fp8_dot(w) && fp8dot::takes(w.cols, n_tokens)) p.run = &run_rows_fp8_dot;
    const bool bf16_gemm_job = use_bf16_gemm(w, n_tokens);
    if (bf16_gemm_job) {
      p.run = &run_rows_bf16_gemm;
      p.gemm = false;
    }
    p.bf16_packed = bf16_rounded && p.gemm;
    p.xr = nullptr;
    const bool bf16_rounded_gemv = bf16_rounded && !p.gemm && !bf16_dot && !bf16_gemm_job;
    p.block_tokens = block_tokens;
    p.unit = bf16_gemm_job ? bf16_gemm::panel_rows() : p.gemm ? kGemmRows : 4;
    p.n_units = (w.rows + p.unit - 1) / p.unit;
    // Bytes streamed plus the arithmetic in byte-equivalents (~8 multiply-adds per byte of
    // bandwidth on one core), so jobs of different formats and token counts balance. Decoding
    // 4-bit codes costs about as much again as streaming them.
    const double row_bytes = static_cast<double>(w.nbytes()) / static_cast<double>(w.rows) *
                             (is_four_bit(w) ? 2.0 : 1.0);
    p.unit_cost =
        static_cast<double>(p.unit) * (row_bytes + 0.125 * static_cast<double>(w.cols * n_tokens));
    total_cost += p.unit_cost * static_cast<double>(p.n_units);
    if (p.gemm) {
      scratch_floats += (n_tokens + block_tokens - 1) / block_tokens * w.cols * block_tokens;
    } else if (int8) {
      scratch_floats += (int8_gemv::activation_bytes(w.cols, n_tokens) + 63) / 64 * 16;
    } else if (bf16_dot) {
      scratch_floats += (bf16dot::padded_columns(w.cols) * n_tokens + 31) / 32 * 16;
    } else if (bf16_rounded_gemv || bf16_gemm_job) {
      scratch_floats += n_tokens * w.cols;
    } else if (p.four_bit) {
      scratch_floats += n_tokens * w.cols;
    }
  }
  // Pack the inputs of the GEMM jobs (tokens along the lanes), permute those of the 4-bit GEMV
  // jobs or quantize them to int8 (once per input shared by several jobs; see
  // run_int8_quantize_tasks), on the calling thread.
  float* xt = scratch_floats ? thread_scratch(0, scratch_floats) : nullptr;
  // The int8 quantizations, run after this loop (on all threads when there are many tokens).
  thread_local std::vector<Bf16PackTask> caller_pack_tasks;
  std::vector<Bf16PackTask>& pack_tasks = caller_pack_tasks;
  pack_tasks.clear();
  int64_t pack_floats = 0;
  thread_local std::vector<Int8QuantizeTask> caller_quantize_tasks;
  std::vector<Int8QuantizeTask>& quantize_tasks = caller_quantize_tasks;
  quantize_tasks.clear();
  int64_t quantize_tokens = 0;
  for (JobPlan& p : plans) {
    if (p.run == &run_rows_four_bit_int8) {
      const Weight& w = *p.job->w;
      const bool e2m1 = w.format != WeightFormat::kIq4nl16;  // the two code biases
      p.xq = nullptr;
      for (const JobPlan* q = plans.data(); q != &p && p.xq == nullptr; ++q) {
        if (q->run == &run_rows_four_bit_int8 && q->job->x == p.job->x &&
            q->job->n_tokens == p.job->n_tokens && q->job->w->cols == w.cols &&
            (q->job->w->format != WeightFormat::kIq4nl16) == e2m1) {
          p.xq = q->xq;
        }
      }
      if (p.xq == nullptr) {
        uint8_t* out = reinterpret_cast<uint8_t*>(xt);
        quantize_tasks.push_back({&w, p.job->x, p.job->n_tokens, out});
        quantize_tokens += p.job->n_tokens;
        p.xq = out;
        xt += (int8_gemv::activation_bytes(w.cols, p.job->n_tokens) + 63) / 64 * 16;
      }
      continue;
    }
    if (p.run == &run_rows_bf16_dot) {  // rounded once per input shared by several jobs
      const int64_t cols = p.job->w->cols, n_tokens = p.job->n_tokens;
      p.xb = nullptr;
      for (const JobPlan* q = plans.data(); q != &p && p.xb == nullptr; ++q) {
        if (q->run == &run_rows_bf16_dot && q->job->x == p.job->x && q->job->n_tokens == n_tokens &&
            q->job->w->cols == cols) {
          p.xb = q->xb;
        }
      }
      if (p.xb == nullptr) {
        uint16_t* out = reinterpret_cast<uint16_t*>(xt);
        bf16dot::round_activations(p.job->x, cols, n_tokens, out);
        p.xb = out;
        xt += (bf16dot::padded_columns(cols) * n_tokens + 31) / 32 * 16;
      }
      continue;
    }
    const int64_t cols = p.job->w->cols, n_tokens = p.job->n_tokens;
    if (p.run == &run_rows_bf16_gemm) {
      // Packed in token tiles (rounded to bf16 in that mode) once per input shared by jobs.
      for (const JobPlan* q = plans.data(); q != &p && p.xr == nullptr; ++q) {
        if (q->run == &run_rows_bf16_gemm && q->job->x == p.job->x &&
            q->job->n_tokens == n_tokens && q->job->w->cols == cols) {
          p.xr = q->xr;
        }
      }
      if (p.xr == nullptr) {
        pack_tasks.push_back({p.job->x, cols, n_tokens, use_bf16_activations(*p.job->w), xt});
        pack_floats += n_tokens * cols;
        p.xr = xt;
        xt += n_tokens * cols;
      }
      continue;
    }
    if (!p.gemm && use_bf16_activations(*p.job->w)) {  // the f32 GEMV on rounded activations
      for (int64_t i = 0; i < n_tokens * cols; ++i) xt[i] = round_to_bf16(p.job->x[i]);
      p.xr = xt;
      xt += n_tokens * cols;
      continue;
    }
    const int64_t chunk = p.four_bit ? 8 * lanes : 0;
    const int64_t full = p.four_bit ? cols / chunk * chunk : 0;
    if (p.gemm) {
      p.xt = xt;
      for (int64_t t0 = 0; t0 < n_tokens; t0 += block_tokens) {
        pack_tokens(p.job->x, cols, t0, std::min(block_tokens, n_tokens - t0), block_tokens, chunk,
                    full, xt);
        if (p.bf16_packed) {
          for (int64_t i = 0; i < cols * block_tokens; ++i) xt[i] = round_to_bf16(xt[i]);
        }
        xt += cols * block_tokens;
      }
    } else if (p.four_bit) {
      p.xp = xt;
      for (int64_t t = 0; t < n_tokens; ++t) {
        four_bit::permute_token(p.job->x + t * cols, cols, chunk, full, xt);
        xt += cols;
      }
    }
  }
  run_int8_quantize_tasks(quantize_tasks, quantize_tokens, pool);
  run_bf16_pack_tasks(pack_tasks, pack_floats, pool);
  // Thread k takes the units whose cumulative cost starts in [total * k / T, total * (k+1) / T):
  // contiguous rows, possibly spanning several jobs.
  const int n_threads = total_cost < kMinParallelCost ? 1 : pool.size();
  auto run_share = [&](int64_t k) {
    const double lo = total_cost * static_cast<double>(k) / n_threads;
    const double hi = total_cost * static_cast<double>(k + 1) / n_threads;
    double job_start = 0;
    for (const JobPlan& p : plans) {
      const double job_cost = p.unit_cost * static_cast<double>(p.n_units);
      const double job_end = job_start + job_cost;
      if (job_end > lo && job_start < hi) {
        // Units u with job_start + u * unit_cost in [lo, hi).
        auto first_unit_at = [&](double c) {
          if (c <= job_start) return int64_t{0};
          return std::min(p.n_units,
                          static_cast<int64_t>(std::ceil((c - job_start) / p.unit_cost)));
        };
        const int64_t u0 = first_unit_at(lo);
        const int64_t u1 = k + 1 == n_threads ? p.n_units : first_unit_at(hi);
        const int64_t rows = p.job->w->rows;
        if (u0 < u1) p.run(p, u0 * p.unit, std::min(rows, u1 * p.unit));
      }
      job_start = job_end;
    }
  };
  if (n_threads == 1) {
    run_share(0);
  } else {
    pool.run(n_threads, [&](int64_t k, int) { run_share(k); });
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
