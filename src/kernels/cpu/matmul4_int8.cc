// AVX-512 VNNI/VBMI kernel of the int8-activation 4-bit GEMV (matmul4_int8.h), in functions with
// their own target attributes (Debian's Highway has no VNNI dot product), run only after
// cpu_supported() said yes.
//
// Layout. A chunk is 128 columns: 64 bytes of packed codes per row. In-register, byte i of the
// codes holds column 2i (low nibble) and 2i+1 (high nibble); vpermb on the bytes (and on the
// bytes shifted right by 4) looks both nibbles up in a 64-byte table (the 16 values repeated, so
// the index bits above the nibble do not matter), giving the even and the odd columns as bytes.
// The activations are stored per chunk in the same split: 64 int8 of the even columns, 64 of the
// odd ones. vpdpbusd then sums 4 byte products per 32-bit lane, and with both halves lane j holds
// the dot product of columns 8j .. 8j+7, all in one weight group and one activation block.
// vpdpbusd multiplies unsigned by signed bytes: the table holds code value + B (B = 12 for E2M1
// values x 2, 127 for IQ4_NL levels, so 0..24 or 0..240), and each lane's accumulator starts at
// -B * (sum of the lane's 8 int8 activations), stored with the activations. The exact int32
// lane sums (|sum| <= 8 * 240 * 127 < 2^24) convert to f32 exactly and are scaled by
// (group multiplier * activation scale) per lane.
//
// Quantized token layout, per chunk (256 bytes): [0, 64) int8 even columns, [64, 128) int8 odd
// columns, [128, 192) 16 int32 -B * lane sums, [192, 256) 16 f32 activation scales per lane.
// Columns past `cols` are 0 with scale 0.
#include "kernels/cpu/matmul4_int8.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "hwy/base.h"  // HWY_UNROLL
#include "kernels/cpu/matmul4_int8_layout.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized (and errors on unknown groups)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_INT8_GEMV_X86 1
#define M2FP4_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#endif

namespace m2fp4::int8_gemv {

namespace {

// Prefetch distance. A thread reads a contiguous range of rows, kTileRows at a time, so row slot
// r of a tile reads row r, then (next tile) row r + kTileRows, ...: each line read prefetches
// the line min(kPrefetchBytes, row bytes) further along that slot's stream, in the same row or,
// past its end, in the same slot's row of the next tile. Long rows thus prefetch ahead within
// the row, short ones (decode reads many small matrices with rows of a few hundred bytes, where
// a distance within the row would never fire) a tile ahead; the hardware prefetcher stops at
// 4 KiB pages.
constexpr int64_t kPrefetchBytes = 1024;
constexpr int64_t kTileRows = 4;  // the rows per tile of the driver (matmul4_int8-inl.cc)

// Byte i of a chunk's natural-order activations for the even (2i) and odd (2i + 1) halves.
constexpr ByteTable make_deinterleave(int odd) {
  ByteTable t{};
  for (int i = 0; i < 64; ++i) t.v[i] = static_cast<uint8_t>(2 * i + odd);
  return t;
}
constexpr ByteTable kEvenColumns = make_deinterleave(0);
constexpr ByteTable kOddColumns = make_deinterleave(1);

}  // namespace

bool weight_supported(const Weight& w) {
  const bool four_bit = w.format == WeightFormat::kNvfp4 || w.format == WeightFormat::kMxfp4 ||
                        w.format == WeightFormat::kIq4nl16;
  return four_bit && w.group_size > 0 && w.group_size % 8 == 0 &&
         kInt8ActivationBlock % w.group_size == 0;
}

int64_t activation_bytes(int64_t cols, int64_t n_tokens) {
  return chunks_of(cols) * kChunkBytes * n_tokens;
}

#ifdef M2FP4_INT8_GEMV_X86

bool cpu_supported() {
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("avx512vbmi");
  return supported;
}

namespace {

// q[c] for one block of up to 32 columns at x (n valid), into q32 (32 bytes), returning d.
M2FP4_VNNI float quantize_block(const float* x, int64_t n, int8_t* q32) {
  const uint32_t valid = n >= 32 ? 0xFFFFFFFFu : (1u << n) - 1u;
  const __mmask16 m0 = static_cast<__mmask16>(valid), m1 = static_cast<__mmask16>(valid >> 16);
  const __m512 v0 = _mm512_maskz_loadu_ps(m0, x);
  const __m512 v1 = _mm512_maskz_loadu_ps(m1, x + 16);
  const bool has_nan =
      (_mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q)) != 0;
  const float amax =
      has_nan ? std::numeric_limits<float>::quiet_NaN()
              : _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.0f;
  if (!std::isfinite(d) || d == 0.0f) {
    std::memset(q32, 0, 32);
    return d;
  }
  const __m512 divisor = _mm512_set1_ps(d);
  // Round to nearest even (the default MXCSR mode), as std::nearbyint in the scalar twin.
  const __m512i i0 = _mm512_cvtps_epi32(_mm512_div_ps(v0, divisor));
  const __m512i i1 = _mm512_cvtps_epi32(_mm512_div_ps(v1, divisor));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q32), _mm512_cvtsepi32_epi8(i0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q32 + 16), _mm512_cvtsepi32_epi8(i1));
  return d;
}

