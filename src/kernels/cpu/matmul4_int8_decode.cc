// Decode kernel of the int8-activation 4-bit GEMV (matmul4_int8.h, int8_gemv::decode_rows): a
// few tokens (decode steps, the experts' 1-8 tokens each) against many small matrices.
//
// Same math as dot_rows (matmul4_int8.cc, whose header comment describes the layout), lane by
// lane and step by step, so a (row, token) result has the same bits whichever kernel computes it:
// per 128-column chunk, dot = vpdpbusd(vpdpbusd(start, low, even), high, odd), then
// acc = fma(f32(dot), multiplier * activation scale, acc), and at the end the lanes are summed by
// _mm512_reduce_add_ps and multiplied by k. What differs is where the time goes at these sizes:
// - The group multipliers are decoded in the kernel from the stored scale bytes (NVFP4 E4M3 with
//   |global_scale| < 256, MXFP4 E8M0, IQ4_NL f16), in registers, instead of by a separate pass
//   into a buffer per row tile that the kernel then reloads: a vpermb puts each group's byte
//   under its lanes, a shift (and a mask) makes it an f32, one multiply applies the global
//   scale, rounding once as group_scale_value() does. A tile whose scales are not all finite
//   (E4M3 0x7F / 0xFF, E8M0 0xFF, f16 inf or NaN) is handed back to the caller, which takes the
//   generic route for those rows (NaN and infinity then act as in scalar::matmul).
// - One context per call, not per row tile; full chunks are read without masks (the ragged last
//   chunk, if any, separately).
// - Prefetch: a thread reads its rows' codes front to back (a row tile is contiguous), so every
//   line read prefetches the line prefetch_bytes further on: two row tiles ahead, and at least
//   kMinPrefetchBytes for short rows. A fixed 4 KiB streamed the wide preset's experts (3072 x
//   3072 and 3072 x 1536) at 22.5-24.0 GB/s on 2 threads, 12 KiB at 26.6-28.3 (a stand-alone
//   probe of 8 random experts per step, same minute), while the bench preset's short rows
//   (512 and 256 bytes) gained nothing past 4 KiB. Prefetches never fault, so near the end of
//   a matrix they run on into whatever lies after it (in a loaded checkpoint, usually the next
//   matrix of the layer). The scale bytes of a tile are prefetched the same distance ahead, in
//   their own units.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "base/error.h"
#include "hwy/base.h"  // HWY_UNROLL
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul4_int8_layout.h"

#if defined(__x86_64__) || defined(__i386__)
#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized (and errors on unknown groups)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_INT8_DECODE_X86 1
#define M2FP4_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#endif

