// NVFP4 (quant-formats.md §2): E2M1 codes, one E4M3 scale per 16 elements of a row, one float32
// global scale per tensor. Weight quantization follows the two producers' arithmetic exactly
// (§2.2): modelopt, and compressed-tensors / llm-compressor with its bf16 intermediates.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/matrix.h"

namespace m2fp4 {

inline constexpr int64_t kNvfp4Block = 16;
inline constexpr float kNvfp4ScaleDenominator = 2688.0f;  // E2M1 max 6 * E4M3 max 448

enum class Nvfp4Convention {
  kModelopt,           // weight_scale_2 = amax / 2688 (dequant multiplier)
  kCompressedTensors,  // weight_global_scale = 2688 / amax (quant multiplier)
};

// Precision of compressed-tensors' two intermediates (2688/amax and block_amax/6): the observer
// keeps min/max in the weight dtype, so a bf16 model rounds them to bf16.
enum class WorkDtype { kF32, kBF16 };

struct Nvfp4Options {
  Nvfp4Convention convention = Nvfp4Convention::kModelopt;
  WorkDtype ct_work_dtype = WorkDtype::kBF16;  // compressed-tensors only
  // modelopt >= 0.45 clamps block scales to [2^-9, 448] (no zero scale bytes); older versions
  // store scale 0 for blocks whose scale is below 2^-10.
  bool modelopt_clamp_block_scale = true;
  // Block scales of 16 blocks at a time with the SIMD twin where the CPU has it (bit-identical);
  // false runs the scalar nvfp4_block_scale on every block (tests compare the two).
  bool allow_simd = true;
};

struct Nvfp4Tensor {
  int64_t rows = 0;
  int64_t cols = 0;
  Nvfp4Convention convention = Nvfp4Convention::kModelopt;
  std::vector<uint8_t> packed;        // [rows, cols/2], even index in the low nibble
  std::vector<uint8_t> block_scales;  // [rows, cols/16] E4M3
  // As stored: modelopt weight_scale_2 (amax/2688) or compressed-tensors weight_global_scale
  // (2688/amax), per `convention`.
  float global_scale = 0.0f;
};

// The stored global scale for a tensor (or fused group) with this amax. modelopt divides by zero
// for amax 0; here that gives 0, whose blocks then all get scale 1.0 and decode to zeros.
float nvfp4_global_scale(float amax, const Nvfp4Options& options);

// The E4M3 block scale byte for a block with `block_amax` under a stored global scale.
uint8_t nvfp4_block_scale(float block_amax, float global_scale, const Nvfp4Options& options);

// The per-block factor the producer divides elements by (and decoding multiplies codes by):
// modelopt f32(e4m3(S) * g), compressed-tensors f32(e4m3(S) / G).
float nvfp4_block_divisor(uint8_t block_scale, float global_scale, Nvfp4Convention convention);

// Quantizes W [out, in] (in % 16 == 0). `amax` is max|W| over the fused group (§2.3) that shares
// this tensor's global scale; it must be >= every |W| of this tensor (checked per block).
Nvfp4Tensor nvfp4_quantize_weight(const ConstMatrix& w, float amax, const Nvfp4Options& options);

// Decodes to float32 [rows, cols] by the producer's own dequantization.
std::vector<float> nvfp4_dequantize(const Nvfp4Tensor& tensor);

// ---- W4A4 activations (§2.7) ----------------------------------------------------------------

// Activation quant multiplier G from a stored input scale: modelopt input_scale -> f32(1/x),
// compressed-tensors input_global_scale -> x.
float nvfp4_activation_global(float stored_input_scale, Nvfp4Convention convention);

struct Nvfp4Activation {
  int64_t rows = 0;
  int64_t cols = 0;
  float global = 0.0f;                // G, the quant multiplier (2688 / calibrated amax)
  std::vector<uint8_t> packed;        // [rows, cols/2]
  std::vector<uint8_t> block_scales;  // [rows, cols/16] E4M3 (satfinite)
};

// Per-token dynamic block scales as the runtime kernels compute them (multiply by 1/6,
// satfinite E4M3, multiply by f32(G / scale)). x is [rows, cols], cols % 16 == 0.
Nvfp4Activation nvfp4_quantize_activation(const ConstMatrix& x, float global);

// e2m1(q) * e4m3(S) per element, without the global scale: an FP4 x FP4 GEMM sums products of
// these and multiplies by alpha = input_scale * weight_scale_2 (= 1 / (G_x * G_w)).
std::vector<float> nvfp4_activation_unscaled(const Nvfp4Activation& activation);

}  // namespace m2fp4
