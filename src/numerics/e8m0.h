// E8M0 (quant-formats.md §1.3): the OCP MX shared scale. Unsigned 8-bit exponent, bias 127, no
// mantissa, sign or zero: code e means 2^(e-127) for e = 0..254; 0xFF is NaN.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace m2fp4 {

inline constexpr uint8_t kE8m0Nan = 0xFF;
inline constexpr int kE8m0MinExponent = -127;
inline constexpr int kE8m0MaxExponent = 127;

// 2^(code-127) as float32; code 0 is the float32 subnormal 2^-127.
constexpr float e8m0_to_f32(uint8_t code) {
  if (code == kE8m0Nan) return std::numeric_limits<float>::quiet_NaN();
  if (code == 0) return std::bit_cast<float>(uint32_t{0x00400000u});
  return std::bit_cast<float>(uint32_t{code} << 23);
}

// 2^e exactly as float32, for e in [-149, 127].
constexpr float exp2_int(int e) {
  if (e >= -126) return std::bit_cast<float>(static_cast<uint32_t>(e + 127) << 23);
  return std::bit_cast<float>(uint32_t{1} << (e + 149));
}

// The code of 2^e with e clamped to the representable range [-127, 127].
constexpr uint8_t e8m0_from_exponent(int e) {
  if (e < kE8m0MinExponent) e = kE8m0MinExponent;
  if (e > kE8m0MaxExponent) e = kE8m0MaxExponent;
  return static_cast<uint8_t>(e + 127);
}

// floor(log2(x)) exactly, for finite x > 0 (float32 subnormals included).
constexpr int floor_log2(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
  const int biased = static_cast<int>(bits >> 23);
  if (biased != 0) return biased - 127;
  return (31 - std::countl_zero(bits)) - 149;  // subnormal: value = bits * 2^-149
}

// ceil(log2(x)) exactly, for finite x > 0.
constexpr int ceil_log2(float x) {
  const int f = floor_log2(x);
  return exp2_int(f) == (x < 0.0f ? -x : x) ? f : f + 1;
}

// float32 -> E8M0 rounding to the nearest power of two with ties (mantissa exactly 1.5) rounded
// up, which is what ml_dtypes' float8_e8m0fnu cast does. Zero, negatives, inf and NaN have no
// E8M0 value and give 0xFF; values below 2^-127 clamp to code 0; values that round past 2^127
// give 0xFF. (For float32 subnormal inputs ml_dtypes rounds differently, e.g. 1.25 * 2^-127 ->
// 2^-126; here they round to the nearest power of two like normal inputs.)
constexpr uint8_t f32_to_e8m0_nearest(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if (!(x > 0.0f) || bits >= 0x7F800000u) return kE8m0Nan;
  const uint32_t biased = bits >> 23;
  if (biased == 0) return bits >= 0x600000u ? 1 : 0;  // 1.5 * 2^-127 is the tie
  const uint32_t rounded = biased + ((bits & 0x400000u) ? 1u : 0u);
  return rounded >= 255u ? kE8m0Nan : static_cast<uint8_t>(rounded);
}

}  // namespace m2fp4