namespace m2fp4::int8_gemv {

bool decode_supported(const Weight& w) {
  if (!weight_supported(w)) return false;
  switch (w.format) {
    case WeightFormat::kNvfp4:
      // Below 256 the E4M3 bits placed in an f32 (value * 2^-120) times global * 2^120 is exact
      // up to the one rounding of value * global (also for subnormal E4M3 and tiny globals).
      return w.group_size == 16 && std::abs(w.global_scale) < 256.0f;
    case WeightFormat::kMxfp4:
      return w.group_size == 32;
    case WeightFormat::kIq4nl16:
      return w.group_size == 16;
    default:
      return false;
  }
}

#ifdef M2FP4_INT8_DECODE_X86

namespace {

constexpr int64_t kMinPrefetchBytes = 4096;

// vpermb indices that put scale byte (lane j's group) into byte 3 of 32-bit lane j (the other
// bytes are zeroed by the mask kTopByte): groups of 16 columns (lane j: group j / 2) and of 32
// (group j / 4); lane j holds columns 8j .. 8j+7 of the chunk.
constexpr ByteTable make_scale_spread(int lanes_per_group) {
  ByteTable t{};
  for (int i = 0; i < 64; ++i) t.v[i] = static_cast<uint8_t>(i / 4 / lanes_per_group);
  return t;
}
constexpr ByteTable kSpreadPairs = make_scale_spread(2);
constexpr ByteTable kSpreadQuads = make_scale_spread(4);
constexpr __mmask64 kTopByte = 0x8888888888888888ull;

// vpermw indices for IQ4_NL x16: f16 scale j / 2 into 16-bit lane j (then vcvtph2ps).
struct alignas(32) WordTable {
  uint16_t v[16];
};
constexpr WordTable make_f16_spread() {
  WordTable t{};
  for (int i = 0; i < 16; ++i) t.v[i] = static_cast<uint16_t>(i / 2);
  return t;
}
constexpr WordTable kF16Spread = make_f16_spread();

enum class ScaleKind { kE4m3, kE8m0, kF16 };

struct DecodeContext {
  __m512i table;           // code value + bias
  __m512i spread;          // scale byte -> byte 3 of its lanes (E4M3, E8M0)
  __m256i spread16;        // f16 scale -> its two 16-bit lanes (IQ4_NL)
  __m512 global;           // NVFP4: global_scale * 2^120
  int64_t row_bytes;       // packed codes per row
  int64_t scale_bytes;     // scale bytes per row
  int64_t chunk_scale;     // scale bytes per full chunk
  int64_t full_chunks;     // chunks of 128 columns
  int64_t tail_bytes;      // code bytes of the ragged last chunk (0: none)
  int64_t token_bytes;     // quantized activations per token
  int64_t prefetch_bytes;  // prefetch distance in code bytes (file comment)
  int64_t scale_ahead;     // the same distance in scale bytes
  float k;
};

// The multipliers of one chunk of one row, lane j holding its group's.
template <ScaleKind S>
M2FP4_VNNI inline __m512 chunk_multipliers(const DecodeContext& c, const uint8_t* p,
                                           __mmask16 valid) {
  if constexpr (S == ScaleKind::kE4m3) {
    const __m128i bytes = _mm_maskz_loadu_epi8(valid, p);
    const __m512i top =
        _mm512_maskz_permutexvar_epi8(kTopByte, c.spread, _mm512_zextsi128_si512(bytes));
    // Byte in bits 24..31, arithmetic shift: bits 20..27 the E4M3 code, 28..31 its sign copied;
    // the mask keeps the sign (31) and the magnitude (26..20): value * 2^-120 as an f32.
    const __m512i bits = _mm512_and_si512(_mm512_srai_epi32(top, 4),
                                          _mm512_set1_epi32(static_cast<int32_t>(0x87F00000u)));
    return _mm512_mul_ps(_mm512_castsi512_ps(bits), c.global);
  } else if constexpr (S == ScaleKind::kE8m0) {
    const __m128i bytes = _mm_maskz_loadu_epi8(valid, p);
    const __m512i top =
        _mm512_maskz_permutexvar_epi8(kTopByte, c.spread, _mm512_zextsi128_si512(bytes));
    // 2^(e - 127): e in bits 23..30; e = 0 is 2^-127, the f32 subnormal 0x00400000, which the
    // max gives while every e >= 1 is larger (lanes past a ragged chunk get it too, times an
    // activation scale of 0).
    return _mm512_castsi512_ps(
        _mm512_max_epu32(_mm512_srli_epi32(top, 1), _mm512_set1_epi32(0x00400000)));
  } else {
    const __m128i halves = _mm_maskz_loadu_epi16(valid, p);
    return _mm512_cvtph_ps(_mm256_permutexvar_epi16(c.spread16, _mm256_zextsi128_si256(halves)));
  }
}

// Whether the scale entries of a tile (rows back to back, n_bytes) are all finite (E4M3 0x7F /
// 0xFF, E8M0 0xFF, f16 with all exponent bits set are not).
template <ScaleKind S>
M2FP4_VNNI bool tile_scales_plain(const uint8_t* p, int64_t n_bytes) {
  if constexpr (S == ScaleKind::kF16) {
    // f16 exponent all ones (inf, NaN).
    const __m512i exponent = _mm512_set1_epi16(0x7C00);
    const int64_t n = n_bytes / 2;
    __mmask32 bad = 0;
    for (int64_t i = 0; i < n; i += 32) {
      const __mmask32 m =
          n - i >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << (n - i)) - 1);
      const __m512i v = _mm512_maskz_loadu_epi16(m, p + 2 * i);
      bad |= _mm512_mask_cmpeq_epi16_mask(m, _mm512_and_si512(v, exponent), exponent);
    }
    return bad == 0;
  } else {
    __mmask64 bad = 0;
    for (int64_t i = 0; i < n_bytes; i += 64) {
      const __mmask64 m = n_bytes - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (n_bytes - i)) - 1;
      const __m512i v = _mm512_maskz_loadu_epi8(m, p + i);
      if constexpr (S == ScaleKind::kE4m3) {
        const __m512i magnitude = _mm512_set1_epi8(0x7F);
        bad |= _mm512_mask_cmpeq_epi8_mask(m, _mm512_and_si512(v, magnitude), magnitude);
      } else {
        bad |= _mm512_mask_cmpeq_epi8_mask(m, v, _mm512_set1_epi8(static_cast<char>(0xFF)));
      }
    }
    return bad == 0;
  }
}

