// FP4 E2M1 (quant-formats.md §1.1): decode table against the bit formula, the tie and sign rules
// of both encoders, and a strided float32 sweep against a brute-force nearest-value reference.
#include "numerics/e2m1.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

namespace m2fp4 {
namespace {

// s | e1 e0 | m with bias 1: e == 0 -> m * 0.5, else (1 + m/2) * 2^(e-1).
double formula_value(uint8_t code) {
  const int e = (code >> 1) & 3;
  const int m = code & 1;
  const double mag = e == 0 ? 0.5 * m : (1.0 + m / 2.0) * std::ldexp(1.0, e - 1);
  return (code & 8) ? -mag : mag;
}

TEST(E2m1, DecodeTableMatchesTheFormula) {
  for (int c = 0; c < 16; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    EXPECT_EQ(static_cast<double>(e2m1_to_f32(code)), formula_value(code)) << c;
    EXPECT_EQ(std::signbit(e2m1_to_f32(code)), c >= 8) << c;
    EXPECT_EQ(e2m1_to_f32(static_cast<uint8_t>(code | 0xF0)),
              e2m1_to_f32(code));  // high bits ignored
  }
  EXPECT_EQ(e2m1_to_f32(7), 6.0f);
  EXPECT_EQ(e2m1_to_f32(5), 3.0f);
}

TEST(E2m1, EveryValueEncodesToItsCode) {
  for (uint8_t c = 1; c < 16; ++c) {
    if (c == 8) continue;
    EXPECT_EQ(f32_to_e2m1(e2m1_to_f32(c)), c);
    for (E2m1ZeroSign rule : {E2m1ZeroSign::kNegativeInput, E2m1ZeroSign::kNeverNegZero,
                              E2m1ZeroSign::kNonPositiveInput}) {
      EXPECT_EQ(f32_to_e2m1_ties_toward_zero(e2m1_to_f32(c), rule), c);
    }
  }
  EXPECT_EQ(f32_to_e2m1(0.0f), 0);
  EXPECT_EQ(f32_to_e2m1(-0.0f), 0);  // §1.1: exactly -0.0 gives code 0
}

TEST(E2m1, RneTiesOfTheSpec) {
  struct Case {
    float x;
    uint8_t code;
  };
  for (Case c : {Case{0.25f, 0}, Case{0.75f, 2}, Case{1.25f, 2}, Case{1.75f, 4}, Case{2.5f, 4},
                 Case{3.5f, 6}, Case{5.0f, 6}}) {
    EXPECT_EQ(f32_to_e2m1(c.x), c.code) << c.x;
    EXPECT_EQ(f32_to_e2m1(-c.x), c.code | 8) << c.x;
    // One float32 ulp either side leaves the tie.
    EXPECT_EQ(f32_to_e2m1(std::nextafter(c.x, 0.0f)), e2m1_magnitude_rne(c.x - 1e-3f)) << c.x;
    EXPECT_EQ(f32_to_e2m1(std::nextafter(c.x, 7.0f)), e2m1_magnitude_rne(c.x + 1e-3f)) << c.x;
  }
  EXPECT_EQ(f32_to_e2m1(std::nextafter(0.25f, 1.0f)), 1);
  EXPECT_EQ(f32_to_e2m1(std::nextafter(0.75f, 0.0f)), 1);
  EXPECT_EQ(f32_to_e2m1(std::nextafter(5.0f, 9.0f)), 7);
}

TEST(E2m1, SaturatesAndSignsSmallNegatives) {
  EXPECT_EQ(f32_to_e2m1(6.5f), 7);
  EXPECT_EQ(f32_to_e2m1(1e30f), 7);
  EXPECT_EQ(f32_to_e2m1(INFINITY), 7);
  EXPECT_EQ(f32_to_e2m1(-INFINITY), 15);
  EXPECT_EQ(f32_to_e2m1(-0.1f), 8);  // rounds to zero, sign kept: -0
  EXPECT_EQ(f32_to_e2m1(-0.25f), 8);
  EXPECT_EQ(f32_to_e2m1(0.1f), 0);
  EXPECT_EQ(f32_to_e2m1(NAN), 0);
}

TEST(E2m1, TiesTowardZeroVariant) {
  struct Case {
    float x;
    uint8_t code;
  };
  for (Case c : {Case{0.25f, 0}, Case{0.75f, 1}, Case{1.25f, 2}, Case{1.75f, 3}, Case{2.5f, 4},
                 Case{3.5f, 5}, Case{5.0f, 6}, Case{5.01f, 7}, Case{100.0f, 7}}) {
    EXPECT_EQ(f32_to_e2m1_ties_toward_zero(c.x, E2m1ZeroSign::kNeverNegZero), c.code) << c.x;
    EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-c.x, E2m1ZeroSign::kNonPositiveInput), c.code | 8)
        << c.x;
  }
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(std::nextafter(0.75f, 1.0f), E2m1ZeroSign::kNeverNegZero),
            2);
  // Sign rules at zero.
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.1f, E2m1ZeroSign::kNeverNegZero), 0);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.3f, E2m1ZeroSign::kNeverNegZero), 9);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.1f, E2m1ZeroSign::kNegativeInput), 8);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.0f, E2m1ZeroSign::kNegativeInput), 0);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(0.0f, E2m1ZeroSign::kNonPositiveInput), 8);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.0f, E2m1ZeroSign::kNonPositiveInput), 8);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(0.1f, E2m1ZeroSign::kNonPositiveInput), 0);
  EXPECT_EQ(f32_to_e2m1_ties_toward_zero(-0.1f, E2m1ZeroSign::kNonPositiveInput), 8);
}

// Nearest of the 8 magnitudes by distance; ties to the even code or (toward_zero) the smaller.
// (Beyond 6 the answer is 6; the distances are only exact in double for small m.)
uint8_t reference_magnitude(double m, bool toward_zero) {
  if (m > 6.0) return 7;
  int best = 0;
  double best_err = m;
  for (int c = 1; c < 8; ++c) {
    const double err = std::fabs(m - formula_value(static_cast<uint8_t>(c)));
    const bool tie_wins = toward_zero ? false : (c & 1) == 0;
    if (err < best_err || (err == best_err && tie_wins)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(best);
}

TEST(E2m1, StridedSweepMatchesBruteForceReference) {
  uint64_t mismatches = 0;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 1021) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(x)) continue;
    const double m = std::fabs(static_cast<double>(x));
    const uint8_t rne = static_cast<uint8_t>((x < 0 ? 8 : 0) | reference_magnitude(m, false));
    const uint8_t tz_mag = reference_magnitude(m, true);
    const uint8_t tz = static_cast<uint8_t>((x < 0 && tz_mag != 0 ? 8 : 0) | tz_mag);
    if ((f32_to_e2m1(x) != rne ||
         f32_to_e2m1_ties_toward_zero(x, E2m1ZeroSign::kNeverNegZero) != tz) &&
        ++mismatches < 10) {
      ADD_FAILURE() << "bits " << std::hex << bits;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace m2fp4
