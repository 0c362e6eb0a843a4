// bfloat16: the top 16 bits of an IEEE float32. Conversions are exact and constexpr.
#pragma once

#include <bit>
#include <cstdint>

namespace m2fp4 {

constexpr float bf16_to_f32(uint16_t bits) {
  return std::bit_cast<float>(uint32_t{bits} << 16);
}

// Round-to-nearest-even; NaN stays a quiet NaN of the same sign.
constexpr uint16_t f32_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// float32 rounded to the nearest bf16 value, as a float.
constexpr float round_to_bf16(float value) {
  return bf16_to_f32(f32_to_bf16(value));
}

}  // namespace m2fp4
