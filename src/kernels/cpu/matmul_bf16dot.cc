// AVX512_BF16 kernel of the bf16-activation BF16 matmul (matmul_bf16dot.h), in functions with
// their own target attributes (Debian's Highway has no bf16 dot product), run only after
// cpu_supported() said yes; plus the process-wide Bf16Activations setting and the scalar twin.
//
// vdpbf16ps multiplies 32 bf16 pairs and adds each 32-bit lane's two products to an f32
// accumulator. A BF16 weight row is already pairs of consecutive columns, and so is a rounded
// activation row, so both load as they are: lane j of the step at column c holds columns c + 2j
// and c + 2j + 1 of one row and one token. A tile is R rows x TB tokens of accumulators; every
// weight vector loaded feeds TB dot products and every activation vector R. Tokens go in blocks
// of kTokenBlock (their rounded rows, up to 64 x cols x 2 bytes, stay in L2) and, within a
// block, each R-row tile (R x cols x 2 bytes, in L1) runs against all the block's tokens.
//
// 2-8 tokens (a batched decode step) take f32 FMAs instead, with vdpbf16ps's bits
// (bf16_pair_fma.h): twice its multiply-adds per cycle here once a weight vector feeds several
// tokens, and a token gets the same result alone (one token: vdpbf16ps) as in a batch.
#include "kernels/cpu/matmul_bf16dot.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "hwy/base.h"  // HWY_UNROLL
#include "kernels/cpu/scratch.h"
#include "numerics/bf16.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "kernels/cpu/bf16_pair_fma.h"
#define M2FP4_BF16DOT_X86 1
#define M2FP4_BF16DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace m2fp4 {

namespace {
Bf16Activations initial_bf16_activations() {
  const char* env = std::getenv("M2FP4_BF16_ACTIVATIONS");
  if (env == nullptr || *env == '\0') return Bf16Activations::kBf16;
  return parse_bf16_activations(env);
}

std::atomic<Bf16Activations>& bf16_activations_setting() {
  static std::atomic<Bf16Activations> setting{initial_bf16_activations()};
  return setting;
}

// A bf16 value as vdpbf16ps reads it: subnormals as zero of the same sign.
float bf16_daz(uint16_t bits) {
  return (bits & 0x7F80u) == 0 ? bf16_to_f32(bits & 0x8000u) : bf16_to_f32(bits);
}
}  // namespace

Bf16Activations parse_bf16_activations(const char* name) {
  if (std::strcmp(name, "f32") == 0) return Bf16Activations::kF32;
  if (std::strcmp(name, "bf16") == 0) return Bf16Activations::kBf16;
  fail("BF16 activations: expected f32 or bf16, got '", name, "'");
}

void set_bf16_activations(Bf16Activations mode) {
  bf16_activations_setting().store(mode, std::memory_order_relaxed);
}

Bf16Activations bf16_activations() {
  return bf16_activations_setting().load(std::memory_order_relaxed);
}

