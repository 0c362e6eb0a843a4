// 4-bit matmul with int8 activations (decode GEMV and prefill GEMM of NVFP4, MXFP4, IQ4_NL x16).
//
// Accuracy decision, as llama.cpp makes it for Q4_0 / MXFP4 / IQ4_NL: each token's activation
// row is rounded to int8 per block of 32 columns (scale d = amax / 127, q = round-to-nearest-even
// of x / d, so |x - q d| <= d / 2), the 4-bit codes become small integers (E2M1 values x 2:
// 0, +-1, +-2, +-3, +-4, +-6, +-8, +-12; IQ4_NL levels as they are), and each weight group's
// dot product is an exact int32 sum, scaled once by (group multiplier * d) in f32. With
// FourBitActivations::kF32 the 4-bit kernels keep f32 activations (every product exact in f32).
//
// The fast kernel (AVX-512 VNNI + VBMI: vpermb code lookup, vpdpbusd dot products) runs only on
// CPUs that have both and on the AVX-512 dispatch target; other CPUs and targets take the f32
// kernels whatever the setting. scalar::matmul_four_bit_int8 is its plain twin.
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace m2fp4 {

enum class FourBitActivations : uint8_t {
  kF32,   // f32 activations (exact products): the scalar::matmul numerics
  kInt8,  // activations rounded to int8 per block of 32 (decode GEMV and prefill GEMM alike)
};

// Process-wide setting read by every matmul call. The default is kInt8, or what the environment
// variable M2FP4_W4_ACTIVATIONS (f32 | int8) says; the CLI's --w4-activations overrides it.
void set_four_bit_activations(FourBitActivations mode);
FourBitActivations four_bit_activations();
// Parses "f32" / "int8" (throws m2fp4::Error otherwise).
FourBitActivations parse_four_bit_activations(const char* name);

// Columns per activation block (one int8 scale each).
constexpr int64_t kInt8ActivationBlock = 32;

namespace int8_gemv {

// Whether this CPU has the instructions of the fast kernel (AVX-512 F/BW/VNNI/VBMI).
bool cpu_supported();

// Whether the weight's layout fits the kernel: a 4-bit format whose group size is a multiple of 8
// (each 32-bit lane of the dot products, 8 columns, in one group) dividing the activation block.
bool weight_supported(const Weight& w);

// Bytes of quantized activations for n_tokens tokens of `cols` columns (quantize()'s output).
int64_t activation_bytes(int64_t cols, int64_t n_tokens);

// Quantizes n_tokens rows of x (cols floats each) for weights of w's format into out
// (activation_bytes(w.cols, n_tokens), 64-byte aligned). Needs cpu_supported().
void quantize(const Weight& w, const float* x, int64_t n_tokens, uint8_t* out);

// y[t * y_stride + r] = row r of the n_rows (1..4) rows `rows` dotted with token t, for all
// n_tokens quantized tokens xq. mult[r]: the row's group multipliers (all finite), readable and
// finite for 16 floats past the last group. Needs cpu_supported().
void dot_rows(const Weight& w, int n_rows, const uint8_t* const* rows, const float* const* mult,
              const uint8_t* xq, int64_t n_tokens, float* y, int64_t y_stride);

// The decode kernel (matmul4_int8_decode.cc): few tokens, scales decoded in registers, same
// bits as dot_rows for every (row, token). Takes NVFP4 (group 16, |global_scale| < 256), MXFP4
// (group 32) and IQ4_NL x16 (group 16) weights that weight_supported().
bool decode_supported(const Weight& w);
// Rows per tile of decode_rows.
constexpr int64_t kDecodeTileRows = 4;
// y[t * y_stride + r] for rows r in [row_begin, row_end) of w and the n_tokens quantized tokens
// xq, tile by tile (kDecodeTileRows rows from row_begin on). Stops at the first tile with a group
// scale that is not finite and returns its first row, for the
// caller to compute that tile another way; returns row_end when done. Needs cpu_supported()
// and decode_supported(w).
int64_t decode_rows(const Weight& w, int64_t row_begin, int64_t row_end, const uint8_t* xq,
                    int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace int8_gemv

namespace scalar {

// Rounds x (cols floats) to int8 per block of kInt8ActivationBlock: d[b] = amax_b / 127 (0 and
// q = 0 for an all-zero block, or where d rounds to 0; NaN and q = 0 where amax is not finite),
// q[c] = round-to-nearest-even(x[c] / d[b]).
void quantize_activations_int8(const float* x, int64_t cols, int8_t* q, float* d);

// The int8-activation matmul, one thread, as the fast kernel defines it: per token, quantize x;
// per row and group g, dot_g = sum of (integer code value * q) over the group in int32, then
// y = k * sum_g f32(dot_g) * (m_g * d_b(g)) summed in f32 over groups in order, with k = 1/2 for
// E2M1 codes (values x 2) and 1 for IQ4_NL. Rows with a non-finite group multiplier are computed
// as scalar::matmul computes them (f32 activations), so NaN and infinite scales act as there.
void matmul_four_bit_int8(const Weight& w, const float* x, int64_t n_tokens, float* y);

}  // namespace scalar

}  // namespace m2fp4
