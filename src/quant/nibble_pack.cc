#include "quant/nibble_pack.h"

#include "base/error.h"

namespace m2fp4 {

void pack_nibbles(std::span<const uint8_t> codes, std::span<uint8_t> packed) {
  M2_CHECK(codes.size() % 2 == 0 && packed.size() == codes.size() / 2,
           "pack_nibbles: ", codes.size(), " codes do not fill ", packed.size(), " bytes");
  for (size_t j = 0; j < packed.size(); ++j) {
    packed[j] = static_cast<uint8_t>((codes[2 * j] & 0xF) | (codes[2 * j + 1] << 4));
  }
}

void unpack_nibbles(std::span<const uint8_t> packed, std::span<uint8_t> codes) {
  M2_CHECK(codes.size() == packed.size() * 2, "unpack_nibbles: ", packed.size(),
           " bytes do not fill ", codes.size(), " codes");
  for (size_t j = 0; j < packed.size(); ++j) {
    codes[2 * j] = packed[j] & 0xF;
    codes[2 * j + 1] = packed[j] >> 4;
  }
}

void pack_nibbles_split_halves(std::span<const uint8_t> codes, int64_t block,
                               std::span<uint8_t> packed) {
  M2_CHECK(block > 0 && block % 2 == 0 && codes.size() % static_cast<size_t>(block) == 0 &&
               packed.size() == codes.size() / 2,
           "pack_nibbles_split_halves: bad sizes (", codes.size(), " codes, block ", block, ", ",
           packed.size(), " bytes)");
  const size_t half = static_cast<size_t>(block) / 2;
  for (size_t b = 0; b < codes.size(); b += static_cast<size_t>(block)) {
    for (size_t j = 0; j < half; ++j) {
      packed[b / 2 + j] = static_cast<uint8_t>((codes[b + j] & 0xF) | (codes[b + half + j] << 4));
    }
  }
}

void unpack_nibbles_split_halves(std::span<const uint8_t> packed, int64_t block,
                                 std::span<uint8_t> codes) {
  M2_CHECK(block > 0 && block % 2 == 0 && codes.size() % static_cast<size_t>(block) == 0 &&
               codes.size() == packed.size() * 2,
           "unpack_nibbles_split_halves: bad sizes (", packed.size(), " bytes, block ", block, ", ",
           codes.size(), " codes)");
  const size_t half = static_cast<size_t>(block) / 2;
  for (size_t b = 0; b < codes.size(); b += static_cast<size_t>(block)) {
    for (size_t j = 0; j < half; ++j) {
      codes[b + j] = packed[b / 2 + j] & 0xF;
      codes[b + half + j] = packed[b / 2 + j] >> 4;
    }
  }
}

}  // namespace m2fp4
