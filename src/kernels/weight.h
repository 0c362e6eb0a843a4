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
};

const char* weight_format_name(WeightFormat format);

struct Weight {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;          // rows x cols elements in `format`
  const float* block_scale = nullptr;  // kFp8Block128 only
  int64_t scale_cols = 0;              // kFp8Block128: ceil(cols / 128)

  // Bytes of weight data streamed by one full pass (scales included).
  int64_t nbytes() const;
};

}  // namespace m2fp4
