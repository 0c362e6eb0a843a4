// Exact decoding of stored weight elements to f32, for every WeightFormat: the scalar truth the
// fast kernels are tested against, and the row decoder for embedding lookups.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/weight.h"
#include "numerics/bf16.h"
#include "numerics/e2m1.h"
#include "numerics/e8m0.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"
#include "numerics/iq4nl.h"

namespace m2fp4 {

// The 4-bit code of column c in a packed row (even column in the low nibble).
inline uint8_t packed_nibble(const uint8_t* row, int64_t c) {
  return static_cast<uint8_t>((row[c >> 1] >> ((c & 1) * 4)) & 0xF);
}

// The f32 multiplier of group g of row r (4-bit formats).
inline float group_scale_value(const Weight& w, int64_t r, int64_t g) {
  const int64_t groups = w.cols / w.group_size;
  switch (w.format) {
    case WeightFormat::kNvfp4:
      return e4m3_to_f32(w.group_scale[r * groups + g]) * w.global_scale;
    case WeightFormat::kMxfp4:
      return e8m0_to_f32(w.group_scale[r * groups + g]);
    case WeightFormat::kIq4nl16: {
      uint16_t bits;
      std::memcpy(&bits, w.group_scale + 2 * (r * groups + g), 2);
      return f16_to_f32(bits);
    }
    default:
      return 1.0f;
  }
}

// W[r, c] as f32. For NVFP4 this is e2m1 * (e4m3 * global) with the scale product rounded once,
// as a dequantizing kernel computes it.
inline float weight_element(const Weight& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.format) {
    case WeightFormat::kF32:
      return static_cast<const float*>(w.data)[i];
    case WeightFormat::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightFormat::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightFormat::kFp8Block128:
      return e4m3_to_f32(static_cast<const uint8_t*>(w.data)[i]) *
             w.block_scale[(r / 128) * w.scale_cols + c / 128];
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4: {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (w.cols / 2);
      return e2m1_to_f32(packed_nibble(row, c)) * group_scale_value(w, r, c / w.group_size);
    }
    case WeightFormat::kIq4nl16: {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (w.cols / 2);
      return static_cast<float>(kIq4nlLevels[packed_nibble(row, c)]) *
             group_scale_value(w, r, c / w.group_size);
    }
  }
  return 0.0f;
}

// Row r of any weight decoded to f32 (out has w.cols floats).
void decode_weight_row(const Weight& w, int64_t r, float* out);

}  // namespace m2fp4