namespace scalar {

void matmul_bf16_activations(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  if (w.format != WeightFormat::kBF16) fail("matmul_bf16_activations: weight is not BF16");
  const uint16_t* data = static_cast<const uint16_t*>(w.data);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint16_t* row = data + r * w.cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) {
        acc += bf16_daz(row[c]) * bf16_daz(f32_to_bf16(xt[c]));
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace scalar

namespace bf16dot {

int64_t padded_columns(int64_t cols) {
  return (cols + 31) / 32 * 32;
}

#if defined(M2FP4_BF16DOT_X86)

namespace {

constexpr int64_t kTileRows = 4;
constexpr int64_t kTokenGroup = 6;  // 4 x 6 accumulators + 4 weight vectors + 1 token vector
// Columns per pass with several token groups: a tile's rows (4 x 2 KiB) stay in L1 and a token
// group's (6 x 2 KiB) with them while the block's tokens come from L2; partial sums go to y.
constexpr int64_t kColumnChunk = 1024;
constexpr int64_t kTokenBlock = 64;

M2FP4_BF16DOT inline __m512bh as_bh(__m512i v) {
  return reinterpret_cast<__m512bh&>(v);
}

// One vector of columns (c .. c + 31) of R rows w against TB tokens.
template <int R, int TB>
M2FP4_BF16DOT inline void dot_step(__m512 (&acc)[R][TB], const __m512i (&w)[R], const uint16_t* xb,
                                   int64_t x_stride, int64_t c) {
  HWY_UNROLL(8)
  for (int t = 0; t < TB; ++t) {
    const __m512bh xv = as_bh(_mm512_loadu_si512(xb + t * x_stride + c));
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], as_bh(w[r]), xv);
  }
}

// y[t * y_stride + r] = row r (of R) dotted with token t (of TB) for one tile
// (y += when accumulate) over columns [c0, c1) (c0 a multiple of 32). The rows are row_stride
// elements apart.
//
// Prefetch: reading column c of its rows, the tile prefetches column c of the R rows after its
// own (the next tile, which the thread reads next), R x row_stride elements ahead. Per-row
// prefetches 512 bytes ahead streamed a 200064 x 3072 matrix at 30.1-30.3 GB/s on 2 threads,
// one tile ahead at 31.4-31.8 (a stand-alone probe, same minute; the FP8 kernel gained more,
// matmul_fp8dot.cc). Prefetches past a matrix's end never fault.
template <int R, int TB>
M2FP4_BF16DOT void dot_tile(const uint16_t* const* rows, int64_t row_stride, int64_t c0, int64_t c1,
                            const uint16_t* xb, int64_t x_stride, float* y, int64_t y_stride,
                            bool accumulate) {
  __m512 acc[R][TB];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  const int64_t cols = c1;
  int64_t c = c0;
  for (; c + 32 <= cols; c += 32) {
    __m512i w[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + R * row_stride + c), _MM_HINT_T0);
      w[r] = _mm512_loadu_si512(rows[r] + c);
    }
    dot_step<R, TB>(acc, w, xb, x_stride, c);
  }
  if (c < cols) {
    // The activations' padding is zero; the weights past cols are masked to zero.
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (cols - c)) - 1u);
    __m512i w[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) w[r] = _mm512_maskz_loadu_epi16(m, rows[r] + c);
    dot_step<R, TB>(acc, w, xb, x_stride, c);
  }
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      const float sum = _mm512_reduce_add_ps(acc[r][t]);
      y[t * y_stride + r] = accumulate ? y[t * y_stride + r] + sum : sum;
    }
  }
}

// Tokens of a batched decode step that take the f32 FMA tile (file comment); 2 x 8 accumulators,
// 2 x 2 widened weight vectors and 2 token vectors fit the 32 registers.
constexpr int64_t kFmaMinTokens = 2;
constexpr int64_t kFmaMaxTokens = 8;
constexpr int kFmaTileRows = 2;
// Column blocks of the FMA path: the tokens' widened columns of one block (n_tokens x block x 4
// bytes <= 32 KiB) stay in L1 while the row tiles of a row block stream past them; a tile's
// accumulators wait in memory (its row block's share of the scratch) between blocks, so each
// lane adds the same products in the same order as over the whole row. Whole rows of 3072
// columns x 8 tokens (96 KiB) read the tokens from L2 and ran slower than vdpbf16ps.
constexpr int64_t kFmaBlockFloats = 8192;
constexpr int64_t kFmaRowBlock = 64;

