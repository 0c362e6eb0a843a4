// float8_e4m3fn (quant-formats.md §1.2): all 256 codes decoded against the spec's formula, every
// value and every midpoint (and its float32 neighbours) encoded in both overflow modes, and a
// strided sweep of all float32 patterns against a brute-force nearest-value reference.
#include "numerics/fp8_e4m3.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace m2fp4 {
namespace {

float from_bits(uint32_t bits) {
  return std::bit_cast<float>(bits);
}

// §1.2 decode written out: e == 0: m * 2^-9; e > 0: (1 + m/8) * 2^(e-7); 0x7F/0xFF NaN.
double spec_value(uint8_t code) {
  const int s = code >> 7;
  const int e = (code >> 3) & 0xF;
  const int m = code & 7;
  const double mag = e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return s ? -mag : mag;
}

bool is_nan_code(uint8_t code) {
  return (code & 0x7F) == 0x7F;
}

TEST(E4m3, AllCodesDecodeByTheSpecFormula) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const float value = e4m3_to_f32(code);
    EXPECT_EQ(std::bit_cast<uint32_t>(value), std::bit_cast<uint32_t>(kE4m3Table[c])) << c;
    if (is_nan_code(code)) {
      EXPECT_TRUE(std::isnan(value)) << c;
      ++nans;
      continue;
    }
    EXPECT_EQ(static_cast<double>(value), spec_value(code)) << c;
    EXPECT_EQ(std::signbit(value), c >= 128) << c;
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x20), 0.125f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
}

TEST(E4m3, EveryFiniteValueEncodesToItsCodeInBothModes) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    if (is_nan_code(code)) continue;
    const float value = static_cast<float>(spec_value(code));
    EXPECT_EQ(f32_to_e4m3(value, Fp8Overflow::kNan), code) << c;
    EXPECT_EQ(f32_to_e4m3(value, Fp8Overflow::kSaturate), code) << c;
  }
  EXPECT_EQ(f32_to_e4m3(-0.0f, Fp8Overflow::kNan), 0x80);
  EXPECT_EQ(f32_to_e4m3(-0.0f, Fp8Overflow::kSaturate), 0x80);
}

TEST(E4m3, MidpointsTieToEvenAndNeighboursGoToTheNearer) {
  for (int sign : {0, 0x80}) {
    for (int c = 0; c < 0x7E; ++c) {
      const uint8_t low = static_cast<uint8_t>(sign | c);
      const uint8_t high = static_cast<uint8_t>(sign | (c + 1));
      const double mid = (spec_value(low) + spec_value(high)) / 2;
      const float mid_f = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(mid_f), mid);
      const float away = sign ? -INFINITY : INFINITY;
      for (Fp8Overflow mode : {Fp8Overflow::kNan, Fp8Overflow::kSaturate}) {
        EXPECT_EQ(f32_to_e4m3(mid_f, mode), (c & 1) ? high : low) << c;
        EXPECT_EQ(f32_to_e4m3(std::nextafter(mid_f, 0.0f), mode), low) << c;
        EXPECT_EQ(f32_to_e4m3(std::nextafter(mid_f, away), mode), high) << c;
      }
    }
  }
}

TEST(E4m3, OverflowTorchCastGivesNanSatfiniteGives448) {
  const float above_464 = std::nextafter(464.0f, INFINITY);
  for (float sign : {1.0f, -1.0f}) {
    const uint8_t s = sign < 0 ? 0x80 : 0x00;
    // 464 is the midpoint to the (NaN) next grid point 480: ties to even 448 in both modes.
    EXPECT_EQ(f32_to_e4m3(sign * 464.0f, Fp8Overflow::kNan), s | 0x7E);
    EXPECT_EQ(f32_to_e4m3(sign * 464.0f, Fp8Overflow::kSaturate), s | 0x7E);
    EXPECT_EQ(f32_to_e4m3(sign * std::nextafter(464.0f, 0.0f), Fp8Overflow::kNan), s | 0x7E);
    for (float big : {above_464, 470.0f, 479.99f, 480.0f, 1000.0f, 3.0e38f, INFINITY}) {
      EXPECT_EQ(f32_to_e4m3(sign * big, Fp8Overflow::kNan), s | 0x7F) << big;
      EXPECT_EQ(f32_to_e4m3(sign * big, Fp8Overflow::kSaturate), s | 0x7E) << big;
    }
  }
  for (Fp8Overflow mode : {Fp8Overflow::kNan, Fp8Overflow::kSaturate}) {
    EXPECT_TRUE(is_nan_code(f32_to_e4m3(NAN, mode)));
    EXPECT_TRUE(is_nan_code(f32_to_e4m3(-NAN, mode)));
  }
}

TEST(E4m3, Subnormals) {
  const float step = std::ldexp(1.0f, -9);
  EXPECT_EQ(f32_to_e4m3(step / 2), 0x00);  // tie -> even 0
  EXPECT_EQ(f32_to_e4m3(std::nextafter(step / 2, 1.0f)), 0x01);
  EXPECT_EQ(f32_to_e4m3(1.5f * step), 0x02);  // tie -> even 2
  EXPECT_EQ(f32_to_e4m3(2.5f * step), 0x02);
  EXPECT_EQ(f32_to_e4m3(7.5f * step), 0x08);  // to min normal
  EXPECT_EQ(f32_to_e4m3(-0.3f * step), 0x80);
  EXPECT_EQ(f32_to_e4m3(from_bits(1)), 0x00);  // float32 subnormal
  EXPECT_EQ(f32_to_e4m3(-from_bits(0x7FFFFF)), 0x80);
}

// Brute force: nearest of the 127 non-negative finite magnitudes, ties to the even code, values
// past 464 overflow per mode.
uint8_t reference_e4m3(float x, Fp8Overflow mode) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double m = std::fabs(static_cast<double>(x));
  if (m > 464.0) return sign | (mode == Fp8Overflow::kNan ? 0x7F : 0x7E);
  int best = 0;
  double best_err = m;
  for (int c = 1; c <= 0x7E; ++c) {
    const double err = std::fabs(m - spec_value(static_cast<uint8_t>(c)));
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(E4m3, StridedSweepMatchesBruteForceReference) {
  uint64_t mismatches = 0;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 16411) {
    const float x = from_bits(static_cast<uint32_t>(bits));
    if (std::isnan(x)) continue;
    for (Fp8Overflow mode : {Fp8Overflow::kNan, Fp8Overflow::kSaturate}) {
      if (f32_to_e4m3(x, mode) != reference_e4m3(x, mode) && ++mismatches < 10) {
        ADD_FAILURE() << "bits " << std::hex << bits << " got " << int{f32_to_e4m3(x, mode)}
                      << " want " << int{reference_e4m3(x, mode)};
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace m2fp4
