// float8_e4m3fn (safetensors F8_E4M3): bias 7, no infinities, 0x7F/0xFF are NaN, max 448.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <limits>

namespace m2fp4 {

constexpr float e4m3_to_f32(uint8_t code) {
  const bool neg = (code & 0x80u) != 0;
  const uint32_t exp = (code >> 3) & 0xFu;
  const uint32_t mant = code & 0x7u;
  float mag = 0.0f;
  if (exp == 0xFu && mant == 0x7u) {
    mag = std::numeric_limits<float>::quiet_NaN();
  } else if (exp == 0) {
    mag = static_cast<float>(mant) * (1.0f / 512.0f);  // subnormal: m * 2^-9
  } else {
    mag = std::bit_cast<float>(((exp + 120u) << 23) | (mant << 20));
  }
  return neg ? -mag : mag;
}

// All 256 decoded values, for table-driven kernels.
inline constexpr std::array<float, 256> kE4m3Table = [] {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = e4m3_to_f32(static_cast<uint8_t>(i));
  return t;
}();

enum class Fp8Overflow {
  kNan,       // PyTorch's .to(float8_e4m3fn): past 464 (and inf/NaN) -> NaN
  kSaturate,  // CUDA __NV_SATFINITE: overflow and inf -> +-448, NaN -> NaN
};

// Round-to-nearest-even encoding from float32.
constexpr uint8_t f32_to_e4m3(float value, Fp8Overflow overflow = Fp8Overflow::kSaturate) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);  // NaN
  // 464 = 448 + half step: ties to even round down to 448; anything larger overflows.
  if (a > 0x43E80000u) {
    return overflow == Fp8Overflow::kSaturate ? static_cast<uint8_t>(sign | 0x7Eu)
                                              : static_cast<uint8_t>(sign | 0x7Fu);
  }
  if (a < 0x3C800000u) {                                 // below 2^-6: subnormal grid of 2^-9
    const float mag = std::bit_cast<float>(a) * 512.0f;  // exact (power-of-two scale)
    // round half to even on an integer grid
    const uint32_t whole = static_cast<uint32_t>(mag);
    const float frac = mag - static_cast<float>(whole);
    uint32_t r = whole;
    if (frac > 0.5f || (frac == 0.5f && (whole & 1u))) r += 1;
    return static_cast<uint8_t>(sign | r);
  }
  const uint32_t q = a >> 20;
  const uint32_t rem = a & 0xFFFFFu;
  const uint32_t up = (rem > 0x80000u || (rem == 0x80000u && (q & 1u))) ? 1u : 0u;
  return static_cast<uint8_t>(sign | (q + up - (120u << 3)));
}

}  // namespace m2fp4