// One chunk k of R contiguous rows (codes, scales) against T tokens, into acc; kFull: a whole
// chunk, else the ragged last one (masked loads, zeros past the row).
template <ScaleKind S, int R, int T, bool kFull>
M2FP4_VNNI __attribute__((always_inline)) inline void decode_step(const DecodeContext& c,
                                                                  const uint8_t* codes,
                                                                  const uint8_t* scales,
                                                                  const uint8_t* xq, int64_t k,
                                                                  __m512 (&acc)[R][T]) {
  constexpr int64_t kGroup = S == ScaleKind::kE8m0 ? 32 : 16;
  __m512i low[R], high[R];
  __m512 mult[R];
  const __mmask64 code_mask = kFull ? ~__mmask64{0} : (__mmask64{1} << c.tail_bytes) - 1;
  // Scale entries of the chunk: 128 / group, or those of the ragged chunk's columns.
  const int64_t entries = kFull ? kChunkColumns / kGroup : 2 * c.tail_bytes / kGroup;
  const __mmask16 scale_mask = static_cast<__mmask16>((1u << entries) - 1u);
  HWY_UNROLL(4)
  for (int r = 0; r < R; ++r) {
    const uint8_t* p = codes + r * c.row_bytes + k * 64;
    _mm_prefetch(reinterpret_cast<const char*>(p + c.prefetch_bytes), _MM_HINT_T0);
    const __m512i v = kFull ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(code_mask, p);
    low[r] = _mm512_permutexvar_epi8(v, c.table);
    high[r] = _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), c.table);
    mult[r] = chunk_multipliers<S>(c, scales + r * c.scale_bytes + k * c.chunk_scale, scale_mask);
  }
  HWY_UNROLL(4)
  for (int t = 0; t < T; ++t) {
    const uint8_t* xk = xq + t * c.token_bytes + k * kChunkBytes;
    const __m512i even = _mm512_loadu_si512(xk), odd = _mm512_loadu_si512(xk + 64);
    const __m512 x_scale = _mm512_loadu_ps(xk + 192);
    HWY_UNROLL(4)
    for (int r = 0; r < R; ++r) {
      const __m512i dot = _mm512_dpbusd_epi32(
          _mm512_dpbusd_epi32(_mm512_loadu_si512(xk + 128), low[r], even), high[r], odd);
      acc[r][t] =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(mult[r], x_scale), acc[r][t]);
    }
  }
}

// y[t * y_stride + r] for the R contiguous rows at `codes` (scales at `scales`) and T tokens.
template <ScaleKind S, int R, int T>
M2FP4_VNNI void decode_tile(const DecodeContext& c, const uint8_t* codes, const uint8_t* scales,
                            const uint8_t* xq, float* y, int64_t y_stride) {
  __m512 acc[R][T];
  HWY_UNROLL(4)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(4)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < c.full_chunks; ++k)
    decode_step<S, R, T, true>(c, codes, scales, xq, k, acc);
  if (c.tail_bytes > 0) decode_step<S, R, T, false>(c, codes, scales, xq, c.full_chunks, acc);
  HWY_UNROLL(4)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(4)
    for (int t = 0; t < T; ++t) y[t * y_stride + r] = _mm512_reduce_add_ps(acc[r][t]) * c.k;
  }
}

// T tokens on R rows in sub-tiles of 2 rows (3 or 4 tokens' accumulators and 4 rows' decoded
// codes would not fit the 32 registers).
template <ScaleKind S, int R, int T>
M2FP4_VNNI void decode_row_pairs(const DecodeContext& c, const uint8_t* codes,
                                 const uint8_t* scales, const uint8_t* xq, float* y,
                                 int64_t y_stride) {
  HWY_UNROLL(2)
  for (int r = 0; r + 2 <= R; r += 2) {
    decode_tile<S, 2, T>(c, codes + r * c.row_bytes, scales + r * c.scale_bytes, xq, y + r,
                         y_stride);
  }
  if constexpr (R % 2 == 1) {
    decode_tile<S, 1, T>(c, codes + (R - 1) * c.row_bytes, scales + (R - 1) * c.scale_bytes, xq,
                         y + R - 1, y_stride);
  }
}

// All n_tokens tokens for R rows: 4 tokens at a time, then the rest.
template <ScaleKind S, int R>
M2FP4_VNNI void decode_rows_all_tokens(const DecodeContext& c, const uint8_t* codes,
                                       const uint8_t* scales, const uint8_t* xq, int64_t n_tokens,
                                       float* y, int64_t y_stride) {
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    decode_row_pairs<S, R, 4>(c, codes, scales, xq + t * c.token_bytes, y + t * y_stride, y_stride);
  }
  switch (n_tokens - t) {
    case 3:
      return decode_row_pairs<S, R, 3>(c, codes, scales, xq + t * c.token_bytes, y + t * y_stride,
                                       y_stride);
    case 2:
      return decode_tile<S, R, 2>(c, codes, scales, xq + t * c.token_bytes, y + t * y_stride,
                                  y_stride);
    case 1:
      return decode_tile<S, R, 1>(c, codes, scales, xq + t * c.token_bytes, y + t * y_stride,
                                  y_stride);
    default:
      return;
  }
}

