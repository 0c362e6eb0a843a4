// IQ4_NL codebook (quant-formats.md §3.3): the levels and the nearest-level rule.
#include "numerics/iq4nl.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

namespace m2fp4 {
namespace {

TEST(Iq4nl, LevelsAreTheLlamaCppTable) {
  const int expected[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                            1,    13,   25,  38,  53,  69,  89,  113};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(kIq4nlLevels[i], expected[i]);
    EXPECT_EQ(iq4nl_level(static_cast<uint8_t>(i)), static_cast<float>(expected[i]));
  }
}

TEST(Iq4nl, ExactLevelsMidpointsAndNeighbours) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(iq4nl_nearest_index(kIq4nlLevels[i]), i);
  for (int i = 1; i < 16; ++i) {
    const float mid = (kIq4nlLevels[i - 1] + kIq4nlLevels[i]) / 2.0f;  // exact (half-integers)
    EXPECT_EQ(iq4nl_nearest_index(mid), i) << "midpoints go up";
    EXPECT_EQ(iq4nl_nearest_index(std::nextafter(mid, -1000.0f)), i - 1);
    EXPECT_EQ(iq4nl_nearest_index(std::nextafter(mid, 1000.0f)), i);
  }
  EXPECT_EQ(iq4nl_nearest_index(-500.0f), 0);
  EXPECT_EQ(iq4nl_nearest_index(-INFINITY), 0);
  EXPECT_EQ(iq4nl_nearest_index(500.0f), 15);
  EXPECT_EQ(iq4nl_nearest_index(INFINITY), 15);
  EXPECT_EQ(iq4nl_nearest_index(0.0f), 8);
  EXPECT_EQ(iq4nl_nearest_index(-4.5f), 8);  // midpoint of -10 and 1
}

TEST(Iq4nl, TableLookupEqualsComparisonsOnAStridedSweep) {
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 257) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(bits));
    ASSERT_EQ(iq4nl_nearest_index_table(x), iq4nl_nearest_index(x)) << x;
  }
  // Every midpoint and its float32 neighbours.
  for (int i = 1; i < 16; ++i) {
    const float mid = (kIq4nlLevels[i - 1] + kIq4nlLevels[i]) / 2.0f;
    for (float x : {mid, std::nextafter(mid, -1000.0f), std::nextafter(mid, 1000.0f)}) {
      EXPECT_EQ(iq4nl_nearest_index_table(x), iq4nl_nearest_index(x)) << x;
    }
  }
  EXPECT_EQ(iq4nl_nearest_index_table(NAN), 0);
}

TEST(Iq4nl, StridedSweepMatchesNearestByDistance) {
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4093) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(x)) continue;
    if (x <= -127.0f || x >= 113.0f) {  // outside the grid; distances below are exact in double
      ASSERT_EQ(iq4nl_nearest_index(x), x <= -127.0f ? 0 : 15) << x;
      continue;
    }
    int best = 0;
    double best_err = std::fabs(static_cast<double>(x) - kIq4nlLevels[0]);
    for (int i = 1; i < 16; ++i) {
      const double err = std::fabs(static_cast<double>(x) - kIq4nlLevels[i]);
      if (err <= best_err) {  // ties go to the upper level
        best = i;
        best_err = err;
      }
    }
    ASSERT_EQ(iq4nl_nearest_index(x), best) << x;
    ASSERT_EQ(iq4nl_nearest_index_table(x), best) << x;
  }
}

}  // namespace
}  // namespace m2fp4
