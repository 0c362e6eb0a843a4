// A linear layer's weight as the kernels see it: shape [rows = out, cols = in], row-major, kept in
// its stored format and decoded inside the kernels (the real model is 230 GB of FP8; no blanket
// upcast). Backend-neutral: CPU and CUDA kernels take the same description.
#pragma once

#include <cstdint>

namespace m2fp4 {

enum class WeightFormat : uint8_t {
  kF32,
  kBF16,
  kF16,
  // E4M3 codes with one f32 multiplier per 128x128 block (the official MiniMax FP8 release):
  // W[r, c] = e4m3(q[r, c]) * block_scale[(r / 128) * scale_cols + c / 128].
  kFp8Block128,
  // The 4-bit formats (quant-formats.md §2-3). `data` holds codes packed two per byte along cols,
  // even column in the low nibble: byte[r * cols/2 + c/2] >> (4 * (c & 1)) & 0xF. One scale per
  // group of `group_size` consecutive columns of a row, in `group_scale` [rows, cols/group_size]:
  // NVFP4: E2M1 codes, E4M3 scale bytes per 16, times `global_scale` (the dequant multiplier:
  //   modelopt weight_scale_2, or 1 / compressed-tensors weight_global_scale):
  //   W[r, c] = e2m1(q) * e4m3(S[r, c/16]) * global_scale.
  kNvfp4,
  // MXFP4 (OCP): E2M1 codes, E8M0 scale bytes per 32: W = e2m1(q) * 2^(S - 127).
  kMxfp4,
  // "mxfp4_16": IQ4_NL codebook indices, signed IEEE f16 scale per 16 (2 bytes each, little
  // endian): W = kIq4nlLevels[q] * f16(S[r, c/16]).
  kIq4nl16,
};

const char* weight_format_name(WeightFormat format);

struct Weight {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;          // rows x cols elements in `format`
  const float* block_scale = nullptr;  // kFp8Block128 only
  int64_t scale_cols = 0;              // kFp8Block128: ceil(cols / 128)

  // 4-bit formats: per-group scales (E4M3 / E8M0 bytes, or f16 pairs) and the group size.
  const uint8_t* group_scale = nullptr;
  int64_t group_size = 0;
  float global_scale = 1.0f;  // kNvfp4 dequant multiplier
  // kNvfp4 with a calibrated activation scale (modelopt input_scale = amax / 2688; 0: none).
  // Used only by W4A4 emulation, which quantizes the input to NVFP4 before the matmul.
  float input_scale = 0.0f;

  // Bytes of weight data streamed by one full pass (scales included).
  int64_t nbytes() const;
};

}  // namespace m2fp4
