// IEEE binary16 conversions (quant-formats.md §1.4): every code decoded against the format's
// formula, every code's rounding neighbourhood, and a strided sweep of all float32 bit patterns
// against the compiler's own _Float16 conversion (libgcc's soft-float, an independent peer).
#include "numerics/f16.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

namespace m2fp4 {
namespace {

float from_bits(uint32_t bits) {
  return std::bit_cast<float>(bits);
}
uint32_t to_bits(float value) {
  return std::bit_cast<uint32_t>(value);
}

// The value of a finite code by the binary16 formula, or 2^16 for the infinity that follows
// 65504 (the virtual grid point rounding uses).
double grid_value(uint16_t code) {
  const int exp = (code >> 10) & 0x1F;
  const int mant = code & 0x3FF;
  double mag = 0;
  if (exp == 0) {
    mag = std::ldexp(mant, -24);
  } else if (exp == 31) {
    mag = std::ldexp(1.0, 16);
  } else {
    mag = std::ldexp(1024 + mant, exp - 25);
  }
  return (code & 0x8000u) ? -mag : mag;
}

TEST(F16, EveryCodeDecodesByTheFormula) {
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    const float value = f16_to_f32(code);
    const int exp = (code >> 10) & 0x1F;
    const int mant = code & 0x3FF;
    if (exp == 31 && mant != 0) {
      ASSERT_TRUE(std::isnan(value)) << std::hex << c;
      ASSERT_EQ(std::signbit(value), (code & 0x8000u) != 0);
      ASSERT_EQ((to_bits(value) >> 13) & 0x3FFu, static_cast<uint32_t>(mant)) << "payload";
    } else if (exp == 31) {
      ASSERT_TRUE(std::isinf(value));
      ASSERT_EQ(std::signbit(value), (code & 0x8000u) != 0);
    } else {
      ASSERT_EQ(static_cast<double>(value), grid_value(code)) << std::hex << c;
      ASSERT_EQ(std::signbit(value), (code & 0x8000u) != 0) << std::hex << c;
    }
  }
}

TEST(F16, EveryNonNanCodeRoundTrips) {
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const float value = f16_to_f32(static_cast<uint16_t>(c));
    if (std::isnan(value)) {
      const uint16_t back = f32_to_f16(value);
      ASSERT_TRUE(std::isnan(f16_to_f32(back)));
      ASSERT_EQ(back & 0x8000u, c & 0x8000u);
      continue;
    }
    ASSERT_EQ(f32_to_f16(value), c) << std::hex << c;
  }
}

TEST(F16, MidpointsRoundToEvenAndTheirNeighboursToTheNearer) {
  int checked = 0;
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    if ((code & 0x7FFFu) >= 0x7C00u) continue;
    const uint16_t next = static_cast<uint16_t>(code + 1);
    const double mid = (grid_value(code) + grid_value(next)) / 2;
    const float mid_f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(mid_f), mid);
    const uint16_t even = (code & 1u) ? next : code;
    const float away = (code & 0x8000u) ? -INFINITY : INFINITY;
    EXPECT_EQ(f32_to_f16(mid_f), even) << std::hex << c;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid_f, 0.0f)), code) << std::hex << c;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid_f, away)), next) << std::hex << c;
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 0x7C00);
}

TEST(F16, Boundaries) {
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // tie with 2^16: 0x7C00 is even
  EXPECT_EQ(f32_to_f16(-1e9f), 0xFC00);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7C00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // min normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // min subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -26)), 0x8000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(from_bits(1)), 0x0000);
}

#if defined(__FLT16_MAX__)
TEST(F16, StridedSweepOfAllFloat32MatchesCompilerFloat16) {
  uint64_t mismatches = 0;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 1009) {
    const volatile float x = from_bits(static_cast<uint32_t>(bits));
    if (std::isnan(x)) continue;
    const _Float16 peer = static_cast<_Float16>(x);
    const uint16_t want = std::bit_cast<uint16_t>(peer);
    if (f32_to_f16(x) != want && ++mismatches < 10) {
      ADD_FAILURE() << "bits " << std::hex << bits << " got " << f32_to_f16(x) << " want " << want;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}
#endif

}  // namespace
}  // namespace m2fp4
