// A read-only view of a row-major source matrix [rows, cols] held as float32 or bf16, the two
// dtypes the quantizers read (bf16 model weights; float32 after dequantizing FP8 or in tests).
#pragma once

#include <cstdint>
#include <span>

#include "io/dtype.h"

namespace m2fp4 {

struct ConstMatrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;  // kF32 or kBF16
  int64_t rows = 0;
  int64_t cols = 0;

  static ConstMatrix f32(std::span<const float> values, int64_t rows, int64_t cols);
  static ConstMatrix bf16(std::span<const uint16_t> bits, int64_t rows, int64_t cols);

  // Copies elements [col, col + n) of `row` into out as float32 (exact for both dtypes).
  void load(int64_t row, int64_t col, int64_t n, float* out) const;
};

// max |x| over the matrix. Throws m2fp4::Error on NaN or infinity (no quantizer accepts them).
float matrix_amax(const ConstMatrix& matrix);

// Throws m2fp4::Error unless cols is a positive multiple of `block` and rows is positive.
void check_blocked_shape(const ConstMatrix& matrix, int64_t block, const char* format);

}  // namespace m2fp4
