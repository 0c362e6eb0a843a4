// FP8 E4M3 quantization (quant-formats.md §4-5): per-tensor, per-channel (output row) and
// block-scaled weights with scale = amax / 448 as a dequant multiplier (the DeepSeek / MiniMax
// 128x128 convention: `weight_scale_inv` multiplies despite its name), the §5 dequantization to
// bf16, and the KV-cache store/load of §4.1.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/matrix.h"

namespace m2fp4 {

inline constexpr float kE4m3Max = 448.0f;

enum class Fp8Granularity { kPerTensor, kPerChannel, kBlock };

struct Fp8Options {
  Fp8Granularity granularity = Fp8Granularity::kBlock;
  int64_t block_rows = 128;  // kBlock only; edge blocks are partial
  int64_t block_cols = 128;
};

struct Fp8Tensor {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t block_rows = 0;  // rows and cols covered by one scale (rows x cols for per-tensor)
  int64_t block_cols = 0;
  std::vector<uint8_t> codes;  // [rows, cols] E4M3
  std::vector<float> scales;   // [ceil(rows/block_rows), ceil(cols/block_cols)] multipliers

  int64_t scale_rows() const { return (rows + block_rows - 1) / block_rows; }
  int64_t scale_cols() const { return (cols + block_cols - 1) / block_cols; }
};

// The scale of a group with this amax: f32(amax / 448); 1.0 when that is 0 (all-zero group).
float fp8_scale_for_amax(float amax);

// s = amax/448 per group, q = e4m3(f32(x / s)) with the torch (non-saturating) cast; |x / s| stays
// within 448 up to one rounding, so no code is NaN.
Fp8Tensor fp8_quantize(const ConstMatrix& w, const Fp8Options& options = {});

// §5: W = bf16(f32(e4m3(q) * scale)) as bf16 bits [rows, cols]; and the float32 products.
std::vector<uint16_t> fp8_dequantize_bf16(const Fp8Tensor& tensor);
std::vector<float> fp8_dequantize(const Fp8Tensor& tensor);

// A checkpoint's block-scaled FP8 weight (e.g. MiniMax `weight` F8_E4M3 + `weight_scale_inv` F32
// [ceil(out/128), ceil(in/128)]) wrapped as an Fp8Tensor; checks the scale shape.
Fp8Tensor fp8_from_checkpoint(std::span<const uint8_t> codes, std::span<const float> scale_inv,
                              int64_t rows, int64_t cols, int64_t block_rows = 128,
                              int64_t block_cols = 128);

// KV cache (§4.1): calibrated scale = amax / 448; store e4m3_satfinite(f32(x / scale)); load
// e4m3(q) * scale.
float fp8_kv_scale(float amax);
uint8_t fp8_kv_store(float x, float scale);
float fp8_kv_load(uint8_t code, float scale);

}  // namespace m2fp4
