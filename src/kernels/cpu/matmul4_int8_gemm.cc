// AVX-512 VNNI/VBMI prefill GEMM of the int8-activation 4-bit matmul (matmul4_int8.h,
// int8_gemv::gemm_rows), beside the GEMV of matmul4_int8.cc whose layout it shares: 128-column
// chunks, codes looked up by vpermb into code value + bias bytes (even columns from the low
// nibbles, odd from the high ones), quantized tokens of 256 bytes per chunk (even int8, odd int8,
// 16 int32 -bias * lane sums, 16 f32 lane scales).
//
// Same arithmetic per (row, token) as the GEMV tiles, so a token's result is the same bits alone
// or in a batch: lane j of chunk k adds f32(exact int32 dot of columns 8j .. 8j+7) * (group
// multiplier * activation scale) into an f32 accumulator by one FMA, chunks in order, and the 16
// lanes are summed in _mm512_reduce_add_ps's tree ((j + 8) then (j + 4), (j + 2), (j + 1)), times
// 1/2 for E2M1.
//
// What differs is the work around it. The GEMV decodes each row's codes per 4 tokens and sums
// each accumulator on its own. Here a tile of rows is unpacked once per token block into a small
// buffer (code bytes and lane multipliers per chunk, ~200 bytes per row and chunk, L1-resident),
// then every 4 tokens run against 4 rows at a time (16 accumulators, the unpacked codes loaded
// rather than looked up, the 4 tokens' activations meeting every row of the tile while they are
// in L1), and the 16 sums of a 4 x 4 tile come out of one transposed reduction tree (45
// shuffles and adds instead of 16 x 8) as 4 rows per token, stored 16 bytes at a time.
#include "kernels/cpu/matmul4_int8_gemm.h"

#include <algorithm>
#include <cstdint>

#include "base/error.h"
#include "hwy/base.h"  // HWY_UNROLL
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul4_int8_layout.h"
#include "kernels/cpu/scratch.h"

#if defined(__x86_64__) || defined(__i386__)
#if !defined(__clang__)  // GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_INT8_GEMM_X86 1
#define M2FP4_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#endif

namespace m2fp4::int8_gemv {

namespace {

constexpr int kQuadRows = 4;  // rows per register tile
// Unpacked vectors per row quad and chunk: 4 x (even, odd) code bytes, 4 lane multipliers.
constexpr int64_t kQuadVectors = 3 * kQuadRows;
// Budget of the unpacked rows of one call (they are read once per 4 tokens, from L1).
constexpr int64_t kUnpackedBytes = 24 << 10;

}  // namespace

int64_t gemm_tile_rows(const Weight& w) {
  const int64_t quad_bytes = chunks_of(w.cols) * kQuadVectors * 64;
  return kQuadRows * std::max<int64_t>(1, kUnpackedBytes / quad_bytes);
}

#ifdef M2FP4_INT8_GEMM_X86

namespace {

struct GemmContext {
  int64_t n_chunks, row_bytes, groups, groups_per_chunk, token_bytes;
  float k;  // 1/2 for E2M1 values x 2
};

// Rows [0, 4 * n_quads) from `codes` (rows back to back) and their multipliers `mult` (back to
// back, readable for 16 floats past the end) into out: per quad and chunk, the 4 rows' even and
// odd code bytes, then their 4 lane multiplier vectors, as the GEMV tile forms them.
M2FP4_VNNI void unpack_rows(const Weight& w, const GemmContext& ctx, const uint8_t* codes,
                            const float* mult, int64_t n_quads, __m512i* out) {
  const __m512i table = _mm512_load_si512(is_e2m1(w.format) ? kE2m1Table.v : kIq4nlTable.v);
  // Lane j -> group 8j / group_size (a power of two: weight_supported()).
  const int shift = w.group_size == 8 ? 0 : w.group_size == 16 ? 1 : 2;
  const __m512i spread =
      _mm512_srl_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                       _mm_cvtsi32_si128(shift));
  for (int64_t q = 0; q < n_quads; ++q) {
    for (int64_t k = 0; k < ctx.n_chunks; ++k) {
      const int64_t byte0 = k * (kChunkColumns / 2);
      const int64_t n_bytes = std::min<int64_t>(64, ctx.row_bytes - byte0);
      const __mmask64 valid = n_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << n_bytes) - 1;
      __m512i* o = out + (q * ctx.n_chunks + k) * kQuadVectors;
      for (int r = 0; r < kQuadRows; ++r) {
        const int64_t row = q * kQuadRows + r;
        const uint8_t* p = codes + row * ctx.row_bytes + byte0;
        const __m512i c = n_bytes >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(valid, p);
        _mm512_store_si512(o + 2 * r, _mm512_permutexvar_epi8(c, table));
        _mm512_store_si512(o + 2 * r + 1, _mm512_permutexvar_epi8(_mm512_srli_epi16(c, 4), table));
        const float* m = mult + row * ctx.groups + k * ctx.groups_per_chunk;
        _mm512_store_ps(o + 2 * kQuadRows + r, _mm512_permutexvar_ps(spread, _mm512_loadu_ps(m)));
      }
    }
  }
}

