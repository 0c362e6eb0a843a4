// OCP MXFP4 (quant-formats.md §3.1-3.2): blocks of 32 E2M1 elements sharing one E8M0 scale 2^e.
// The producers differ in the exponent rule, the E2M1 tie rule, the sign of zero codes and the
// scale of an all-zero block; each is a selectable rule here.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/matrix.h"

namespace m2fp4 {

inline constexpr int64_t kMxfp4Block = 32;
inline constexpr int64_t kGgmlMxfp4BlockBytes = 17;  // {uint8 e; uint8 qs[16]}

enum class Mxfp4Rule {
  // OCP MX v1.0: e = floor(log2 amax) - 2, RNE, sign = (x < 0); zero block -> byte 0.
  kOcp,
  // llama.cpp quantize_row_mxfp4_ref: OCP exponent (computed exactly here; llama.cpp uses
  // floorf(log2f()), which can differ just below a power of two), ties toward zero, never -0;
  // zero block -> byte 0.
  kLlamaCpp,
  // compressed-tensors generate_mx_scales: amax rounded to a power of two, up when its mantissa
  // is >= 1.75, then -2; RNE, sign = (x < 0); zero block -> byte 127 (scale 1.0).
  kCompressedTensors,
  // modelopt MXFP4QTensor: e = ceil(log2(f32(amax / 6))) (never clips), ties toward zero,
  // sign = (x <= 0) so exact zeros are code 8; zero block -> byte 0.
  kModelopt,
};

// The E8M0 byte for a block whose max |x| is `amax` (finite, >= 0), exponent clamped to
// [-127, 127].
uint8_t mxfp4_scale_code(float amax, Mxfp4Rule rule);

// The E2M1 code of an element already divided by the block scale.
uint8_t mxfp4_element_code(float scaled, Mxfp4Rule rule);

struct Mxfp4Tensor {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> packed;  // [rows, cols/2], even index in the low nibble (CT, gpt-oss)
  std::vector<uint8_t> scales;  // [rows, cols/32] E8M0 bytes
};

// Quantizes W [out, in], in % 32 == 0. Elements are f32(x / 2^e) rounded by the rule.
// (Hugging Face gpt-oss `*_blocks` [.., in/32, 16] / `*_scales` hold these same bytes reshaped.)
Mxfp4Tensor mxfp4_quantize(const ConstMatrix& w, Mxfp4Rule rule);

// x = 2^e * e2m1(code), float32 [rows, cols].
std::vector<float> mxfp4_dequantize(const Mxfp4Tensor& tensor);

// llama.cpp block_mxfp4 layout: per 32 elements the E8M0 byte, then qs[j] = q[j] | q[j+16] << 4.
std::vector<uint8_t> mxfp4_to_ggml_blocks(const Mxfp4Tensor& tensor);
Mxfp4Tensor mxfp4_from_ggml_blocks(std::span<const uint8_t> blocks, int64_t rows, int64_t cols);

}  // namespace m2fp4
