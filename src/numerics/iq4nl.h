// The IQ4_NL codebook (quant-formats.md §3.3; llama.cpp kvalues_iq4nl): 16 fixed non-uniform int8
// levels, decoded as x = d * level[code] with a per-block (possibly negative) fp16 scale d.
#pragma once

#include <array>
#include <cstdint>

namespace m2fp4 {

inline constexpr std::array<int8_t, 16> kIq4nlLevels = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                        1,    13,   25,  38,  53,  69,  89,  113};

// level[i-1] + level[i] for i = 1..15: index i is chosen once 2x reaches this sum.
inline constexpr std::array<float, 15> kIq4nlDoubledMidpoints = [] {
  std::array<float, 15> t{};
  for (int i = 1; i < 16; ++i) t[i - 1] = static_cast<float>(kIq4nlLevels[i - 1] + kIq4nlLevels[i]);
  return t;
}();

// Index of the level nearest to x (x in level units, i.e. already divided by the scale). Exact
// midpoints go to the upper level; below -127 gives 0 and above 113 gives 15. 2x is exact in
// float32 (barring overflow to inf, which still compares correctly). NaN gives 0.
constexpr uint8_t iq4nl_nearest_index(float x) {
  const float twice = 2.0f * x;
  uint8_t index = 0;
  for (float midpoint : kIq4nlDoubledMidpoints) index += twice >= midpoint ? 1 : 0;
  return index;
}

// Same result as iq4nl_nearest_index, by table: the doubled midpoints are integers, so
// 2x >= midpoint iff floor(2x) >= midpoint, and floor(2x) clamped to [-232, 202] (one below the
// lowest midpoint -231 up to the highest, 202) indexes a table of answers.
inline constexpr int kIq4nlTableLow = -232;
inline constexpr int kIq4nlTableHigh = 202;
inline constexpr std::array<uint8_t, kIq4nlTableHigh - kIq4nlTableLow + 1> kIq4nlIndexTable = [] {
  std::array<uint8_t, kIq4nlTableHigh - kIq4nlTableLow + 1> t{};
  for (int k = kIq4nlTableLow; k <= kIq4nlTableHigh; ++k) {
    uint8_t index = 0;
    for (float midpoint : kIq4nlDoubledMidpoints)
      index += static_cast<float>(k) >= midpoint ? 1 : 0;
    t[k - kIq4nlTableLow] = index;
  }
  return t;
}();

constexpr uint8_t iq4nl_nearest_index_table(float x) {
  float twice = 2.0f * x;
  if (!(twice >= static_cast<float>(kIq4nlTableLow))) twice = kIq4nlTableLow;  // also NaN
  if (twice > static_cast<float>(kIq4nlTableHigh)) twice = kIq4nlTableHigh;
  int k = static_cast<int>(twice);         // truncates toward zero
  if (static_cast<float>(k) > twice) --k;  // floor for negative non-integers
  return kIq4nlIndexTable[k - kIq4nlTableLow];
}

constexpr float iq4nl_level(uint8_t code) {
  return static_cast<float>(kIq4nlLevels[code & 0xFu]);
}

}  // namespace m2fp4
