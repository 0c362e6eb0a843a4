#include "kernels/weight.h"

namespace m2fp4 {

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32:
      return "f32";
    case WeightFormat::kBF16:
      return "bf16";
    case WeightFormat::kF16:
      return "f16";
    case WeightFormat::kFp8Block128:
      return "fp8-block128";
  }
  return "?";
}

int64_t Weight::nbytes() const {
  switch (format) {
    case WeightFormat::kF32:
      return rows * cols * 4;
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return rows * cols * 2;
    case WeightFormat::kFp8Block128:
      return rows * cols + ((rows + 127) / 128) * scale_cols * 4;
  }
  return 0;
}

}  // namespace m2fp4
