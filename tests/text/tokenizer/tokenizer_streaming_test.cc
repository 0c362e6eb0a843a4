// StreamingDecoder: text comes out as soon as it forms whole UTF-8 characters, never half of
// one, and nothing is lost, whichever byte boundaries the tokens cut the text at.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/tokenizer/tokenizer.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

// "a", "é" (2 bytes), "你" (3), "😀" (4), "b", and a ZWJ emoji sequence.
const std::string kText =
    "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80"
    "b\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9";

std::string byte_level(std::string_view raw) {
  std::string out;
  append_byte_level(raw, out);
  return out;
}

// A tokenizer whose vocabulary has every byte (ids 0..255) and every substring of kText's
// bytes, so ids can cut the text anywhere. `substring_ids[i][j]` is the id of bytes [i, j).
Tokenizer build_substring_tokenizer(std::vector<std::vector<int32_t>>& substring_ids) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, static_cast<char>(b)))] = b;
  const size_t n = kText.size();
  substring_ids.assign(n + 1, std::vector<int32_t>(n + 1, -1));
  int32_t next = 256;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j <= n; ++j) {
      const std::string key = byte_level(kText.substr(i, j - i));
      if (!vocab.contains(key)) vocab[key] = next++;
      substring_ids[i][j] = vocab[key].get<int32_t>();
    }
  }
  const nlohmann::json byte_level_step = {{"type", "ByteLevel"},
                                          {"add_prefix_space", false},
                                          {"trim_offsets", false},
                                          {"use_regex", false}};
  const nlohmann::json spec = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", next},
         {"content", "<eos>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"pre_tokenizer", byte_level_step},
      {"decoder", byte_level_step},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  return Tokenizer::from_json_text(spec.dump());
}

// The longest prefix of kText[0, fed) that ends on a character boundary.
std::string complete_prefix(size_t fed) {
  size_t end = 0;
  size_t pos = 0;
  while (pos < fed) {
    pos += utf8_sequence_length(static_cast<uint8_t>(kText[pos]));
    if (pos <= fed) end = pos;
  }
  return kText.substr(0, end);
}

TEST(StreamingDecoder, SplitsAtEveryByteBoundaryGiveWholeCharacters) {
  std::vector<std::vector<int32_t>> ids_of;
  const Tokenizer tokenizer = build_substring_tokenizer(ids_of);
  const size_t n = kText.size();
  // Every way to cut the text into up to three tokens.
  for (size_t i = 0; i <= n; ++i) {
    for (size_t j = i; j <= n; ++j) {
      std::vector<size_t> cuts = {0, i, j, n};
      StreamingDecoder stream(tokenizer);
      std::string emitted;
      for (size_t k = 0; k + 1 < cuts.size(); ++k) {
        if (cuts[k] == cuts[k + 1]) continue;
        const std::string chunk = stream.feed(ids_of[cuts[k]][cuts[k + 1]]);
        EXPECT_TRUE(is_valid_utf8(chunk)) << "cut " << i << "," << j;
        emitted += chunk;
        EXPECT_EQ(emitted, complete_prefix(cuts[k + 1])) << "cut " << i << "," << j;
      }
      emitted += stream.flush();
      EXPECT_EQ(emitted, kText) << "cut " << i << "," << j;
      EXPECT_EQ(stream.pending_bytes(), 0u);
    }
  }
}

TEST(StreamingDecoder, ByteByByteEqualsDecode) {
  std::vector<std::vector<int32_t>> ids_of;
  const Tokenizer tokenizer = build_substring_tokenizer(ids_of);
  std::vector<int32_t> ids;
  for (char c : kText) ids.push_back(static_cast<uint8_t>(c));
  StreamingDecoder stream(tokenizer);
  std::string emitted;
  for (size_t k = 0; k < ids.size(); ++k) {
    emitted += stream.feed(ids[k]);
    EXPECT_EQ(emitted, complete_prefix(k + 1));
    EXPECT_LE(stream.pending_bytes(), 3u);
  }
  emitted += stream.flush();
  EXPECT_EQ(emitted, tokenizer.decode(ids));
  EXPECT_EQ(emitted, kText);
}

TEST(StreamingDecoder, IncompleteOrBrokenBytesBecomeReplacementCharacters) {
  std::vector<std::vector<int32_t>> ids_of;
  const Tokenizer tokenizer = build_substring_tokenizer(ids_of);
  const std::string fffd = "\xEF\xBF\xBD";
  StreamingDecoder stream(tokenizer);
  EXPECT_EQ(stream.feed(0xE4), "");
  EXPECT_EQ(stream.feed(0xBD), "");
  EXPECT_EQ(stream.flush(), fffd);  // the end arrived mid-character: one U+FFFD, as decode does
  EXPECT_EQ(tokenizer.decode({0xE4, 0xBD}), fffd);
  // A byte that cannot continue the character releases it as U+FFFD at once.
  EXPECT_EQ(stream.feed(0xE4), "");
  EXPECT_EQ(stream.feed('x'), fffd + "x");
  EXPECT_EQ(stream.feed(0xFF), fffd);
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamingDecoder, SkipsSpecialTokensWhenAsked) {
  std::vector<std::vector<int32_t>> ids_of;
  const Tokenizer tokenizer = build_substring_tokenizer(ids_of);
  const int32_t eos = tokenizer.token_to_id("<eos>");
  ASSERT_GE(eos, 256);
  StreamingDecoder keep(tokenizer, false);
  StreamingDecoder skip(tokenizer, true);
  EXPECT_EQ(keep.feed('a'), "a");
  EXPECT_EQ(keep.feed(eos), "<eos>");
  EXPECT_EQ(skip.feed('a'), "a");
  EXPECT_EQ(skip.feed(eos), "");
  // A special token between the bytes of one character: the bytes still join (as in decode).
  EXPECT_EQ(skip.feed(0xC3), "");
  EXPECT_EQ(skip.feed(eos), "");
  EXPECT_EQ(skip.feed(0xA9), "\xC3\xA9");
  EXPECT_EQ(tokenizer.decode({0xC3, eos, 0xA9}, true), "\xC3\xA9");
}

}  // namespace
}  // namespace m2fp4
