// Argument validation shared by the scalar and fast matmul (bad shapes are caller bugs or bad
// checkpoints; either way they must fail with a clear message, not read out of bounds).
#pragma once

#include <cstdint>

#include "base/error.h"
#include "kernels/weight.h"

namespace m2fp4 {

inline void check_matmul_args(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  M2_CHECK(w.rows >= 0 && w.cols >= 0, "matmul: negative weight shape [", w.rows, ", ", w.cols,
           "]");
  M2_CHECK(n_tokens >= 0, "matmul: negative n_tokens ", n_tokens);
  if (w.rows == 0 || n_tokens == 0) return;
  M2_CHECK(y != nullptr, "matmul: null output");
  if (w.cols == 0) return;
  M2_CHECK(w.data != nullptr, "matmul: ", weight_format_name(w.format), " weight [", w.rows, ", ",
           w.cols, "] has no data");
  M2_CHECK(x != nullptr, "matmul: null input");
  switch (w.format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return;
    case WeightFormat::kFp8Block128:
      M2_CHECK(w.block_scale != nullptr, "matmul: fp8-block128 weight [", w.rows, ", ", w.cols,
               "] has no block scales");
      M2_CHECK(w.scale_cols == (w.cols + 127) / 128, "matmul: fp8-block128 weight [", w.rows, ", ",
               w.cols, "] has scale_cols ", w.scale_cols, ", expected ", (w.cols + 127) / 128);
      return;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16:
      M2_CHECK(w.group_scale != nullptr && w.group_size > 0 && w.group_size % 2 == 0 &&
                   w.cols % w.group_size == 0,
               "matmul: ", weight_format_name(w.format), " weight [", w.rows, ", ", w.cols,
               "] needs group scales and cols divisible by its group size ", w.group_size);
      return;
  }
  fail("matmul: unknown weight format ", static_cast<int>(w.format));
}

}  // namespace m2fp4
