// The prefill GEMM of the int8-activation 4-bit matmul (matmul4_int8.h): many tokens against
// tiles of rows unpacked once per token block (matmul4_int8_gemm.cc). Same bits per (row, token)
// as int8_gemv::dot_rows.
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace m2fp4::int8_gemv {

// Rows per call of gemm_rows at most (a multiple of 4): the unpacked rows stay in L1.
int64_t gemm_tile_rows(const Weight& w);

// y[t * y_stride + i] = row r0 + i of w (i < n_rows: a multiple of 4, at most gemm_tile_rows(w))
// dotted with quantized token t of xq (int8_gemv::quantize), t < n_tokens. mult: the rows' group
// multipliers back to back (n_rows * groups, all finite), readable and finite for 16 floats past
// the end. Needs cpu_supported() and weight_supported(w).
void gemm_rows(const Weight& w, int64_t r0, int64_t n_rows, const float* mult, const uint8_t* xq,
               int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace m2fp4::int8_gemv
