// Incremental UTF-8 well-formedness (RFC 3629 / Unicode table 3-7: no overlong forms, no
// surrogates, nothing past U+10FFFF), one byte at a time, in three bytes of state.
#pragma once

#include <cstdint>

namespace m2fp4 {

struct Utf8Checker {
  uint8_t left = 0;   // continuation bytes still expected
  uint8_t lo = 0x80;  // the next continuation byte's range (narrower for some second bytes)
  uint8_t hi = 0xBF;

  // Whether `byte` may come next; advances on true.
  bool feed(uint8_t byte) {
    if (left > 0) {
      if (byte < lo || byte > hi) return false;
      --left;
      lo = 0x80;
      hi = 0xBF;
      return true;
    }
    if (byte < 0x80) return true;
    lo = 0x80;
    hi = 0xBF;
    if (byte >= 0xC2 && byte <= 0xDF) {
      left = 1;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      left = 2;
      if (byte == 0xE0) lo = 0xA0;  // overlong
      if (byte == 0xED) hi = 0x9F;  // surrogates
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      left = 3;
      if (byte == 0xF0) lo = 0x90;  // overlong
      if (byte == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return false;  // a stray continuation byte, C0/C1 or F5..FF
    }
    return true;
  }
  // No character is cut.
  bool at_boundary() const { return left == 0; }
  bool operator==(const Utf8Checker&) const = default;
};

}  // namespace m2fp4
