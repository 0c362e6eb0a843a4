#include "text/constraints/json_matcher.h"

namespace m2fp4 {
namespace {

bool is_ws(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}
int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kLiterals[3] = {"true", "false", "null"};

}  // namespace

JsonMatcher::JsonMatcher(uint8_t top_level_types) : top_types_(top_level_types) {}

bool JsonMatcher::may_end() const {
  if (mode_ == Mode::kDone) return true;
  return mode_ == Mode::kNumber && depth_ == 0 &&
         (num_ == Num::kZero || num_ == Num::kInt || num_ == Num::kFrac || num_ == Num::kExpInt);
}

bool JsonMatcher::whitespace(uint8_t byte) {
  (void)byte;
  if (ws_run_ >= kMaxWhitespaceRun) return false;
  ++ws_run_;
  return true;
}

bool JsonMatcher::push(bool object) {
  if (depth_ >= kMaxDepth) return false;
  const int bit = depth_;
  if (object) {
    stack_[bit / 64] |= uint64_t{1} << (bit % 64);
  } else {
    stack_[bit / 64] &= ~(uint64_t{1} << (bit % 64));
  }
  ++depth_;
  return true;
}

bool JsonMatcher::pop(bool object) {
  if (depth_ == 0 || top_is_object() != object) return false;
  --depth_;
  return end_value();
}

bool JsonMatcher::end_value() {
  mode_ = depth_ == 0 ? Mode::kDone : Mode::kAfterValue;
  return true;
}

bool JsonMatcher::start_value(uint8_t byte) {
  if (depth_ == 0) {
    // The top-level value's type must be allowed.
    uint8_t type = 0;
    if (byte == '{') type = kJsonObject;
    if (byte == '[') type = kJsonArray;
    if (byte == '"') type = kJsonString;
    if (byte == '-' || is_digit(byte)) type = kJsonNumber | kJsonInteger;
    if (byte == 't' || byte == 'f') type = kJsonBoolean;
    if (byte == 'n') type = kJsonNull;
    if ((type & top_types_) == 0) return false;
  }
  switch (byte) {
    case '{':
      if (!push(true)) return false;
      mode_ = Mode::kObjectFirst;
      return true;
    case '[':
      if (!push(false)) return false;
      mode_ = Mode::kArrayFirst;
      return true;
    case '"':
      mode_ = Mode::kString;
      str_ = Str::kPlain;
      key_ = false;
      return true;
    case 't':
    case 'f':
    case 'n':
      mode_ = Mode::kLiteral;
      literal_ = byte == 't' ? 0 : byte == 'f' ? 1 : 2;
      literal_pos_ = 1;
      return true;
    default:
      break;
  }
  if (byte == '-' || is_digit(byte)) {
    mode_ = Mode::kNumber;
    num_ = byte == '-' ? Num::kMinus : byte == '0' ? Num::kZero : Num::kInt;
    return true;
  }
  return false;
}

// A byte after a complete number: what follows a value.
bool JsonMatcher::after_number(uint8_t byte) {
  if (depth_ == 0) return false;  // nothing follows the top-level value
  mode_ = Mode::kAfterValue;
  return feed(byte);
}

bool JsonMatcher::string_byte(uint8_t byte) {
  switch (str_) {
    case Str::kPlain:
      if (!utf8_.at_boundary()) return utf8_.feed(byte);
      if (byte == '"') {
        if (key_) {
          mode_ = Mode::kColon;
          return true;
        }
        return end_value();
      }
      if (byte == '\\') {
        str_ = Str::kEscape;
        return true;
      }
      if (byte < 0x20) return false;
      return utf8_.feed(byte);
    case Str::kEscape:
      if (low_expected_) {
        // After a high surrogate only `\u` + a low surrogate may follow.
        if (byte != 'u') return false;
      }
      switch (byte) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          str_ = Str::kPlain;
          return true;
        case 'u':
          str_ = Str::kHex;
          hex_left_ = 4;
          hex_ = 0;
          return true;
        default:
          return false;
      }
    case Str::kHex: {
      const int v = hex_value(byte);
      if (v < 0) return false;
      hex_ = static_cast<uint16_t>(hex_ << 4 | v);
      --hex_left_;
      if (hex_left_ == 2) {
        // Two digits decide the surrogate class: D8..DB high, DC..DF low.
        const bool high = hex_ >= 0xD8 && hex_ <= 0xDB;
        const bool low = hex_ >= 0xDC && hex_ <= 0xDF;
        if (low_expected_ ? !low : low) return false;
        if (low_expected_) {
          low_expected_ = false;
        } else if (high) {
          high_pending_ = true;
        }
      }
      if (hex_left_ == 0) {
        str_ = Str::kPlain;
        if (high_pending_) {
          high_pending_ = false;
          low_expected_ = true;
          str_ = Str::kLowBackslash;
        }
      }
      return true;
    }
    case Str::kLowBackslash:
      if (byte != '\\') return false;
      str_ = Str::kEscape;
      return true;
  }
  return false;
}

