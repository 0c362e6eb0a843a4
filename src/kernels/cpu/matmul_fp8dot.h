// FP8 (E4M3, one f32 scale per 128 x 128 block) weights with activations rounded to bf16, on CPUs
// with AVX512_BF16 and AVX512_VBMI: the GEMV (decode and small batches, fewer tokens than the GEMM
// threshold) with vdpbf16ps. Taken with Bf16Activations::kBf16 (matmul_bf16dot.h, the default);
// kF32 keeps the f32 kernels (every E4M3 code times its block scale rounded to f32 once, times the
// f32 activation).
//
// Numerics. Every E4M3 value is exact in bf16 (4 significant bits, exponents 2^-9 .. 2^8), and as
// a *normal* bf16 number, subnormal codes included (m * 2^-9 is normal in bf16's 8-bit exponent),
// so vdpbf16ps, which reads bf16 subnormals as zero, sees every weight as it is. The block scale
// s is folded into the activation: for row r and column c the kernel multiplies the code's value
// by xs = bf16(x[c] * s[r / 128][c / 128]) (the f32 product, then round-to-nearest-even to bf16;
// a product below 2^-126 in magnitude counts as a zero of its sign, as vcvtne2ps2bf16 makes it).
// Each product e4m3 * xs is exact in f32 (4 x 8 significant bits) and the products are summed in
// f32, so |result - sum of w x| <= (2^-8 + 2^-23) sum |w x| plus the f32 summation error: the
// same 8-significant-bit activation rounding as the BF16 kernel (matmul_bf16dot.h).
//
// Each thread rounds the scaled activations of all the call's tokens once per 128-row block it
// runs (tokens x cols bf16, in L2), then streams each weight row once for all tokens: a tile of R
// rows is decoded from memory once and dotted with every token (groups of up to 8 tokens in
// registers, the tile's codes back from L1 for further groups).
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace m2fp4 {

namespace fp8dot {

// Whether this CPU has the instructions of the kernel (AVX-512 F/BW/VL/BF16/VBMI).
bool cpu_supported();

// Whether the kernel beats the f32 GEMV for n_tokens tokens of cols columns: up to 8 tokens
// (decode steps; 2-8 run f32 FMAs over column blocks that keep the tokens in L1: the wide
// preset's 200064 x 3072 lm_head at 4 / 8 tokens takes 36 / 53-55 ms against the f32 GEMV's
// 59-61 / 99-101 on 2 threads, m2fp4 bench --profile), or while the tokens' scaled rows fit in
// 16 KiB of L1 (n_tokens x cols <= 8192).
bool takes(int64_t cols, int64_t n_tokens);

// y[t * w.rows + r] for rows [row_begin, row_end) of the kFp8Block128 weight w and all n_tokens
// rows of x (n_tokens x w.cols floats). Uses this thread's matmul scratch (thread_scratch slot
// 1). Needs cpu_supported().
void matmul_rows(const Weight& w, const float* x, int64_t n_tokens, int64_t row_begin,
                 int64_t row_end, float* y);

}  // namespace fp8dot

namespace scalar {

// The bf16-activation matmul of a kFp8Block128 weight, one thread, as the fast kernel defines it:
// xs = bf16(x * block scale) (zero below 2^-126), times the E4M3 value, summed in f32 over the
// columns in order.
void matmul_fp8_bf16_activations(const Weight& w, const float* x, int64_t n_tokens, float* y);

}  // namespace scalar

}  // namespace m2fp4