M2FP4_VNNI void quantize_token(const float* x, int64_t cols, int32_t bias, uint8_t* out) {
  const __m512i to_even = _mm512_load_si512(kEvenColumns.v);
  const __m512i to_odd = _mm512_load_si512(kOddColumns.v);
  // Lane j holds columns 8j .. 8j+7 of the chunk: activation block 8j / 32 = j / 4.
  const __m512i block_of_lane =
      _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i minus_bias = _mm512_set1_epi32(-bias);
  for (int64_t k = 0; k < chunks_of(cols); ++k) {
    const int64_t c0 = k * kChunkColumns;
    // x is usually another op's fresh output, partly in the other core's cache: ask for the
    // chunk after next early (prefetches never fault; past the row they run into the next token).
    for (int i = 0; i < 8; ++i)
      _mm_prefetch(reinterpret_cast<const char*>(x + c0 + 256 + 16 * i), _MM_HINT_T0);
    alignas(64) int8_t q[kChunkColumns];
    alignas(64) float d[16] = {};
    for (int b = 0; b < 4; ++b) {
      const int64_t cb = c0 + 32 * b;
      if (cb < cols) {
        d[b] = quantize_block(x + cb, std::min<int64_t>(32, cols - cb), q + 32 * b);
      } else {
        std::memset(q + 32 * b, 0, 32);
      }
    }
    const __m512i low = _mm512_load_si512(q), high = _mm512_load_si512(q + 64);
    const __m512i even = _mm512_permutex2var_epi8(low, to_even, high);
    const __m512i odd = _mm512_permutex2var_epi8(low, to_odd, high);
    const __m512i sums =
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, even), ones, odd);
    uint8_t* o = out + k * kChunkBytes;
    _mm512_storeu_si512(o, even);
    _mm512_storeu_si512(o + 64, odd);
    _mm512_storeu_si512(o + 128, _mm512_mullo_epi32(sums, minus_bias));
    _mm512_storeu_ps(o + 192, _mm512_permutexvar_ps(block_of_lane, _mm512_load_ps(d)));
  }
}

// What every tile of one weight shares.
struct Context {
  __m512i table;   // code value + bias, the 16 values repeated 4 times
  __m512i spread;  // lane j -> group 8j / group_size within the chunk
  int64_t cols, groups_per_chunk, row_bytes, n_chunks, token_bytes;
  const uint8_t* codes_end;  // prefetches stay inside the weight
  int64_t prefetch_distance;
  float k;  // 1/2 for E2M1 values x 2
};

// y[t * y_stride + r] for R rows and TB tokens.
template <int R, int TB>
M2FP4_VNNI void tile(const Context& ctx, const uint8_t* const* rows, const float* const* mult,
                     const uint8_t* xq, float* y, int64_t y_stride) {
  __m512 acc[R][TB];
  HWY_UNROLL(4)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(4)
    for (int t = 0; t < TB; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < ctx.n_chunks; ++k) {
    const int64_t byte0 = k * (kChunkColumns / 2);
    const int64_t n_bytes = std::min<int64_t>(64, ctx.row_bytes - byte0);
    const __mmask64 valid = n_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << n_bytes) - 1;
    __m512i low[R], high[R];
    __m512 scale[R];
    const int64_t ahead = byte0 + ctx.prefetch_distance;
    const int64_t prefetch_offset =
        ahead < ctx.row_bytes ? ahead : ahead + (kTileRows - 1) * ctx.row_bytes;
    HWY_UNROLL(4)
    for (int r = 0; r < R; ++r) {
      if (rows[r] + prefetch_offset < ctx.codes_end) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + prefetch_offset), _MM_HINT_T0);
      }
      const __m512i codes = n_bytes >= 64 ? _mm512_loadu_si512(rows[r] + byte0)
                                          : _mm512_maskz_loadu_epi8(valid, rows[r] + byte0);
      low[r] = _mm512_permutexvar_epi8(codes, ctx.table);
      high[r] = _mm512_permutexvar_epi8(_mm512_srli_epi16(codes, 4), ctx.table);
      scale[r] =
          _mm512_permutexvar_ps(ctx.spread, _mm512_loadu_ps(mult[r] + k * ctx.groups_per_chunk));
    }
    HWY_UNROLL(4)
    for (int t = 0; t < TB; ++t) {
      const uint8_t* xk = xq + t * ctx.token_bytes + k * kChunkBytes;
      const __m512i even = _mm512_loadu_si512(xk), odd = _mm512_loadu_si512(xk + 64);
      const __m512i start = _mm512_loadu_si512(xk + 128);
      const __m512 x_scale = _mm512_loadu_ps(xk + 192);
      HWY_UNROLL(4)
      for (int r = 0; r < R; ++r) {
        const __m512i dot =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, low[r], even), high[r], odd);
        acc[r][t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale[r], x_scale), acc[r][t]);
      }
    }
  }
  HWY_UNROLL(4)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(4)
    for (int t = 0; t < TB; ++t) y[t * y_stride + r] = _mm512_reduce_add_ps(acc[r][t]) * ctx.k;
  }
}