template <ScaleKind S>
M2FP4_VNNI int64_t decode_rows_of(const DecodeContext& c, const uint8_t* codes,
                                  const uint8_t* scales, int64_t row_begin, int64_t row_end,
                                  const uint8_t* xq, int64_t n_tokens, float* y, int64_t y_stride) {
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kDecodeTileRows) {
    const int n = static_cast<int>(std::min<int64_t>(kDecodeTileRows, row_end - r0));
    const uint8_t* tile_codes = codes + r0 * c.row_bytes;
    const uint8_t* tile_scales = scales + r0 * c.scale_bytes;
    const int64_t tile_scale_bytes = n * c.scale_bytes;
    for (int64_t i = 0; i < tile_scale_bytes; i += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(tile_scales + c.scale_ahead + i), _MM_HINT_T0);
    }
    if (!tile_scales_plain<S>(tile_scales, tile_scale_bytes)) return r0;
    float* yr = y + r0;
    switch (n) {
      case 4:
        decode_rows_all_tokens<S, 4>(c, tile_codes, tile_scales, xq, n_tokens, yr, y_stride);
        break;
      case 3:
        decode_rows_all_tokens<S, 3>(c, tile_codes, tile_scales, xq, n_tokens, yr, y_stride);
        break;
      case 2:
        decode_rows_all_tokens<S, 2>(c, tile_codes, tile_scales, xq, n_tokens, yr, y_stride);
        break;
      default:
        decode_rows_all_tokens<S, 1>(c, tile_codes, tile_scales, xq, n_tokens, yr, y_stride);
        break;
    }
  }
  return row_end;
}

M2FP4_VNNI DecodeContext make_decode_context(const Weight& w) {
  DecodeContext c;
  const bool e2m1 = is_e2m1(w.format);
  c.table = _mm512_load_si512(e2m1 ? kE2m1Table.v : kIq4nlTable.v);
  c.spread = _mm512_load_si512(w.format == WeightFormat::kMxfp4 ? kSpreadQuads.v : kSpreadPairs.v);
  c.spread16 = _mm256_load_si256(reinterpret_cast<const __m256i*>(kF16Spread.v));
  c.global = _mm512_set1_ps(w.global_scale * 0x1p120f);
  c.row_bytes = w.cols / 2;
  const int64_t entry_bytes = w.format == WeightFormat::kIq4nl16 ? 2 : 1;
  c.scale_bytes = w.cols / w.group_size * entry_bytes;
  c.chunk_scale = kChunkColumns / w.group_size * entry_bytes;
  c.full_chunks = w.cols / kChunkColumns;
  c.tail_bytes = (w.cols % kChunkColumns) / 2;
  c.token_bytes = activation_bytes(w.cols, 1);
  c.prefetch_bytes = std::max(kMinPrefetchBytes, 2 * kDecodeTileRows * c.row_bytes);
  c.scale_ahead = c.prefetch_bytes * c.scale_bytes / c.row_bytes;
  c.k = e2m1 ? 0.5f : 1.0f;
  return c;
}

}  // namespace

int64_t decode_rows(const Weight& w, int64_t row_begin, int64_t row_end, const uint8_t* xq,
                    int64_t n_tokens, float* y, int64_t y_stride) {
  const DecodeContext c = make_decode_context(w);
  const uint8_t* codes = static_cast<const uint8_t*>(w.data);
  switch (w.format) {
    case WeightFormat::kNvfp4:
      return decode_rows_of<ScaleKind::kE4m3>(c, codes, w.group_scale, row_begin, row_end, xq,
                                              n_tokens, y, y_stride);
    case WeightFormat::kMxfp4:
      return decode_rows_of<ScaleKind::kE8m0>(c, codes, w.group_scale, row_begin, row_end, xq,
                                              n_tokens, y, y_stride);
    default:
      return decode_rows_of<ScaleKind::kF16>(c, codes, w.group_scale, row_begin, row_end, xq,
                                             n_tokens, y, y_stride);
  }
}

#else  // no x86: the f32 kernels run instead

int64_t decode_rows(const Weight&, int64_t, int64_t, const uint8_t*, int64_t, float*, int64_t) {
  fail("int8_gemv::decode_rows: not built for this CPU");
}

#endif

}  // namespace m2fp4::int8_gemv
