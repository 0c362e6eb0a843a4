// A byte-at-a-time JSON validator (RFC 8259): a pushdown automaton over objects, arrays,
// strings (escapes including \uXXXX, control characters refused, UTF-8 checked as RFC 3629
// defines it: no overlongs, no surrogates, nothing past U+10FFFF), numbers, true/false/null and
// whitespace. It says whether the bytes so far are a prefix of some valid document whose
// top-level value has one of the allowed types; structured output uses it to mask tokens.
//
// The state is a small trivially copyable value (the nesting stack is a bit set, one bit per
// level), so a token-trie walk copies it at every node.
//
// Beyond RFC 8259, to keep generation from running away: nesting is limited to kMaxDepth
// levels, a run of whitespace to kMaxWhitespaceRun bytes, and nothing may follow the top-level
// value (not even whitespace): once it is closed the output is complete.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "text/constraints/utf8_checker.h"

namespace m2fp4 {

// JSON value types, as bits (a top-level type set).
enum JsonTypeBits : uint8_t {
  kJsonObject = 1,
  kJsonArray = 2,
  kJsonString = 4,
  kJsonNumber = 8,    // any number
  kJsonInteger = 16,  // a number without fraction or exponent
  kJsonBoolean = 32,
  kJsonNull = 64,
  kJsonAny = 127,
};

class JsonMatcher {
 public:
  static constexpr int kMaxDepth = 128;
  static constexpr int kMaxWhitespaceRun = 64;

  // `top_level_types`: which JsonTypeBits the document's value may have.
  explicit JsonMatcher(uint8_t top_level_types = kJsonAny);

  // Appends one byte; false if no valid document starts with the bytes so far plus it (the
  // state is then unspecified: feed a copy when probing).
  bool feed(uint8_t byte);
  bool feed(std::string_view bytes) {
    for (char c : bytes) {
      if (!feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  // The top-level value is closed: nothing may follow.
  bool complete() const { return mode_ == Mode::kDone; }
  // The bytes so far are a complete document, though more may follow (a top-level number such
  // as `12` may go on as `123`).
  bool may_end() const;
  int depth() const { return depth_; }
  // Same state: the same bytes are accepted from here on.
  bool operator==(const JsonMatcher&) const = default;

 private:
  enum class Mode : uint8_t {
    kValue,        // a value is next (document start, after ':' or ',' in an array)
    kArrayFirst,   // after '[': a value or ']'
    kObjectFirst,  // after '{': a key or '}'
    kKey,          // after ',' in an object: a key
    kColon,        // after a key
    kAfterValue,   // inside a container after a value: ',' or the closing bracket
    kString,       // inside a string (key_ says whether it is a key)
    kNumber,       // inside a number (num_ says where)
    kLiteral,      // inside true / false / null
    kDone,         // the top-level value is closed
  };
  enum class Num : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kExp, kExpSign, kExpInt };
  // kLowBackslash: after a high surrogate's \uXXXX, whose low half must follow.
  enum class Str : uint8_t { kPlain, kEscape, kHex, kLowBackslash };

  bool start_value(uint8_t byte);
  bool end_value();                 // a value just ended
  bool after_number(uint8_t byte);  // a byte that ends a number
  bool push(bool object);
  bool pop(bool object);
  bool top_is_object() const { return (stack_[(depth_ - 1) / 64] >> ((depth_ - 1) % 64)) & 1; }
  bool whitespace(uint8_t byte);
  bool string_byte(uint8_t byte);

  std::array<uint64_t, 2> stack_{};  // bit d-1: level d is an object (else an array)
  Mode mode_ = Mode::kValue;
  Num num_ = Num::kMinus;
  Str str_ = Str::kPlain;
  uint8_t top_types_;
  uint8_t depth_ = 0;
  uint8_t ws_run_ = 0;
  bool key_ = false;
  uint8_t literal_ = 0;        // kLiteral: 0 true, 1 false, 2 null
  uint8_t literal_pos_ = 0;    // bytes of it matched
  uint8_t hex_left_ = 0;       // kHex: hex digits still expected
  uint16_t hex_ = 0;           // kHex: the digits so far
  bool high_pending_ = false;  // this \u is a high surrogate
  bool low_expected_ = false;  // the next escape must be a low surrogate's \u
  Utf8Checker utf8_;
};

}  // namespace m2fp4