template <int R>
M2FP4_VNNI void rows_all_tokens(const Context& ctx, const uint8_t* const* rows,
                                const float* const* mult, const uint8_t* xq, int64_t n_tokens,
                                float* y, int64_t y_stride) {
  int64_t t = 0;
  if constexpr (R % 2 == 0) {
    // 4 tokens on 2 rows at a time: each row's codes are decoded once for all 4 (4 rows x 4
    // tokens would not fit the 32 registers). Every (row, token) sum takes the same steps in any
    // tile shape, so results do not depend on it.
    for (; t + 4 <= n_tokens; t += 4) {
      for (int r = 0; r < R; r += 2) {
        tile<2, 4>(ctx, rows + r, mult + r, xq + t * ctx.token_bytes, y + t * y_stride + r,
                   y_stride);
      }
    }
  }
  for (; t + 2 <= n_tokens; t += 2) {
    tile<R, 2>(ctx, rows, mult, xq + t * ctx.token_bytes, y + t * y_stride, y_stride);
  }
  if (t < n_tokens)
    tile<R, 1>(ctx, rows, mult, xq + t * ctx.token_bytes, y + t * y_stride, y_stride);
}

M2FP4_VNNI Context make_context(const Weight& w) {
  Context ctx;
  const bool e2m1 = is_e2m1(w.format);
  ctx.table = _mm512_load_si512(e2m1 ? kE2m1Table.v : kIq4nlTable.v);
  // Lane j -> group 8j / group_size (a power of two: weight_supported()).
  const int shift = w.group_size == 8 ? 0 : w.group_size == 16 ? 1 : 2;
  ctx.spread =
      _mm512_srl_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                       _mm_cvtsi32_si128(shift));
  ctx.cols = w.cols;
  ctx.groups_per_chunk = kChunkColumns / w.group_size;
  ctx.row_bytes = w.cols / 2;
  ctx.codes_end = static_cast<const uint8_t*>(w.data) + w.rows * ctx.row_bytes;
  ctx.prefetch_distance = std::min(kPrefetchBytes, ctx.row_bytes);
  ctx.n_chunks = chunks_of(w.cols);
  ctx.token_bytes = ctx.n_chunks * kChunkBytes;
  ctx.k = e2m1 ? 0.5f : 1.0f;
  return ctx;
}

}  // namespace

void quantize(const Weight& w, const float* x, int64_t n_tokens, uint8_t* out) {
  const int32_t bias = code_bias(w.format);
  const int64_t token_bytes = chunks_of(w.cols) * kChunkBytes;
  for (int64_t t = 0; t < n_tokens; ++t) {
    quantize_token(x + t * w.cols, w.cols, bias, out + t * token_bytes);
  }
}

void dot_rows(const Weight& w, int n_rows, const uint8_t* const* rows, const float* const* mult,
              const uint8_t* xq, int64_t n_tokens, float* y, int64_t y_stride) {
  const Context ctx = make_context(w);
  switch (n_rows) {
    case 1:
      return rows_all_tokens<1>(ctx, rows, mult, xq, n_tokens, y, y_stride);
    case 2:
      return rows_all_tokens<2>(ctx, rows, mult, xq, n_tokens, y, y_stride);
    case 3:
      return rows_all_tokens<3>(ctx, rows, mult, xq, n_tokens, y, y_stride);
    case 4:
      return rows_all_tokens<4>(ctx, rows, mult, xq, n_tokens, y, y_stride);
    default:
      fail("int8_gemv::dot_rows: ", n_rows, " rows (1..4)");
  }
}

#else  // no x86: the f32 kernels run instead

bool cpu_supported() {
  return false;
}
void quantize(const Weight&, const float*, int64_t, uint8_t*) {
  fail("int8_gemv::quantize: not built for this CPU");
}
void dot_rows(const Weight&, int, const uint8_t* const*, const float* const*, const uint8_t*,
              int64_t, float*, int64_t) {
  fail("int8_gemv::dot_rows: not built for this CPU");
}

#endif

}  // namespace m2fp4::int8_gemv
