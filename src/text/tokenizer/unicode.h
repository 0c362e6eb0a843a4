// UTF-8 helpers for the tokenizer: strict validation of input text, the lossy decoding that
// Hugging Face decoders apply to byte strings (Rust's String::from_utf8_lossy), and the GPT-2
// byte <-> character map that byte-level BPE vocabularies are written in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace m2fp4 {

// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view text);

// Byte offset of the first ill-formed sequence in `text`, or text.size() if there is none.
size_t find_invalid_utf8(std::string_view text);

// Decodes the code point starting at text[pos] (which must be valid UTF-8); returns it and sets
// `length` to its byte length.
char32_t decode_utf8(std::string_view text, size_t pos, size_t& length);

// Appends the UTF-8 encoding of `cp` (must be a valid scalar value).
void append_utf8(std::string& out, char32_t cp);

// Byte length of the UTF-8 sequence that `lead` starts (1 for ASCII and for bytes that cannot
// start a sequence).
inline size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return lead < 0xF8 ? 4 : 1;
}

// Lossy UTF-8 decoding with Rust's from_utf8_lossy rules: each maximal prefix of an ill-formed
// sequence becomes one U+FFFD. Appends the decoded text of `bytes` to `out` and returns how many
// bytes were consumed. With final = false, a trailing sequence that is incomplete but could
// still become valid is left unconsumed (the caller keeps it for later bytes); with final = true
// everything is consumed, an incomplete tail becoming one U+FFFD.
size_t append_utf8_lossy(std::string_view bytes, bool final, std::string& out);

inline std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  append_utf8_lossy(bytes, true, out);
  return out;
}

// The GPT-2 byte-level alphabet: every byte is written as one printable character. Printable
// Latin-1 bytes stand for themselves; the other 68 bytes map to U+0100.. in byte order.
char32_t byte_to_unicode(uint8_t byte);

// The byte a byte-level character stands for, or -1 if `cp` is not in the alphabet.
int unicode_to_byte(char32_t cp);

// Maps every byte of `raw` to its byte-level character (UTF-8), appending to `out`.
void append_byte_level(std::string_view raw, std::string& out);

// Inverse of append_byte_level for one token: if every character of `token` is in the
// byte-level alphabet, appends the bytes they stand for and returns true; otherwise appends
// nothing and returns false (Hugging Face's ByteLevel decoder then uses the token's own bytes).
bool append_bytes_from_byte_level(std::string_view token, std::string& out);

}  // namespace m2fp4
