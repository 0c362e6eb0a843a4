// UTF-8 validation, Rust-style lossy decoding and the GPT-2 byte-level alphabet.
#include <gtest/gtest.h>

#include <string>

#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(ByteLevelAlphabet, MatchesGpt2Table) {
  // Printable Latin-1 stands for itself; the 68 others count up from U+0100 in byte order.
  EXPECT_EQ(byte_to_unicode('!'), U'!');
  EXPECT_EQ(byte_to_unicode('~'), U'~');
  EXPECT_EQ(byte_to_unicode(0xA1), U'\u00A1');
  EXPECT_EQ(byte_to_unicode(0xFF), U'\u00FF');
  EXPECT_EQ(byte_to_unicode(0x00), U'\u0100');
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010A');  // "Ċ"
  EXPECT_EQ(byte_to_unicode(' '), U'\u0120');   // "Ġ"
  EXPECT_EQ(byte_to_unicode(0x7F), U'\u0121');
  EXPECT_EQ(byte_to_unicode(0xA0), U'\u0142');
  EXPECT_EQ(byte_to_unicode(0xAD), U'\u0143');
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(unicode_to_byte(byte_to_unicode(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(unicode_to_byte(U' '), -1);
  EXPECT_EQ(unicode_to_byte(U'\u0144'), -1);
}

TEST(ByteLevelAlphabet, RoundTripsText) {
  const std::string raw = "Hi \n\t\xE4\xBD\xA0\x00\xFF";
  std::string mapped;
  append_byte_level(std::string_view(raw.data(), raw.size()), mapped);
  EXPECT_EQ(mapped.substr(0, 6), "Hi\xC4\xA0\xC4\x8A");  // "HiĠĊ"
  std::string back;
  ASSERT_TRUE(append_bytes_from_byte_level(mapped, back));
  EXPECT_EQ(back, raw);
  // A token with a character outside the alphabet is not byte-level.
  std::string out = "keep";
  EXPECT_FALSE(append_bytes_from_byte_level("<\xEF\xBD\x9C>", out));  // "<｜>"
  EXPECT_EQ(out, "keep");
}

TEST(Utf8, ValidatesStrictly) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));          // overlong NUL
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\x80"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\x80"));
  EXPECT_FALSE(is_valid_utf8("ab\xE4\xBD"));  // truncated
  EXPECT_EQ(find_invalid_utf8("ab\xE4\xBD"), 2u);
}

TEST(Utf8, LossyReplacesMaximalInvalidPrefixes) {
  // Rust's String::from_utf8_lossy documentation example.
  EXPECT_EQ(utf8_lossy("Hello \xF0\x90\x80World"), "Hello " + kFffd + "World");
  // E0 needs A0..BF next: E0 alone is one sequence, 80 another.
  EXPECT_EQ(utf8_lossy("\xE0\x80"), kFffd + kFffd);
  EXPECT_EQ(utf8_lossy("\xF4\x90"), kFffd + kFffd);
  EXPECT_EQ(utf8_lossy("\xC3"), kFffd);
  EXPECT_EQ(utf8_lossy("a\xFF\xFE"
                       "b"),
            "a" + kFffd + kFffd + "b");
  EXPECT_EQ(utf8_lossy("\xE4\xBD\xA0\xE4\xBD"), "\xE4\xBD\xA0" + kFffd);
}

TEST(Utf8, LossyHoldsBackOnlyAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(append_utf8_lossy("ab\xE4\xBD", false, out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_utf8_lossy("ab\xE4\x41", false, out), 4u);  // cannot complete: replaced now
  EXPECT_EQ(out, "ab" + kFffd + "A");
  out.clear();
  EXPECT_EQ(append_utf8_lossy("\xF0\x9F\x98", false, out), 0u);
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace m2fp4
