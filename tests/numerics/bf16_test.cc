// bf16 conversions (quant-formats.md §1.4) checked exhaustively on every bf16 code and its
// rounding neighbourhood, and on a strided sweep of all 2^32 float32 bit patterns against a
// nearest-value reference computed in double.
#include "numerics/bf16.h"

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

// The value a bf16 code stands for, or the next power of two past the largest finite value when
// `code` is the infinity that follows it (the virtual grid point used for rounding to inf).
double grid_value(uint16_t code) {
  if ((code & 0x7FFFu) == 0x7F80u)
    return std::copysign(std::ldexp(1.0, 128), code & 0x8000u ? -1 : 1);
  const int exp = (code >> 7) & 0xFF;
  const int mant = code & 0x7F;
  const double mag = exp == 0 ? std::ldexp(mant, -133) : std::ldexp(128 + mant, exp - 134);
  return (code & 0x8000u) ? -mag : mag;
}

// Nearest bf16 of a finite or infinite float32, ties to even, via double distances.
uint16_t reference_bf16(float x) {
  if (std::isinf(x)) return x > 0 ? 0x7F80 : 0xFF80;
  const uint16_t low = static_cast<uint16_t>(to_bits(x) >> 16);  // truncated toward zero
  const uint16_t high = static_cast<uint16_t>(low + 1);          // next one away from zero
  const double d_low = std::fabs(static_cast<double>(x) - grid_value(low));
  const double d_high = std::fabs(static_cast<double>(x) - grid_value(high));
  if (d_low < d_high) return low;
  if (d_high < d_low) return high;
  return (low & 1u) ? high : low;
}

TEST(Bf16, EveryCodeDecodesAsTheTopHalfOfAFloat32) {
  for (uint32_t code = 0; code < 0x10000u; ++code) {
    const float value = bf16_to_f32(static_cast<uint16_t>(code));
    ASSERT_EQ(to_bits(value), code << 16) << std::hex << code;
  }
}

TEST(Bf16, EveryNonNanCodeRoundTrips) {
  for (uint32_t code = 0; code < 0x10000u; ++code) {
    const float value = bf16_to_f32(static_cast<uint16_t>(code));
    if (std::isnan(value)) continue;
    ASSERT_EQ(f32_to_bf16(value), code) << std::hex << code;
    ASSERT_EQ(to_bits(round_to_bf16(value)), to_bits(value));
  }
}

TEST(Bf16, MidpointsRoundToEvenAndTheirNeighboursToTheNearer) {
  int checked = 0;
  for (uint32_t c = 0; c < 0x10000u; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    if ((code & 0x7FFFu) >= 0x7F80u) continue;  // inf / NaN have no upper neighbour
    const uint16_t next = static_cast<uint16_t>(code + 1);
    const double mid = (grid_value(code) + grid_value(next)) / 2;
    const float mid_f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(mid_f), mid) << "midpoint not a float32 for " << std::hex << c;
    const uint16_t even = (code & 1u) ? next : code;
    EXPECT_EQ(f32_to_bf16(mid_f), even) << std::hex << c;
    const float toward_code = std::nextafter(mid_f, 0.0f);
    const float toward_next = std::nextafter(mid_f, mid_f > 0 ? INFINITY : -INFINITY);
    EXPECT_EQ(f32_to_bf16(toward_code), code) << std::hex << c;
    EXPECT_EQ(f32_to_bf16(toward_next), next) << std::hex << c;
    // The float32 neighbours of the exact value stay on it (for zero: the one of the same sign).
    const float value = bf16_to_f32(code);
    const float away = (code & 0x8000u) ? -INFINITY : INFINITY;
    EXPECT_EQ(f32_to_bf16(std::nextafter(value, away)), code) << std::hex << c;
    if (value != 0.0f) {
      EXPECT_EQ(f32_to_bf16(std::nextafter(value, -away)), code) << std::hex << c;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 0x7F80);
}

TEST(Bf16, LargestFiniteRoundsToInfinityFromTheMidpointUp) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7F7FFFu)), 0x7F7F);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7F8000u)), 0x7F80);  // tie: 0x7F80 is even
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7FFFFFu)), 0x7F80);
  EXPECT_EQ(f32_to_bf16(from_bits(0xFF7FFFFFu)), 0xFF80);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xFF80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
}

TEST(Bf16, NanStaysAQuietNanOfTheSameSign) {
  for (uint32_t payload : {1u, 0x1u << 15, 0x1u << 16, 0x3FFFFFu, 0x400000u, 0x7FFFFFu}) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      const uint16_t out = f32_to_bf16(from_bits(sign | 0x7F800000u | payload));
      EXPECT_TRUE(std::isnan(bf16_to_f32(out))) << std::hex << payload;
      EXPECT_EQ(out & 0x8000u, sign >> 16);
      EXPECT_NE(out & 0x0040u, 0u) << "not quiet";
    }
  }
}

TEST(Bf16, StridedSweepOfAllFloat32MatchesNearestEvenReference) {
  // 2^32 / 251 ~ 17M patterns; the stride is odd so every low-bit residue is visited.
  uint64_t mismatches = 0;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 251) {
    const float x = from_bits(static_cast<uint32_t>(bits));
    if (std::isnan(x)) continue;
    if (f32_to_bf16(x) != reference_bf16(x) && ++mismatches < 10) {
      ADD_FAILURE() << "bits " << std::hex << bits << " got " << f32_to_bf16(x) << " want "
                    << reference_bf16(x);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace m2fp4
