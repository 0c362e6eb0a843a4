// Per-target (Highway) f32 GEMM tiles of the fast matmul (many tokens: prefill and busy experts
// of the F32, F16, FP8 and 4-bit weights; BF16 has its own, gemm_bf16-inl.cc): the input is
// transposed once so tokens lie along the vector lanes, R rows are decoded into an f32 tile, and
// a register-blocked kernel broadcasts one weight and updates R x TV token vectors per column.
// Weights are decoded once per block of 64 tokens. Included by matmul-inl.cc once per SIMD
// target; not compiled on its own.

#if defined(M2FP4_KERNELS_CPU_MATMUL_GEMM_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL_GEMM_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL_GEMM_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL_GEMM_INL_CC_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "hwy/highway.h"
#include "kernels/cpu/matmul4-inl.cc"
#include "kernels/cpu/matmul_formats-inl.cc"
#include "kernels/cpu/scratch.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
