#include "quant/matrix.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "numerics/bf16.h"
#include "quant/block_kernels.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {

ConstMatrix ConstMatrix::f32(std::span<const float> values, int64_t rows, int64_t cols) {
  M2_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(values.size()) == rows * cols,
           "matrix of ", rows, "x", cols, " needs ", rows * cols, " values, got ", values.size());
  return ConstMatrix{values.data(), DType::kF32, rows, cols};
}

ConstMatrix ConstMatrix::bf16(std::span<const uint16_t> bits, int64_t rows, int64_t cols) {
  M2_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(bits.size()) == rows * cols, "matrix of ",
           rows, "x", cols, " needs ", rows * cols, " values, got ", bits.size());
  return ConstMatrix{bits.data(), DType::kBF16, rows, cols};
}

void ConstMatrix::load(int64_t row, int64_t col, int64_t n, float* out) const {
  const int64_t offset = row * cols + col;
  if (dtype == DType::kF32) {
    std::memcpy(out, static_cast<const float*>(data) + offset, static_cast<size_t>(n) * 4);
    return;
  }
  const uint16_t* in = static_cast<const uint16_t*>(data) + offset;
  const int64_t whole = n - n % quant_detail::kSubBlock;
  quant_detail::load_bf16(in, whole, out);
  for (int64_t i = whole; i < n; ++i) out[i] = bf16_to_f32(in[i]);
}

float matrix_amax(const ConstMatrix& matrix) {
  M2_CHECK(matrix.dtype == DType::kF32 || matrix.dtype == DType::kBF16,
           "quantizer source must be F32 or BF16, got ", dtype_name(matrix.dtype));
  std::vector<float> row_amax(static_cast<size_t>(matrix.rows), 0.0f);
  parallel_rows(matrix.rows, row_grain(matrix.cols), [&](int64_t begin, int64_t end) {
    if (matrix.dtype == DType::kBF16) {  // on the bits: no conversion to float32 first
      const uint16_t* bits = static_cast<const uint16_t*>(matrix.data);
      for (int64_t r = begin; r < end; ++r) {
        const uint16_t m = quant_detail::bf16_abs_max_bits(bits + r * matrix.cols, matrix.cols);
        row_amax[static_cast<size_t>(r)] = m >= 0x7F80u ? NAN : bf16_to_f32(m);
      }
      return;
    }
    std::vector<float> buf(static_cast<size_t>(matrix.cols));
    for (int64_t r = begin; r < end; ++r) {
      matrix.load(r, 0, matrix.cols, buf.data());
      row_amax[static_cast<size_t>(r)] = quant_detail::abs_max(buf.data(), matrix.cols);
    }
  });
  float amax = 0.0f;
  for (int64_t r = 0; r < matrix.rows; ++r) {
    const float a = row_amax[static_cast<size_t>(r)];
    M2_CHECK(!std::isnan(a), "matrix row ", r, " holds NaN or infinity; cannot quantize it");
    amax = a > amax ? a : amax;
  }
  return amax;
}

void check_blocked_shape(const ConstMatrix& matrix, int64_t block, const char* format) {
  M2_CHECK(matrix.data != nullptr || matrix.rows * matrix.cols == 0, format, ": no data");
  M2_CHECK(matrix.dtype == DType::kF32 || matrix.dtype == DType::kBF16, format,
           ": source must be F32 or BF16, got ", dtype_name(matrix.dtype));
  M2_CHECK(matrix.rows > 0 && matrix.cols > 0, format, ": empty matrix ", matrix.rows, "x",
           matrix.cols);
  M2_CHECK(matrix.cols % block == 0, format, " needs the input dimension to be a multiple of ",
           block, ", got ", matrix.cols);
}

}  // namespace m2fp4