bool JsonMatcher::feed(uint8_t byte) {
  const bool ws = is_ws(byte);
  if (!ws && mode_ != Mode::kString) ws_run_ = 0;
  switch (mode_) {
    case Mode::kValue:
      if (ws) return whitespace(byte);
      return start_value(byte);
    case Mode::kArrayFirst:
      if (ws) return whitespace(byte);
      if (byte == ']') return pop(false);
      return start_value(byte);
    case Mode::kObjectFirst:
      if (ws) return whitespace(byte);
      if (byte == '}') return pop(true);
      [[fallthrough]];
    case Mode::kKey:
      if (ws) return whitespace(byte);
      if (byte != '"') return false;
      mode_ = Mode::kString;
      str_ = Str::kPlain;
      key_ = true;
      return true;
    case Mode::kColon:
      if (ws) return whitespace(byte);
      if (byte != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kAfterValue:
      if (ws) return whitespace(byte);
      if (byte == ',') {
        mode_ = top_is_object() ? Mode::kKey : Mode::kValue;
        return true;
      }
      if (byte == '}') return pop(true);
      if (byte == ']') return pop(false);
      return false;
    case Mode::kString:
      return string_byte(byte);
    case Mode::kLiteral: {
      const std::string_view lit = kLiterals[literal_];
      if (byte != static_cast<uint8_t>(lit[literal_pos_])) return false;
      if (++literal_pos_ == lit.size()) return end_value();
      return true;
    }
    case Mode::kNumber: {
      const bool integer_only =
          depth_ == 0 && (top_types_ & kJsonInteger) && !(top_types_ & kJsonNumber);
      switch (num_) {
        case Num::kMinus:
          if (byte == '0') {
            num_ = Num::kZero;
          } else if (is_digit(byte)) {
            num_ = Num::kInt;
          } else {
            return false;
          }
          return true;
        case Num::kZero:
        case Num::kInt:
          if (is_digit(byte) && num_ == Num::kInt) return true;
          if (byte == '.' && !integer_only) {
            num_ = Num::kDot;
            return true;
          }
          if ((byte == 'e' || byte == 'E') && !integer_only) {
            num_ = Num::kExp;
            return true;
          }
          return after_number(byte);
        case Num::kDot:
          if (!is_digit(byte)) return false;
          num_ = Num::kFrac;
          return true;
        case Num::kFrac:
          if (is_digit(byte)) return true;
          if (byte == 'e' || byte == 'E') {
            num_ = Num::kExp;
            return true;
          }
          return after_number(byte);
        case Num::kExp:
          if (byte == '+' || byte == '-') {
            num_ = Num::kExpSign;
            return true;
          }
          [[fallthrough]];
        case Num::kExpSign:
          if (!is_digit(byte)) return false;
          num_ = Num::kExpInt;
          return true;
        case Num::kExpInt:
          if (is_digit(byte)) return true;
          return after_number(byte);
      }
      return false;
    }
    case Mode::kDone:
      return false;
  }
  return false;
}

}  // namespace m2fp4
