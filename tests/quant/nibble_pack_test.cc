// Nibble packing orders (quant-formats.md §2.4, §3.2).
#include "quant/nibble_pack.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"

namespace m2fp4 {
namespace {

TEST(NibblePack, EvenIndexInTheLowNibble) {
  const std::vector<uint8_t> codes = {0x1, 0x2, 0xF, 0x0, 0x8, 0x9};
  std::vector<uint8_t> packed(3);
  pack_nibbles(codes, packed);
  EXPECT_EQ(packed, (std::vector<uint8_t>{0x21, 0x0F, 0x98}));
  std::vector<uint8_t> back(6);
  unpack_nibbles(packed, back);
  EXPECT_EQ(back, codes);
  std::vector<uint8_t> odd(5);
  EXPECT_THROW(pack_nibbles(odd, packed), Error);
}

TEST(NibblePack, GgmlSplitHalves) {
  std::vector<uint8_t> codes(32);
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<uint8_t>(i % 16);
  std::vector<uint8_t> packed(16);
  pack_nibbles_split_halves(codes, 16, packed);
  // Each block of 16: byte j = q[j] | q[j + 8] << 4.
  for (int b = 0; b < 2; ++b) {
    for (int j = 0; j < 8; ++j) {
      EXPECT_EQ(packed[b * 8 + j], codes[b * 16 + j] | (codes[b * 16 + j + 8] << 4));
    }
  }
  EXPECT_EQ(packed[0], 0x80);
  std::vector<uint8_t> back(32);
  unpack_nibbles_split_halves(packed, 16, back);
  EXPECT_EQ(back, codes);
  EXPECT_THROW(pack_nibbles_split_halves(codes, 12, packed), Error);
}

}  // namespace
}  // namespace m2fp4
