#include "kernels/cpu/weight_decode.h"

#include "base/error.h"

namespace m2fp4 {

void decode_weight_row(const Weight& w, int64_t r, float* out) {
  M2_CHECK(r >= 0 && r < w.rows, "row ", r, " out of range [0, ", w.rows, ")");
  const int64_t n = w.cols;
  switch (w.format) {
    case WeightFormat::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + r * n, static_cast<size_t>(n) * 4);
      return;
    case WeightFormat::kBF16: {
      const uint16_t* row = static_cast<const uint16_t*>(w.data) + r * n;
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(row[i]);
      return;
    }
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16: {
      // One scale per group, then a 16-entry table of the group's values.
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (n / 2);
      for (int64_t g = 0; g < n / w.group_size; ++g) {
        const float scale = group_scale_value(w, r, g);
        float table[16];
        for (int q = 0; q < 16; ++q) {
          table[q] = (w.format == WeightFormat::kIq4nl16 ? static_cast<float>(kIq4nlLevels[q])
                                                         : kE2m1Values[q]) *
                     scale;
        }
        for (int64_t c = g * w.group_size; c < (g + 1) * w.group_size; ++c) {
          out[c] = table[packed_nibble(row, c)];
        }
      }
      return;
    }
    default:
      for (int64_t c = 0; c < n; ++c) out[c] = weight_element(w, r, c);
      return;
  }
}

}  // namespace m2fp4