// dot_tile's result for R rows and TB widened tokens over the block's columns, with FMAs
// (bf16_pair_fma.h) under ScopedSubnormalsAsZero. Prefetches prefetch_ahead elements ahead of
// each row (the next tile of the caller's loop).
template <int R, int TB>
M2FP4_BF16DOT void dot_tile_fma(const uint16_t* const* rows, int64_t prefetch_ahead,
                                const bf16_pair_fma::ColumnBlock& b, const float* xw,
                                int64_t x_stride, __m512* acc_mem, float* y, int64_t y_stride) {
  using namespace bf16_pair_fma;
  __m512 acc[R][TB];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) acc[r][t] = b.first ? _mm512_setzero_ps() : acc_mem[r * TB + t];
  }
  for (int64_t c = b.c0; c < b.c1; c += 32) {
    __m512 odd[R], even[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      __m512i w;
      if (c + 32 <= b.cols) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + prefetch_ahead + c), _MM_HINT_T0);
        w = _mm512_loadu_si512(rows[r] + c);
      } else {  // the weights past cols masked to zero (the tokens' padding is zero too)
        w = _mm512_maskz_loadu_epi16(static_cast<__mmask32>((uint64_t{1} << (b.cols - c)) - 1u),
                                     rows[r] + c);
      }
      odd[r] = odd_columns(w);
      even[r] = even_columns(w);
    }
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      const __m512 x_odd = _mm512_load_ps(xw + t * x_stride + c);
      const __m512 x_even = _mm512_load_ps(xw + t * x_stride + c + 16);
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) acc[r][t] = dot_pairs(acc[r][t], odd[r], even[r], x_odd, x_even);
    }
  }
  finish_block(acc, b.last, acc_mem, y, y_stride);
}

template <int R>
M2FP4_BF16DOT void dot_tile_fma_tokens(const uint16_t* const* rows, int64_t prefetch_ahead,
                                       const bf16_pair_fma::ColumnBlock& b, const float* xw,
                                       int64_t x_stride, int64_t nt, __m512* acc_mem, float* y,
                                       int64_t y_stride) {
  switch (nt) {
    case 2:
      return dot_tile_fma<R, 2>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    case 3:
      return dot_tile_fma<R, 3>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    case 4:
      return dot_tile_fma<R, 4>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    case 5:
      return dot_tile_fma<R, 5>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    case 6:
      return dot_tile_fma<R, 6>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    case 7:
      return dot_tile_fma<R, 7>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
    default:
      return dot_tile_fma<R, 8>(rows, prefetch_ahead, b, xw, x_stride, acc_mem, y, y_stride);
  }
}

// matmul_rows for kFmaMinTokens..kFmaMaxTokens tokens (file comment): row blocks, and within
// each, column blocks (kFmaBlockFloats) of all its row tiles.
M2FP4_BF16DOT void matmul_rows_fma(const uint16_t* data, int64_t rows_total, int64_t cols,
                                   const uint16_t* xb, int64_t n_tokens, int64_t row_begin,
                                   int64_t row_end, float* y) {
  const int64_t stride = padded_columns(cols);
  const int64_t block_cols = std::max<int64_t>(32, kFmaBlockFloats / n_tokens / 32 * 32);
  // Scratch: the widened tokens, then one row block's parked accumulators (64-byte aligned).
  const int64_t acc_vectors = kFmaRowBlock * n_tokens;
  float* scratch = thread_scratch(1, static_cast<size_t>(n_tokens * stride + 16 * acc_vectors));
  float* xw = scratch;
  __m512* acc_mem = reinterpret_cast<__m512*>(scratch + n_tokens * stride);
  bf16_pair_fma::widen(xb, n_tokens * stride, xw);
  const bf16_pair_fma::ScopedSubnormalsAsZero subnormals_as_zero;
  const uint16_t* rows[kFmaTileRows];
  const int64_t ahead = kTileRows * cols;  // as dot_tile: 4 rows on, the tiles after this one
  for (int64_t rb = row_begin; rb < row_end; rb += kFmaRowBlock) {
    const int64_t re = std::min(row_end, rb + kFmaRowBlock);
    for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
      const bf16_pair_fma::ColumnBlock b{c0, std::min(cols, c0 + block_cols), cols, c0 == 0,
                                         c0 + block_cols >= cols};
      int64_t r = rb;
      for (; r + kFmaTileRows <= re; r += kFmaTileRows) {
        for (int64_t i = 0; i < kFmaTileRows; ++i) rows[i] = data + (r + i) * cols;
        dot_tile_fma_tokens<kFmaTileRows>(rows, ahead, b, xw, stride, n_tokens,
                                          acc_mem + (r - rb) * n_tokens, y + r, rows_total);
      }
      for (; r < re; ++r) {
        rows[0] = data + r * cols;
        dot_tile_fma_tokens<1>(rows, ahead, b, xw, stride, n_tokens, acc_mem + (r - rb) * n_tokens,
                               y + r, rows_total);
      }
    }
  }
}