// The 16 sums of acc[r][t] = a[4r + t], each in _mm512_reduce_add_ps's tree, as one vector whose
// 128-bit lane t holds rows 0..3 of token t. Level by level: lanes j + (j + 8), then quarters
// (j + 4), then (j + 2) and (j + 1) within quarters; each level pairs two vectors so that one
// shuffle pair and one add serve both.
M2FP4_VNNI __m512 transposed_sums(const __m512 (&a)[16]) {
  __m512 l1[8], l2[4], l3[2];
  HWY_UNROLL(8)
  for (int p = 0; p < 8; ++p) {  // [a.lo256 + a.hi256, b.lo256 + b.hi256]
    const __m512 x = _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 y = _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2));
    l1[p] = _mm512_add_ps(x, y);
  }
  HWY_UNROLL(4)
  for (int p = 0; p < 4; ++p) {  // quarter i: vector 4p + i, lanes j + (j + 4)
    const __m512 x = _mm512_shuffle_f32x4(l1[2 * p], l1[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 y = _mm512_shuffle_f32x4(l1[2 * p], l1[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1));
    l2[p] = _mm512_add_ps(x, y);
  }
  HWY_UNROLL(2)
  for (int p = 0; p < 2; ++p) {  // quarter L: (j + 2) of vectors 8p + L and 8p + 4 + L
    const __m512 x = _mm512_shuffle_ps(l2[2 * p], l2[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 y = _mm512_shuffle_ps(l2[2 * p], l2[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2));
    l3[p] = _mm512_add_ps(x, y);
  }
  // Quarter L, element e: (j + 1) of vector 4e + L.
  const __m512 x = _mm512_shuffle_ps(l3[0], l3[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 y = _mm512_shuffle_ps(l3[0], l3[1], _MM_SHUFFLE(3, 1, 3, 1));
  return _mm512_add_ps(x, y);
}

// Lines of the next row tile's codes still to prefetch: one per chunk step of the tiles, so the
// requests spread over this tile's arithmetic (a burst of them would queue behind each other and
// the next unpack would still wait on memory).
struct PrefetchCursor {
  const uint8_t* next;
  const uint8_t* end;
};

// y[t * y_stride + r] for the 4 unpacked rows of `quad` and T (1..4) tokens from xq.
template <int T>
M2FP4_VNNI void quad_tile(const GemmContext& ctx, const __m512i* quad, const uint8_t* xq, float* y,
                          int64_t y_stride, PrefetchCursor& prefetch) {
  __m512 acc[kQuadRows][T];
  HWY_UNROLL(4)
  for (int r = 0; r < kQuadRows; ++r) {
    HWY_UNROLL(4)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < ctx.n_chunks; ++k) {
    if (prefetch.next < prefetch.end) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch.next), _MM_HINT_T1);
      prefetch.next += 64;
    }
    const __m512i* u = quad + k * kQuadVectors;
    const float* scale = reinterpret_cast<const float*>(u + 2 * kQuadRows);
    __m512i even_codes[kQuadRows], odd_codes[kQuadRows];
    HWY_UNROLL(4)
    for (int r = 0; r < kQuadRows; ++r) {
      even_codes[r] = _mm512_load_si512(u + 2 * r);
      odd_codes[r] = _mm512_load_si512(u + 2 * r + 1);
    }
    HWY_UNROLL(4)
    for (int t = 0; t < T; ++t) {
      const uint8_t* xk = xq + t * ctx.token_bytes + k * kChunkBytes;
      const __m512i even = _mm512_loadu_si512(xk), odd = _mm512_loadu_si512(xk + 64);
      const __m512 x_scale = _mm512_loadu_ps(xk + 192);
      HWY_UNROLL(4)
      for (int r = 0; r < kQuadRows; ++r) {
        const __m512i start = _mm512_loadu_si512(xk + 128);
        const __m512i dot =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, even_codes[r], even), odd_codes[r], odd);
        acc[r][t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot),
                            _mm512_mul_ps(_mm512_load_ps(scale + 16 * r), x_scale), acc[r][t]);
      }
    }
  }
  if constexpr (T == 4) {
    __m512 a[16];
    HWY_UNROLL(4)
    for (int r = 0; r < kQuadRows; ++r) {
      HWY_UNROLL(4)
      for (int t = 0; t < 4; ++t) a[4 * r + t] = acc[r][t];
    }
    const __m512 sums = _mm512_mul_ps(transposed_sums(a), _mm512_set1_ps(ctx.k));
    _mm_storeu_ps(y, _mm512_castps512_ps128(sums));
    _mm_storeu_ps(y + y_stride, _mm512_extractf32x4_ps(sums, 1));
    _mm_storeu_ps(y + 2 * y_stride, _mm512_extractf32x4_ps(sums, 2));
    _mm_storeu_ps(y + 3 * y_stride, _mm512_extractf32x4_ps(sums, 3));
  } else {
    HWY_UNROLL(4)
    for (int r = 0; r < kQuadRows; ++r) {
      HWY_UNROLL(4)
      for (int t = 0; t < T; ++t) y[t * y_stride + r] = _mm512_reduce_add_ps(acc[r][t]) * ctx.k;
    }
  }
}

}  // namespace

