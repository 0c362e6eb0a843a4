// Per-target (Highway) GEMM of BF16 weights for many tokens (prefill, busy experts); included by
// matmul-inl.cc once per SIMD target. Not compiled on its own.
//
// Layout: the output rows lie along the vector lanes and the tokens are broadcast. A "panel" is
// kPanelVectors vectors of consecutive weight rows (32 rows on AVX-512); it is decoded once per
// call from its bf16 rows into f32 in column-major order (panel[k][row], a transpose) and then
// run against every token of the job: the register tile is kPanelVectors x T accumulators (T up
// to 12 tokens), and each column k costs kPanelVectors vector loads of the panel, T broadcasts of
// x[t][k] straight from the tokens' rows (no packed copy of the input) and kPanelVectors x T
// multiply-adds. Against the tokens-along-lanes GEMM of matmul-inl.cc this needs no transposed
// input, no padding of the token count to whole vectors, no transposed copy of the results, and
// it decodes each weight once per call instead of once per 64 tokens.
//
// Numerics: each output is the sequential sum over columns 0..cols-1 of w * x with one f32
// rounding per step (fused multiply-add), as the scalar twins sum. With activations rounded to
// bf16 every product is exact, so the results equal the twin's (scalar::matmul_bf16_activations)
// but for its flush of bf16 values below 2^-126; with f32 activations they differ from
// scalar::matmul only by the fused rounding.