template <int R>
M2FP4_BF16DOT void dot_tile_tokens(const uint16_t* const* rows, int64_t row_stride, int64_t c0,
                                   int64_t c1, const uint16_t* xb, int64_t x_stride, int64_t nt,
                                   float* y, int64_t y_stride, bool accumulate) {
  switch (nt) {
    case 1:
      return dot_tile<R, 1>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
    case 2:
      return dot_tile<R, 2>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
    case 3:
      return dot_tile<R, 3>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
    case 4:
      return dot_tile<R, 4>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
    case 5:
      return dot_tile<R, 5>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
    default:
      return dot_tile<R, 6>(rows, row_stride, c0, c1, xb, x_stride, y, y_stride, accumulate);
  }
}

}  // namespace

bool cpu_supported() {
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return supported;
}

M2FP4_BF16DOT void round_activations(const float* x, int64_t cols, int64_t n_tokens,
                                     uint16_t* out) {
  const int64_t stride = padded_columns(cols);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    uint16_t* o = out + t * stride;
    for (int64_t c = 0; c < stride; c += 16) {
      const int64_t left = std::max<int64_t>(0, std::min<int64_t>(16, cols - c));
      const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
      // vcvtneps2bf16: round-to-nearest-even, NaN quiet, as f32_to_bf16 (subnormal results
      // flush to zero, which vdpbf16ps would do anyway).
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, xt + c));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), reinterpret_cast<const __m256i&>(h));
    }
  }
}

M2FP4_BF16DOT void matmul_rows(const Weight& w, const uint16_t* xb, int64_t n_tokens,
                               int64_t row_begin, int64_t row_end, float* y) {
  const uint16_t* data = static_cast<const uint16_t*>(w.data);
  const int64_t cols = w.cols;
  const int64_t stride = padded_columns(cols);
  if (cols == 0) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = row_begin; r < row_end; ++r) y[t * w.rows + r] = 0.0f;
    }
    return;
  }
  if (n_tokens >= kFmaMinTokens && n_tokens <= kFmaMaxTokens) {
    return matmul_rows_fma(data, w.rows, cols, xb, n_tokens, row_begin, row_end, y);
  }
  // One token group: the whole row per tile (decode); more: column chunks.
  const int64_t chunk = n_tokens > kTokenGroup ? kColumnChunk : std::max<int64_t>(cols, 1);
  for (int64_t b0 = 0; b0 < n_tokens; b0 += kTokenBlock) {
    const int64_t b1 = std::min(n_tokens, b0 + kTokenBlock);
    const uint16_t* rows[kTileRows];
    for (int64_t r = row_begin; r < row_end; r += kTileRows) {
      const int64_t nr = std::min(kTileRows, row_end - r);
      for (int64_t i = 0; i < nr; ++i) rows[i] = data + (r + i) * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
        const int64_t c1 = std::min(cols, c0 + chunk);
        for (int64_t t = b0; t < b1; t += kTokenGroup) {
          const int64_t nt = std::min(kTokenGroup, b1 - t);
          float* yt = y + t * w.rows + r;
          if (nr == kTileRows) {
            dot_tile_tokens<kTileRows>(rows, cols, c0, c1, xb + t * stride, stride, nt, yt, w.rows,
                                       c0 > 0);
          } else {
            for (int64_t i = 0; i < nr; ++i) {
              dot_tile_tokens<1>(rows + i, cols, c0, c1, xb + t * stride, stride, nt, yt + i,
                                 w.rows, c0 > 0);
            }
          }
        }
      }
    }
  }
}

#else  // !M2FP4_BF16DOT_X86

bool cpu_supported() {
  return false;
}

void round_activations(const float*, int64_t, int64_t, uint16_t*) {
  fail("bf16dot::round_activations: not built for this CPU");
}

void matmul_rows(const Weight&, const uint16_t*, int64_t, int64_t, int64_t, float*) {
  fail("bf16dot::matmul_rows: not built for this CPU");
}

#endif

}  // namespace bf16dot

}  // namespace m2fp4
