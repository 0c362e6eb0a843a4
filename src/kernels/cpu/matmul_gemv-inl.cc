// Per-target (Highway) f32 GEMV tiles of the fast matmul (few tokens: the decode path, which must
// run at memory bandwidth): R weight rows at a time are decoded straight from memory into
// registers (matmul_formats-inl.cc) and dotted with up to 4 tokens; each thread streams a
// disjoint slice of rows once per group of 4 tokens (the slice's rows stay in L1 between
// groups). Included by matmul-inl.cc once per SIMD target; not compiled on its own.

#if defined(M2FP4_KERNELS_CPU_MATMUL_GEMV_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL_GEMV_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL_GEMV_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL_GEMV_INL_CC_
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/matmul_formats-inl.cc"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
