// E8M0 (quant-formats.md §1.3) and the exact power-of-two helpers used for MX exponents.
#include "numerics/e8m0.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

namespace m2fp4 {
namespace {

TEST(E8m0, AllCodesDecodeToPowersOfTwo) {
  for (int c = 0; c < 255; ++c) {
    EXPECT_EQ(e8m0_to_f32(static_cast<uint8_t>(c)), std::ldexp(1.0f, c - 127)) << c;
  }
  EXPECT_TRUE(std::isnan(e8m0_to_f32(0xFF)));
  EXPECT_EQ(e8m0_to_f32(0x7F), 1.0f);
  EXPECT_EQ(e8m0_to_f32(0xFE), std::ldexp(1.0f, 127));
  EXPECT_EQ(e8m0_to_f32(0x00), std::ldexp(1.0f, -127));
}

TEST(E8m0, Exp2IntIsExactOverTheFloat32Range) {
  for (int e = -149; e <= 127; ++e) EXPECT_EQ(exp2_int(e), std::ldexp(1.0f, e)) << e;
}

TEST(E8m0, FromExponentClamps) {
  EXPECT_EQ(e8m0_from_exponent(0), 127);
  EXPECT_EQ(e8m0_from_exponent(-127), 0);
  EXPECT_EQ(e8m0_from_exponent(-200), 0);
  EXPECT_EQ(e8m0_from_exponent(127), 254);
  EXPECT_EQ(e8m0_from_exponent(500), 254);
}

TEST(E8m0, FloorAndCeilLog2AreExactOnAStridedSweep) {
  for (uint64_t bits = 1; bits < 0x7F800000u; bits += 997) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(bits));
    const int f = std::ilogb(x);  // exact floor(log2) for finite non-zero x
    ASSERT_EQ(floor_log2(x), f) << std::hex << bits;
    ASSERT_EQ(ceil_log2(x), std::ldexp(1.0f, f) == x ? f : f + 1) << std::hex << bits;
    ASSERT_EQ(floor_log2(-x), f);
  }
  EXPECT_EQ(floor_log2(std::bit_cast<float>(1u)), -149);
  EXPECT_EQ(ceil_log2(1.0f), 0);
  EXPECT_EQ(ceil_log2(std::nextafter(1.0f, 2.0f)), 1);
  EXPECT_EQ(floor_log2(std::nextafter(1.0f, 0.0f)), -1);
}

TEST(E8m0, NearestRoundsTiesUpAndRejectsNonPositive) {
  EXPECT_EQ(f32_to_e8m0_nearest(1.0f), 127);
  EXPECT_EQ(f32_to_e8m0_nearest(1.4999999f), 127);
  EXPECT_EQ(f32_to_e8m0_nearest(1.5f), 128);
  EXPECT_EQ(f32_to_e8m0_nearest(0.75f), 127);
  EXPECT_EQ(f32_to_e8m0_nearest(448.0f), 136);
  EXPECT_EQ(f32_to_e8m0_nearest(std::ldexp(1.0f, 127)), 254);
  EXPECT_EQ(f32_to_e8m0_nearest(std::ldexp(1.5f, 127)), kE8m0Nan);
  for (float bad : {0.0f, -0.0f, -1.0f, INFINITY, -INFINITY, NAN}) {
    EXPECT_EQ(f32_to_e8m0_nearest(bad), kE8m0Nan) << bad;
  }
  EXPECT_EQ(f32_to_e8m0_nearest(std::ldexp(1.0f, -127)), 0);
  EXPECT_EQ(f32_to_e8m0_nearest(std::ldexp(1.0f, -140)), 0);
  EXPECT_EQ(f32_to_e8m0_nearest(std::ldexp(1.5f, -127)), 1);
}

}  // namespace
}  // namespace m2fp4
