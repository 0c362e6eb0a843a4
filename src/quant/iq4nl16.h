// The "mxfp4_16" variant (quant-formats.md §3.4, reconstructed): IQ4_NL codebook levels (§3.3)
// in blocks of 16 along the row, one signed fp16 scale per block, x = d * level[code]. Scales are
// chosen with llama.cpp's quantize_row_iq4_nl_impl search (ntry = 7) as §3.3 describes it.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/matrix.h"

namespace m2fp4 {

inline constexpr int64_t kIq4nl16Block = 16;

struct Iq4nl16Options {
  // Optional per-input-column importance (imatrix), length cols: weights become
  // importance_j * sqrt(sigma2 + x_j^2) with sigma2 = 2 * sum(x^2) / 16 over the block;
  // otherwise w_j = x_j^2.
  const float* importance = nullptr;
  // Search half-width: tries t = -ntry..ntry after the first least-squares pass (>= 0).
  int ntry = 7;
  // §3.3 takes codes as nearest(x / d); llama.cpp itself multiplies by id = 1/d, which differs
  // in rare near-ties. true reproduces llama.cpp.
  bool multiply_by_reciprocal = false;
  // Quantize 16 blocks at a time with the SIMD search where the CPU has it (bit-identical);
  // false runs the scalar twin on every block (tests compare the two).
  bool allow_simd = true;
};

struct Iq4nl16Tensor {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> packed;   // [rows, cols/2], even index in the low nibble
  std::vector<uint16_t> scales;  // [rows, cols/16] IEEE fp16 bits, signed
};

// One block of 16: writes the 16 codes and returns the float32 scale d (fp16(d) is stored).
float iq4nl16_quantize_block(const float* x, const float* importance, const Iq4nl16Options& options,
                             uint8_t* codes);

Iq4nl16Tensor iq4nl16_quantize(const ConstMatrix& w, const Iq4nl16Options& options = {});
// The same into caller storage: packed [rows, cols/2] and scales [rows, cols/16] as in
// Iq4nl16Tensor (the export encodes straight into its output buffer, without a copy).
void iq4nl16_quantize_into(const ConstMatrix& w, const Iq4nl16Options& options, uint8_t* packed,
                           uint16_t* scales);

// x = f16(d) * level[code], float32 [rows, cols].
std::vector<float> iq4nl16_dequantize(const Iq4nl16Tensor& tensor);

}  // namespace m2fp4
