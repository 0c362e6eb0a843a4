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
    case WeightFormat::kNvfp4:
      return "nvfp4";
    case WeightFormat::kMxfp4:
      return "mxfp4";
    case WeightFormat::kIq4nl16:
      return "iq4nl-16";
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
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
      return rows * cols / 2 + rows * (cols / group_size);
    case WeightFormat::kIq4nl16:
      return rows * cols / 2 + rows * (cols / group_size) * 2;
  }
  return 0;
}

}  // namespace m2fp4