#if defined(M2FP4_KERNELS_CPU_GEMM_BF16_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_GEMM_BF16_INL_CC_
#undef M2FP4_KERNELS_CPU_GEMM_BF16_INL_CC_
#else
#define M2FP4_KERNELS_CPU_GEMM_BF16_INL_CC_
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/scratch.h"
#include "numerics/bf16.h"

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace bf16_gemm {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr int kTileTokens = 5;  // 16 registers: 2 x 5 accumulators, 2 weights, 1 broadcast
#else
constexpr int kTileTokens = 12;  // 32 registers: 2 x 12 accumulators, 2 weights, 1 broadcast
#endif
constexpr int kPanelVectors = 2;

// Columns per pass over the token tiles: the panel's slice (256 x 32 floats on AVX-512, 32 KiB)
// stays in L1 while every tile of tokens runs over it.
constexpr int64_t kDepth = 256;

inline int64_t panel_rows() {
  return kPanelVectors * static_cast<int64_t>(hn::Lanes(DF()));
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// In place: v[i] = row i of a 16 x 16 matrix of 32-bit elements becomes v[j] = column j.
HWY_INLINE void transpose_16x16_epi32(__m512i (&v)[16]) {
  __m512i t[16];
  // Pairs of rows interleaved by 32 bits, then by 64 bits: v[4g + m], 128-bit lane L, holds
  // element 4L + m of rows 4g .. 4g + 3.
  HWY_UNROLL(16)
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  HWY_UNROLL(16)
  for (int g = 0; g < 4; ++g) {
    v[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    v[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    v[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    v[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // A 4 x 4 transpose of 128-bit lanes per m gives element 4l + m of all 16 rows.
  HWY_UNROLL(16)
  for (int m = 0; m < 4; ++m) {
    const __m512i v0 = _mm512_shuffle_i32x4(v[m], v[4 + m], 0x44);
    const __m512i v1 = _mm512_shuffle_i32x4(v[m], v[4 + m], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0xEE);
    t[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    t[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    t[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    t[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
  HWY_UNROLL(16)
  for (int j = 0; j < 16; ++j) v[j] = t[j];
}

// 16 rows x 32 bf16 columns (16 32-bit pairs per row) at rows[i] + c, transposed and widened to
// f32: out[(c + k) * 32 + i] for k < 32, i < 16 (the caller offsets out by the panel half).
HWY_INLINE void decode_16x32(const uint16_t* const* rows, int64_t c, float* out) {
  __m512i v[16];
  HWY_UNROLL(16)
  for (int i = 0; i < 16; ++i) v[i] = _mm512_loadu_si512(rows[i] + c);
  transpose_16x16_epi32(v);  // v[j]: pair j (columns 2j, 2j + 1) of the 16 rows
  const __m512i high = _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
  HWY_UNROLL(16)
  for (int j = 0; j < 16; ++j) {
    // The low half of a pair is the even column, the high half the odd one.
    _mm512_storeu_si512(out + (c + 2 * j) * 32, _mm512_slli_epi32(v[j], 16));
    _mm512_storeu_si512(out + (c + 2 * j + 1) * 32, _mm512_and_si512(v[j], high));
  }
}
#endif

// Columns [c0, c1) of rows [r0, r0 + nr) of the row-major bf16 matrix w (cols columns) into
// panel[(k - c0) * panel_rows() + i] as f32; rows past nr are zero.
inline void decode_panel(const uint16_t* w, int64_t cols, int64_t r0, int64_t nr, int64_t c0,
                         int64_t c1, float* panel) {
  const int64_t P = panel_rows();
  int64_t c = c0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  if (P == 32 && nr == 32) {
    const uint16_t* rows[32];
    for (int i = 0; i < 32; ++i) rows[i] = w + (r0 + i) * cols + c0;
    for (; c + 32 <= c1; c += 32) {
      decode_16x32(rows, c - c0, panel);
      decode_16x32(rows + 16, c - c0, panel + 16);
    }
  }
#endif
  for (int64_t k = c; k < c1; ++k) {
    float* o = panel + (k - c0) * P;
    for (int64_t i = 0; i < nr; ++i) o[i] = bf16_to_f32(w[(r0 + i) * cols + k]);
    for (int64_t i = nr; i < P; ++i) o[i] = 0.0f;
  }
}

// Token tile i of n_tiles covers tokens [tile_begin(i), tile_begin(i + 1)): near-equal sizes,
// none above kTileTokens.
inline int64_t tile_count(int64_t n_tokens) {
  return (n_tokens + kTileTokens - 1) / kTileTokens;
}
inline int64_t tile_begin(int64_t n_tokens, int64_t n_tiles, int64_t i) {
  return n_tokens * i / n_tiles;
}

// x rounded to bf16 (round-to-nearest-even, NaN kept quiet) as f32, as round_to_bf16 does;
// out may be x.
inline void round_to_bf16_floats(const float* x, int64_t n, float* out) {
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto high = hn::Set(du, 0xFFFF0000u);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto bits = hn::BitCast(du, hn::LoadU(df, x + i));
    const auto bias =
        hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)));
    const auto rounded = hn::And(hn::Add(bits, bias), high);
    const auto quiet = hn::And(hn::Or(bits, hn::Set(du, 0x00400000u)), high);
    const auto magnitude = hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu)));
    const auto is_nan = hn::RebindMask(du, hn::Gt(magnitude, hn::Set(di, 0x7F800000)));
    hn::StoreU(hn::BitCast(df, hn::IfThenElse(is_nan, quiet, rounded)), df, out + i);
  }
  for (; i < n; ++i) out[i] = round_to_bf16(x[i]);
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// Columns [k, k + 16) of the T <= 16 rows rows[t], transposed: out[j * T + t] = rows[t][k + j]
// for j < 16, t < T. A 16 x 16 transpose (rows past T zero) and 16 stores of T lanes, instead of
// 16 T scalar copies with strided stores (~2.6% of a quantize calibration's samples).
HWY_INLINE void pack_16_columns(const float* const* rows, int64_t T, int64_t k, float* out) {
  __m512i v[16];
  HWY_UNROLL(16)
  for (int i = 0; i < 16; ++i) {
    v[i] = i < T ? _mm512_loadu_si512(rows[i] + k) : _mm512_setzero_si512();
  }
  transpose_16x16_epi32(v);  // v[j]: column k + j of the rows
  const __mmask16 lanes = static_cast<__mmask16>((1u << T) - 1u);
  HWY_UNROLL(16)
  for (int j = 0; j < 16; ++j) _mm512_mask_storeu_epi32(out + j * T, lanes, v[j]);
}
#endif

// The input packed for the kernel: tile by tile (tile i at offset tile_begin(i) * cols), column
// by column, the tile's T tokens side by side: packed[t0 * cols + k * T + (t - t0)] = x[t][k],
// rounded to bf16 (round_to_bf16) when `round`. One stream of broadcasts per tile; the tokens'
// own rows, often a multiple of 4 KiB apart, would all fall in one L1 set.
// Part `part` of `parts` (a contiguous range of tiles) packs only its tiles, so threads can share
// the work.
inline void pack_tokens(const float* x, int64_t cols, int64_t n_tokens, bool round, float* packed,
                        int64_t part = 0, int64_t parts = 1) {
  const int64_t n_tiles = tile_count(n_tokens);
  const int64_t i0 = n_tiles * part / parts, i1 = n_tiles * (part + 1) / parts;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t t0 = tile_begin(n_tokens, n_tiles, i);
    const int64_t T = tile_begin(n_tokens, n_tiles, i + 1) - t0;
    float* out = packed + t0 * cols;
    int64_t k0 = 0;  // columns before k0 packed 16 at a time
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
    if (T <= 16) {
      const float* rows[16] = {};
      for (int64_t t = 0; t < T; ++t) rows[t] = x + (t0 + t) * cols;
      for (; k0 + 16 <= cols; k0 += 16) pack_16_columns(rows, T, k0, out + k0 * T);
    }
#endif
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = x + (t0 + t) * cols;
      for (int64_t k = k0; k < cols; ++k) out[k * T + t] = xr[k];
    }
  }
  if (round) {  // elementwise, so on the packed tiles
    const int64_t begin = tile_begin(n_tokens, n_tiles, i0) * cols;
    const int64_t end = tile_begin(n_tokens, n_tiles, i1) * cols;
    round_to_bf16_floats(packed + begin, end - begin, packed + begin);
  }
}

// yacc[t * P + i] (+)= sum over k < depth of panel[k * P + i] * xp[k * T + t] for the T tokens of
// a packed tile and the P = kPanelVectors vectors of rows; starts from zero when `first`. The
// sums go to out[t * out_stride + i] instead when out is given (the last block of a whole panel:
// straight into the output rows, not through yacc and a copy). Issues the n_prefetch prefetches
// of `prefetch` evenly over its columns: in one burst they would stall it while the line fill
// buffers are full.
template <int T>
HWY_NOINLINE void panel_tile(const float* HWY_RESTRICT panel, int64_t depth,
                             const float* HWY_RESTRICT xp, float* HWY_RESTRICT yacc, bool first,
                             float* HWY_RESTRICT out, int64_t out_stride,
                             const void* const* prefetch, int64_t n_prefetch) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  constexpr int V = kPanelVectors;
  const int64_t P = V * n;
  VF acc[T][V];
  HWY_UNROLL(16)
  for (int t = 0; t < T; ++t) {
    HWY_UNROLL(4)
    for (int v = 0; v < V; ++v)
      acc[t][v] = first ? hn::Zero(df) : hn::Load(df, yacc + t * P + v * n);
  }
  const int64_t every = n_prefetch > 0 ? std::max<int64_t>(1, depth / n_prefetch) : depth;
  int64_t j = 0;
  for (int64_t k = 0; k < depth;) {
    if (j < n_prefetch) hwy::Prefetch(prefetch[j++]);
    for (const int64_t k_end = std::min(depth, k + every); k < k_end; ++k) {
      VF w[V];
      HWY_UNROLL(4)
      for (int v = 0; v < V; ++v) w[v] = hn::Load(df, panel + k * P + v * n);
      HWY_UNROLL(16)
      for (int t = 0; t < T; ++t) {
        const VF xv = hn::Set(df, xp[k * T + t]);
        HWY_UNROLL(4)
        for (int v = 0; v < V; ++v) acc[t][v] = hn::MulAdd(w[v], xv, acc[t][v]);
      }
    }
  }
  for (; j < n_prefetch; ++j) hwy::Prefetch(prefetch[j]);
  if (out != nullptr) {
    HWY_UNROLL(16)
    for (int t = 0; t < T; ++t) {
      HWY_UNROLL(4)
      for (int v = 0; v < V; ++v) hn::StoreU(acc[t][v], df, out + t * out_stride + v * n);
    }
    return;
  }
  HWY_UNROLL(16)
  for (int t = 0; t < T; ++t) {
    HWY_UNROLL(4)
    for (int v = 0; v < V; ++v) hn::Store(acc[t][v], df, yacc + t * P + v * n);
  }
}

using PanelTileFn = void (*)(const float*, int64_t, const float*, float*, bool, float*, int64_t,
                             const void* const*, int64_t);

template <int... Ts>
constexpr auto make_tile_table(std::integer_sequence<int, Ts...>) {
  return std::array<PanelTileFn, sizeof...(Ts)>{&panel_tile<Ts + 1>...};
}

// panel_tile<t> for t = 1 .. kTileTokens at index t - 1.
inline PanelTileFn tile_for(int64_t tokens) {
  static constexpr auto table = make_tile_table(std::make_integer_sequence<int, kTileTokens>());
  return table[static_cast<size_t>(tokens - 1)];
}

// Floats of per-thread scratch: the decoded panel block and the partial sums of all tokens.
inline int64_t scratch_floats(int64_t n_tokens) {
  return panel_rows() * (kDepth + n_tokens);
}

// y[t * n_rows_total + r] for rows [row_begin, row_end) of the bf16 matrix w (cols columns) and
// the n_tokens tokens packed by pack_tokens. Per panel of rows, per block of kDepth columns: the
// block is decoded once (into L1) and runs against every token tile; meanwhile the next block's
// weights are prefetched, a share per tile (the panel's rows are 32 streams, more than the
// hardware prefetcher follows, and with few tokens the decode would wait on memory).
inline void gemm_rows(const uint16_t* w, int64_t cols, int64_t row_begin, int64_t row_end,
                      const float* packed, int64_t n_tokens, int64_t n_rows_total, float* y) {
  const int64_t P = panel_rows();
  float* panel = thread_scratch(1, static_cast<size_t>(scratch_floats(n_tokens)));
  float* yacc = panel + P * kDepth;
  const int64_t n_tiles = tile_count(n_tokens);
  constexpr int64_t kLineElements = 32;  // bf16 per 64-byte line
  const void* prefetch[kPanelVectors * hn::MaxLanes(DF()) * (kDepth / kLineElements)];
  for (int64_t p0 = row_begin; p0 < row_end; p0 += P) {
    const int64_t nr = std::min(P, row_end - p0);
    for (int64_t k0 = 0; k0 < cols; k0 += kDepth) {
      const int64_t k1 = std::min(cols, k0 + kDepth);
      decode_panel(w, cols, p0, nr, k0, k1, panel);
      // The next block: further columns of these rows, else the next panel's first columns.
      const int64_t next_p = k1 < cols ? p0 : p0 + P;
      const int64_t next_k = k1 < cols ? k1 : 0;
      const int64_t next_rows = std::max<int64_t>(0, std::min(P, row_end - next_p));
      const int64_t next_lines =
          (std::min(kDepth, cols - next_k) + kLineElements - 1) / kLineElements;
      const int64_t n_prefetch = next_rows * next_lines;
      for (int64_t r = 0, j = 0; r < next_rows; ++r) {
        for (int64_t l = 0; l < next_lines; ++l) {
          prefetch[j++] = w + (next_p + r) * cols + next_k + l * kLineElements;
        }
      }
      // A whole panel's last block stores straight into y (a partial one through yacc: its
      // rows past nr are not y's).
      const bool direct = k1 == cols && nr == P;
      for (int64_t i = 0; i < n_tiles; ++i) {
        const int64_t t0 = tile_begin(n_tokens, n_tiles, i);
        const int64_t T = tile_begin(n_tokens, n_tiles, i + 1) - t0;
        const int64_t j0 = n_prefetch * i / n_tiles, j1 = n_prefetch * (i + 1) / n_tiles;
        tile_for(T)(panel, k1 - k0, packed + t0 * cols + k0 * T, yacc + t0 * P, k0 == 0,
                    direct ? y + t0 * n_rows_total + p0 : nullptr, n_rows_total, prefetch + j0,
                    j1 - j0);
      }
    }
    if (cols == 0) std::memset(yacc, 0, static_cast<size_t>(n_tokens * P) * sizeof(float));
    if (nr < P || cols == 0) {
      for (int64_t t = 0; t < n_tokens; ++t) {
        std::memcpy(y + t * n_rows_total + p0, yacc + t * P,
                    static_cast<size_t>(nr) * sizeof(float));
      }
    }
  }
}

}  // namespace bf16_gemm
}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
