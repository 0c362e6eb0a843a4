// vdpbf16ps's arithmetic on f32 FMAs, shared by the 2-8 token GEMVs of the BF16 and the FP8
// kernels (matmul_bf16dot.cc, matmul_fp8dot.cc; internal to them, x86 with AVX-512 only).
//
// vdpbf16ps adds to each f32 lane the exact products of its two bf16 pairs, the odd one first,
// rounding to nearest even after each and reading subnormal inputs and results as zero. Two
// FMAs (odd columns, then even) with MXCSR's DAZ and FTZ set give the same bits (checked against
// the instruction on 3.2 M random lanes, subnormals included, and in the kernels' tests), at
// twice the multiply-adds per cycle on the hosts measured: vdpbf16ps retires one every two
// cycles there, the FMA two per cycle. Once a weight vector feeds several tokens, widening it
// to f32 (a shift and an and) costs less than the dot products it saves.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "hwy/base.h"  // HWY_UNROLL

#define M2FP4_BF16_PAIR_FMA __attribute__((target("avx512f,avx512bw")))

namespace m2fp4::bf16_pair_fma {

// The odd (high half of each 32-bit lane) and even (low half) bf16 values of v as f32.
M2FP4_BF16_PAIR_FMA inline __m512 odd_columns(__m512i v) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(v, _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u))));
}
M2FP4_BF16_PAIR_FMA inline __m512 even_columns(__m512i v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

// The columns [c0, c1) of rows of cols that a tile covers in one pass, and whether its
// accumulators start at zero (first block) or end reduced (last block).
struct ColumnBlock {
  int64_t c0, c1, cols;
  bool first, last;  // c0 == 0, c1 == cols
};

// vdpbf16ps(acc, w, x) from the widened halves of w and x.
M2FP4_BF16_PAIR_FMA inline __m512 dot_pairs(__m512 acc, __m512 w_odd, __m512 w_even, __m512 x_odd,
                                            __m512 x_even) {
  return _mm512_fmadd_ps(w_even, x_even, _mm512_fmadd_ps(w_odd, x_odd, acc));
}

// n bf16 values (a multiple of 32, 64-byte aligned out) widened per 32: the 16 odd ones, then
// the 16 even ones, so a step's two vectors load as they are.
M2FP4_BF16_PAIR_FMA inline void widen(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 32) {
    const __m512i v = _mm512_loadu_si512(in + i);
    _mm512_store_ps(out + i, odd_columns(v));
    _mm512_store_ps(out + i + 16, even_columns(v));
  }
}

// A tile's R x TB accumulators at the end of a column block: reduced into
// y[t * y_stride + r] after the last block (as the vdpbf16ps tiles reduce theirs), else parked
// in acc_mem for the next block.
template <int R, int TB>
M2FP4_BF16_PAIR_FMA inline void finish_block(__m512 (&acc)[R][TB], bool last, __m512* acc_mem,
                                             float* y, int64_t y_stride) {
  // Unrolled, as the tiles' loops, so the accumulators stay in registers.
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      if (last) {
        y[t * y_stride + r] = _mm512_reduce_add_ps(acc[r][t]);
      } else {
        acc_mem[r * TB + t] = acc[r][t];
      }
    }
  }
}

// DAZ (MXCSR bit 6) and FTZ (bit 15) for a scope on this thread, as vdpbf16ps treats
// subnormals; the previous MXCSR comes back at the end. Only around the dot products: whatever
// prepares their inputs must see subnormals as they are.
class ScopedSubnormalsAsZero {
 public:
  ScopedSubnormalsAsZero() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~ScopedSubnormalsAsZero() { _mm_setcsr(saved_); }
  ScopedSubnormalsAsZero(const ScopedSubnormalsAsZero&) = delete;
  ScopedSubnormalsAsZero& operator=(const ScopedSubnormalsAsZero&) = delete;

 private:
  unsigned saved_;
};

}  // namespace m2fp4::bf16_pair_fma
