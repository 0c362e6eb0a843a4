#include "text/tokenizer/unicode.h"

#include <array>

namespace m2fp4 {
namespace {

// For a lead byte: how many continuation bytes follow and the allowed range of the first one
// (the narrower ranges exclude overlong forms, surrogates and code points above U+10FFFF).
struct LeadInfo {
  uint8_t continuation_count;  // 0 for ASCII; 0xFF for a byte that cannot start a sequence
  uint8_t second_min;
  uint8_t second_max;
};

constexpr LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {0, 0, 0};
  if (b < 0xC2) return {0xFF, 0, 0};
  if (b < 0xE0) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b < 0xF0) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b < 0xF4) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {0xFF, 0, 0};
}

constexpr std::array<LeadInfo, 256> make_lead_table() {
  std::array<LeadInfo, 256> table{};
  for (int b = 0; b < 256; ++b) table[b] = lead_info(static_cast<uint8_t>(b));
  return table;
}

constexpr std::array<LeadInfo, 256> kLead = make_lead_table();

// Outcome of examining the sequence that starts at bytes[pos].
enum class SeqKind { kValid, kInvalid, kIncomplete };

// Sets `length` to the sequence length (valid) or to the length of the ill-formed prefix that
// one U+FFFD replaces (invalid), or the bytes available (incomplete).
inline SeqKind examine(const uint8_t* bytes, size_t n, size_t pos, size_t& length) {
  const LeadInfo info = kLead[bytes[pos]];
  if (info.continuation_count == 0) {
    length = 1;
    return SeqKind::kValid;
  }
  if (info.continuation_count == 0xFF) {
    length = 1;
    return SeqKind::kInvalid;
  }
  for (size_t k = 1; k <= info.continuation_count; ++k) {
    if (pos + k >= n) {
      length = n - pos;
      return SeqKind::kIncomplete;
    }
    const uint8_t c = bytes[pos + k];
    const bool ok =
        k == 1 ? (c >= info.second_min && c <= info.second_max) : (c >= 0x80 && c <= 0xBF);
    if (!ok) {
      length = k;
      return SeqKind::kInvalid;
    }
  }
  length = info.continuation_count + 1u;
  return SeqKind::kValid;
}

constexpr std::array<char32_t, 256> make_byte_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

constexpr std::array<char32_t, 256> kByteToUnicode = make_byte_to_unicode();

// The byte-level alphabet's code points all lie below U+0144.
constexpr size_t kAlphabetLimit = 0x144;

constexpr std::array<int16_t, kAlphabetLimit> make_unicode_to_byte() {
  std::array<int16_t, kAlphabetLimit> table{};
  for (auto& v : table) v = -1;
  for (int b = 0; b < 256; ++b) table[kByteToUnicode[b]] = static_cast<int16_t>(b);
  return table;
}

constexpr std::array<int16_t, kAlphabetLimit> kUnicodeToByte = make_unicode_to_byte();

// UTF-8 of each byte's byte-level character (1 or 2 bytes), precomputed for the encode path.
struct ByteLevelUtf8 {
  std::array<std::array<char, 2>, 256> bytes{};
  std::array<uint8_t, 256> length{};
};

ByteLevelUtf8 make_byte_level_utf8() {
  ByteLevelUtf8 t;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, kByteToUnicode[b]);
    t.length[b] = static_cast<uint8_t>(s.size());
    for (size_t i = 0; i < s.size(); ++i) t.bytes[b][i] = s[i];
  }
  return t;
}

const ByteLevelUtf8& byte_level_utf8() {
  static const ByteLevelUtf8 table = make_byte_level_utf8();
  return table;
}

constexpr const char kReplacement[] = "\xEF\xBF\xBD";

}  // namespace

size_t find_invalid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t pos = 0;
  while (pos < n) {
    if (bytes[pos] < 0x80) {
      ++pos;
      continue;
    }
    size_t length = 0;
    if (examine(bytes, n, pos, length) != SeqKind::kValid) return pos;
    pos += length;
  }
  return n;
}

bool is_valid_utf8(std::string_view text) {
  return find_invalid_utf8(text) == text.size();
}

char32_t decode_utf8(std::string_view text, size_t pos, size_t& length) {
  const auto* b = reinterpret_cast<const uint8_t*>(text.data()) + pos;
  if (b[0] < 0x80) {
    length = 1;
    return b[0];
  }
  if (b[0] < 0xE0) {
    length = 2;
    return (char32_t(b[0] & 0x1F) << 6) | (b[1] & 0x3F);
  }
  if (b[0] < 0xF0) {
    length = 3;
    return (char32_t(b[0] & 0x0F) << 12) | (char32_t(b[1] & 0x3F) << 6) | (b[2] & 0x3F);
  }
  length = 4;
  return (char32_t(b[0] & 0x07) << 18) | (char32_t(b[1] & 0x3F) << 12) |
         (char32_t(b[2] & 0x3F) << 6) | (b[3] & 0x3F);
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t append_utf8_lossy(std::string_view text, bool final, std::string& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t pos = 0;
  size_t run_start = 0;  // start of the pending run of valid bytes, copied in one go
  while (pos < n) {
    if (bytes[pos] < 0x80) {
      ++pos;
      continue;
    }
    size_t length = 0;
    const SeqKind kind = examine(bytes, n, pos, length);
    if (kind == SeqKind::kValid) {
      pos += length;
      continue;
    }
    out.append(text.data() + run_start, pos - run_start);
    if (kind == SeqKind::kIncomplete && !final) return pos;
    out.append(kReplacement);
    pos += length;
    run_start = pos;
  }
  out.append(text.data() + run_start, n - run_start);
  return n;
}

char32_t byte_to_unicode(uint8_t byte) {
  return kByteToUnicode[byte];
}

int unicode_to_byte(char32_t cp) {
  return cp < kAlphabetLimit ? kUnicodeToByte[cp] : -1;
}

void append_byte_level(std::string_view raw, std::string& out) {
  const ByteLevelUtf8& table = byte_level_utf8();
  for (char c : raw) {
    const auto b = static_cast<uint8_t>(c);
    out.append(table.bytes[b].data(), table.length[b]);
  }
}

bool append_bytes_from_byte_level(std::string_view token, std::string& out) {
  const size_t mark = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const auto lead = static_cast<uint8_t>(token[pos]);
    const size_t length = utf8_sequence_length(lead);
    if (pos + length > token.size()) break;
    size_t decoded_length = 0;
    const char32_t cp = decode_utf8(token, pos, decoded_length);
    const int byte = unicode_to_byte(cp);
    if (byte < 0) break;
    out.push_back(static_cast<char>(byte));
    pos += decoded_length;
  }
  if (pos == token.size()) return true;
  out.resize(mark);
  return false;
}

}  // namespace m2fp4
