// Per-target (Highway) driver of the int8-activation 4-bit prefill GEMM (matmul4_int8_gemm.h):
// token blocks that stay in L2, tiles of rows whose group multipliers it decodes (as the GEMV
// driver of matmul4_int8-inl.cc does) and hands to int8_gemv::gemm_rows. Included by
// matmul-inl.cc after matmul4_int8-inl.cc; not compiled on its own.

#if defined(M2FP4_KERNELS_CPU_MATMUL4_INT8_GEMM_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL4_INT8_GEMM_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL4_INT8_GEMM_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL4_INT8_GEMM_INL_CC_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul4_int8_gemm.h"
#include "kernels/cpu/scratch.h"
#include "kernels/weight.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {

namespace four_bit_int8 {

// From this many tokens on the GEMM (its rows unpacked once per token block pay off over the
// GEMV tiles, which decode every row's codes per 4 tokens and sum each accumulator alone); fewer
// take gemv_rows (up to 8 tokens the decode kernel). The wide preset's experts see ~16 tokens
// each at pp64, many of them 9-11.
constexpr int64_t kMinGemmTokens = 9;

// Rows [row_begin, row_end) for n_tokens >= 4 tokens (x: f32, xq: the same quantized): token
// blocks of kTokenBlockBytes, in each, tiles of gemm_tile_rows() rows unpacked once for all the
// block's tokens. A tile with a multiplier that is not finite, and the last rows short of 4,
// go through rows_for_tokens (the GEMV tiles, the same bits for finite rows).
inline void gemm_rows(const Weight& w, const float* x, const uint8_t* xq, int64_t n_tokens,
                      int64_t row_begin, int64_t row_end, float* y) {
  const int64_t groups = w.cols / w.group_size;
  const int64_t tile_rows = int8_gemv::gemm_tile_rows(w);
  const int64_t token_bytes = int8_gemv::activation_bytes(w.cols, 1);
  const int64_t block = std::max<int64_t>(4, kTokenBlockBytes / token_bytes / 4 * 4);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += block) {
    const int64_t nt = std::min(block, n_tokens - t0);
    const float* xb = x + t0 * w.cols;
    const uint8_t* xqb = xq + t0 * token_bytes;
    float* yb = y + t0 * w.rows;
    int64_t r0 = row_begin;
    for (; r0 + 4 <= row_end; r0 += tile_rows) {
      const int64_t n = std::min(tile_rows, (row_end - r0) / 4 * 4);
      float* mult = thread_scratch(1, static_cast<size_t>(n * groups + 64));
      // The next tile's scale bytes (IQ4_NL x16: f16 pairs) on their way while this tile runs:
      // cold, they would stall the decode below on memory every tile.
      const int64_t scale_bytes = w.format == WeightFormat::kIq4nl16 ? 2 : 1;
      const int64_t next_rows = std::min(n, row_end - r0 - n);
      for (int64_t b = 0; b < next_rows * groups * scale_bytes; b += 64) {
        hwy::Prefetch(w.group_scale + (r0 + n) * groups * scale_bytes + b);
      }
      bool finite = decode_finite_scales(w, r0, n * groups, mult);
      if (!finite) {
        four_bit::decode_group_scales(w, r0, 0, n * groups, mult);
        finite = four_bit::all_finite(mult, n * groups);
      }
      if (finite) {
        std::memset(mult + n * groups, 0, 16 * sizeof(float));
        int8_gemv::gemm_rows(w, r0, n, mult, xqb, nt, yb + r0, w.rows);
      } else {
        rows_for_tokens(w, xb, xqb, nt, r0, r0 + n, yb);
      }
      if (n < tile_rows) {
        r0 += n;
        break;
      }
    }
    if (r0 < row_end) rows_for_tokens(w, xb, xqb, nt, r0, row_end, yb);
  }
}

// The int8 4-bit rows of a matmul job: the GEMM from kMinGemmTokens tokens, else the GEMV.
inline void matmul_rows(const Weight& w, const float* x, const uint8_t* xq, int64_t n_tokens,
                        int64_t row_begin, int64_t row_end, float* y) {
  if (n_tokens >= kMinGemmTokens) {
    gemm_rows(w, x, xq, n_tokens, row_begin, row_end, y);
  } else {
    gemv_rows(w, x, xq, n_tokens, row_begin, row_end, y);
  }
}

}  // namespace four_bit_int8

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