void gemm_rows(const Weight& w, int64_t r0, int64_t n_rows, const float* mult, const uint8_t* xq,
               int64_t n_tokens, float* y, int64_t y_stride) {
  M2_CHECK(n_rows % kQuadRows == 0 && n_rows <= gemm_tile_rows(w), "int8_gemv::gemm_rows: ", n_rows,
           " rows");
  GemmContext ctx;
  ctx.n_chunks = chunks_of(w.cols);
  ctx.row_bytes = w.cols / 2;
  ctx.groups = w.cols / w.group_size;
  ctx.groups_per_chunk = kChunkColumns / w.group_size;
  ctx.token_bytes = ctx.n_chunks * kChunkBytes;
  ctx.k = is_e2m1(w.format) ? 0.5f : 1.0f;
  const int64_t n_quads = n_rows / kQuadRows;
  const int64_t quad_vectors = ctx.n_chunks * kQuadVectors;
  thread_local ScratchFloats buffer;  // reused across calls, one per thread
  __m512i* unpacked =
      reinterpret_cast<__m512i*>(buffer.get(static_cast<size_t>(n_quads * quad_vectors * 16)));
  const uint8_t* codes = static_cast<const uint8_t*>(w.data) + r0 * ctx.row_bytes;
  unpack_rows(w, ctx, codes, mult, n_quads, unpacked);
  // The next tile's codes (a thread's rows are contiguous) into L2 while this one runs; the
  // lines left when the tokens are done go at the end. Prefetches never fault.
  const int64_t next_bytes = std::min(n_rows, w.rows - r0 - n_rows) * ctx.row_bytes;
  PrefetchCursor prefetch{codes + n_rows * ctx.row_bytes,
                          codes + n_rows * ctx.row_bytes + std::max<int64_t>(0, next_bytes)};
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    for (int64_t q = 0; q < n_quads; ++q) {
      quad_tile<4>(ctx, unpacked + q * quad_vectors, xq + t * ctx.token_bytes,
                   y + t * y_stride + q * kQuadRows, y_stride, prefetch);
    }
  }
  const int64_t rest = n_tokens - t;
  for (int64_t q = 0; rest > 0 && q < n_quads; ++q) {
    const __m512i* quad = unpacked + q * quad_vectors;
    const uint8_t* xt = xq + t * ctx.token_bytes;
    float* yt = y + t * y_stride + q * kQuadRows;
    if (rest == 3) quad_tile<3>(ctx, quad, xt, yt, y_stride, prefetch);
    if (rest == 2) quad_tile<2>(ctx, quad, xt, yt, y_stride, prefetch);
    if (rest == 1) quad_tile<1>(ctx, quad, xt, yt, y_stride, prefetch);
  }
  for (; prefetch.next < prefetch.end; prefetch.next += 64)
    _mm_prefetch(reinterpret_cast<const char*>(prefetch.next), _MM_HINT_T1);
}

#else  // no x86: the f32 kernels run instead

void gemm_rows(const Weight&, int64_t, int64_t, const float*, const uint8_t*, int64_t, float*,
               int64_t) {
  fail("int8_gemv::gemm_rows: not built for this CPU");
}

#endif

}  // namespace m2fp4::int8_gemv
