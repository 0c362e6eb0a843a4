// Tokenizer pieces on small hand-made tokenizer.json files whose expected ids follow from the
// vocabulary by hand (bytes are ids 0..255, extra tokens count up from 256), plus a few ids
// from the real Qwen3 tokenizer as Hugging Face `tokenizers` gives them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/pretokenizer.h"
#include "text/tokenizer/tokenizer.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

std::string byte_level(std::string_view raw) {
  std::string out;
  append_byte_level(raw, out);
  return out;
}

// A byte-level BPE tokenizer.json: byte b has id b, `extra` tokens (raw text) ids 256.., merges
// given as raw text pairs. The pre-tokenizer is ByteLevel alone (the whole text is one word).
nlohmann::json small_tokenizer(
    const std::vector<std::string>& extra = {},
    const std::vector<std::pair<std::string, std::string>>& merges = {}) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, static_cast<char>(b)))] = b;
  for (size_t k = 0; k < extra.size(); ++k) vocab[byte_level(extra[k])] = 256 + k;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) merge_list.push_back({byte_level(a), byte_level(b)});
  const nlohmann::json byte_level_step = {{"type", "ByteLevel"},
                                          {"add_prefix_space", false},
                                          {"trim_offsets", false},
                                          {"use_regex", false}};
  return {{"version", "1.0"},
          {"added_tokens", nlohmann::json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level_step},
          {"post_processor", byte_level_step},
          {"decoder", byte_level_step},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

// An added token without an "id": its id is assigned as Hugging Face assigns it (next free).
nlohmann::json added(const std::string& content, bool special = true, bool normalized = false) {
  return {{"content", content}, {"single_word", false},     {"lstrip", false},
          {"rstrip", false},    {"normalized", normalized}, {"special", special}};
}

Tokenizer load(const nlohmann::json& spec) {
  return Tokenizer::from_json_text(spec.dump());
}

std::string load_error(const nlohmann::json& spec) {
  try {
    load(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Tokenizer, BytesWithoutMergesAreTheirOwnIds) {
  const Tokenizer t = load(small_tokenizer());
  EXPECT_THAT(t.encode("hi \n"), ElementsAre(104, 105, 32, 10));
  EXPECT_THAT(t.encode("\xC3\xA9"), ElementsAre(0xC3, 0xA9));
  EXPECT_EQ(t.decode({104, 105, 0xC3, 0xA9}), "hi\xC3\xA9");
  EXPECT_EQ(t.vocab_size(), 256);
}

TEST(Tokenizer, MergesApplyLowestRankFirst) {
  const std::vector<std::string> extra = {"ab", "bc", "abc"};  // ids 256, 257, 258
  EXPECT_THAT(load(small_tokenizer(extra, {{"b", "c"}, {"a", "b"}, {"a", "bc"}})).encode("abc"),
              ElementsAre(258));
  EXPECT_THAT(load(small_tokenizer(extra, {{"a", "b"}, {"b", "c"}})).encode("abc"),
              ElementsAre(256, 'c'));
  EXPECT_THAT(load(small_tokenizer(extra, {{"b", "c"}, {"a", "b"}})).encode("abc"),
              ElementsAre('a', 257));
  // Leftmost first among equal ranks: "aaa" with a+a merges the first pair.
  EXPECT_THAT(load(small_tokenizer({"aa"}, {{"a", "a"}})).encode("aaa"), ElementsAre(256, 'a'));
  EXPECT_THAT(load(small_tokenizer({"aa"}, {{"a", "a"}})).encode("aaaa"), ElementsAre(256, 256));
}

TEST(Tokenizer, IgnoreMergesTakesWholeWordsFromTheVocab) {
  nlohmann::json spec = small_tokenizer({"abc"});
  EXPECT_THAT(load(spec).encode("abc"), ElementsAre('a', 'b', 'c'));
  spec["model"]["ignore_merges"] = true;
  EXPECT_THAT(load(spec).encode("abc"), ElementsAre(256));
}

TEST(Tokenizer, SplitPreTokenizerKeepsMergesInsideWords) {
  nlohmann::json spec = small_tokenizer({"ab"}, {{"a", "b"}});
  spec["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Split"},
                              {"pattern", {{"Regex", "a"}}},
                              {"behavior", "Isolated"},
                              {"invert", false}},
                             spec["pre_tokenizer"]}}};
  EXPECT_THAT(load(spec).encode("abab"), ElementsAre('a', 'b', 'a', 'b'));
}

TEST(AddedTokens, LongestMatchAtTheLeftmostPositionWins) {
  nlohmann::json spec = small_tokenizer();
  spec["added_tokens"] = {added("[A]"), added("[A][B]"), added("[B]")};  // 256, 257, 258
  const Tokenizer t = load(spec);
  EXPECT_THAT(t.encode("x[A][B]y"), ElementsAre('x', 257, 'y'));
  EXPECT_THAT(t.encode("[A]"), ElementsAre(256));
  EXPECT_THAT(t.encode("[A][B"), ElementsAre(256, '[', 'B'));
  EXPECT_THAT(t.encode("[B][A]"), ElementsAre(258, 256));
  EXPECT_EQ(t.token_to_id("[A][B]"), 257);
}

TEST(AddedTokens, StripAndSingleWordOptions) {
  nlohmann::json spec = small_tokenizer();
  nlohmann::json left = added("<L>");
  left["lstrip"] = true;
  nlohmann::json right = added("<R>");
  right["rstrip"] = true;
  nlohmann::json word = added("sw");
  word["single_word"] = true;
  spec["added_tokens"] = {left, right, word};  // 256, 257, 258
  const Tokenizer t = load(spec);
  EXPECT_THAT(t.encode("a  <L>b"), ElementsAre('a', 256, 'b'));
  EXPECT_THAT(t.encode("a  <R>  b"), ElementsAre('a', ' ', ' ', 257, 'b'));
  EXPECT_THAT(t.encode("a sw b"), ElementsAre('a', ' ', 258, ' ', 'b'));
  EXPECT_THAT(t.encode("asw b"), ElementsAre('a', 's', 'w', ' ', 'b'));
  EXPECT_THAT(t.encode("sw,"), ElementsAre(258, ','));
}

TEST(AddedTokens, NormalizedTokensMatchAfterTheNormalizer) {
  nlohmann::json spec = small_tokenizer();
  spec["normalizer"] = {{"type", "Lowercase"}};
  spec["added_tokens"] = {added("HELLO", false, true), added("ABC", true, false)};  // 256, 257
  const Tokenizer t = load(spec);
  EXPECT_THAT(t.encode("HeLLo X"), ElementsAre(256, ' ', 'x'));
  EXPECT_THAT(t.encode("xABC"), ElementsAre('x', 257));
  EXPECT_THAT(t.encode("xabc"), ElementsAre('x', 'a', 'b', 'c'));
  // A normalized token decodes to its normalized form, as in Hugging Face.
  EXPECT_EQ(t.decode({256}), "hello");
}

TEST(AddedTokens, SpecialTokensAreSkippedOnRequest) {
  nlohmann::json spec = small_tokenizer();
  spec["added_tokens"] = {added("<s>"), added("<think>", false), added("<\xEF\xBD\x9C>")};
  const Tokenizer t = load(spec);
  const Ids ids = {256, 'h', 257, 'i', 258};
  EXPECT_EQ(t.decode(ids), "<s>h<think>i<\xEF\xBD\x9C>");
  EXPECT_EQ(t.decode(ids, true), "h<think>i");
  EXPECT_TRUE(t.is_special(256));
  EXPECT_FALSE(t.is_special(257));
}

TEST(Tokenizer, TemplatePostProcessorAddsTokensOnlyWhenAsked) {
  nlohmann::json spec = small_tokenizer();
  spec["added_tokens"] = {added("<s>"), added("</s>")};
  spec["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single",
                             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                            {"special_tokens",
                             {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}},
                              {"</s>", {{"id", "</s>"}, {"ids", {257}}, {"tokens", {"</s>"}}}}}}};
  const Tokenizer t = load(spec);
  EXPECT_THAT(t.encode("a", true), ElementsAre(256, 'a', 257));
  EXPECT_THAT(t.encode("a", false), ElementsAre('a'));
}

TEST(Tokenizer, RefusesUnsupportedComponentsByName) {
  nlohmann::json spec = small_tokenizer();
  spec["model"]["type"] = "WordPiece";
  EXPECT_THAT(load_error(spec), HasSubstr("WordPiece"));

  spec = small_tokenizer();
  spec["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_THAT(load_error(spec), HasSubstr("BertNormalizer"));

  spec = small_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  EXPECT_THAT(load_error(spec), HasSubstr("Whitespace"));

  spec = small_tokenizer();
  spec["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}};
  EXPECT_THAT(load_error(spec), HasSubstr("WordPiece"));

  spec = small_tokenizer();
  spec["post_processor"] = {{"type", "MysteryProcessing"}};
  EXPECT_THAT(load_error(spec), HasSubstr("MysteryProcessing"));

  spec = small_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"Regex", "a"}}},
                           {"behavior", "Sideways"},
                           {"invert", false}};
  EXPECT_THAT(load_error(spec), HasSubstr("Sideways"));

  spec = small_tokenizer();
  spec["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"Regex", "(a"}}},
                           {"behavior", "Isolated"},
                           {"invert", false}};
  EXPECT_THAT(load_error(spec), HasSubstr("regex does not compile"));

  spec = small_tokenizer();
  spec["model"]["dropout"] = 0.1;
  EXPECT_THAT(load_error(spec), HasSubstr("dropout"));

  spec = small_tokenizer();
  spec["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a", "zz"})});
  EXPECT_THAT(load_error(spec), HasSubstr("zz"));

  EXPECT_THAT(load_error(nlohmann::json::parse("{\"model\": 3}")), HasSubstr("model"));
  EXPECT_THROW(Tokenizer::from_json_text("{not json"), Error);
}

TEST(Tokenizer, RejectsBadInputClearly) {
  const Tokenizer t = load(small_tokenizer());
  EXPECT_THROW(t.encode("ab\xFF"), Error);
  EXPECT_THROW(t.decode({1, 256}), Error);
  EXPECT_THROW(t.decode({-1}), Error);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  const Tokenizer t = load(small_tokenizer({"ab", "abc"}, {{"a", "b"}, {"ab", "c"}}));
  std::string text;
  for (int i = 0; i < 200; ++i) text += "abc ab a " + std::to_string(i) + "\n";
  const Ids expected = t.encode(text);
  std::vector<Ids> results(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int r = 0; r < 20; ++r) results[k] = t.encode(text);
    });
  }
  for (auto& th : threads) th.join();
  for (const Ids& r : results) EXPECT_EQ(r, expected);
}

// Hugging Face's documentation example for SplitDelimiterBehavior on "the-final--countdown".
std::vector<std::string> split_pieces(SplitBehavior behavior, bool invert) {
  const std::string text = "the-final--countdown";
  std::vector<RegexMatch> matches;
  UnicodeRegex("-").find_all(text, matches);
  std::vector<RegexMatch> pieces;
  split_by_matches(matches, text.size(), behavior, invert, pieces);
  std::vector<std::string> out;
  for (const auto& p : pieces) out.push_back(text.substr(p.start, p.end - p.start));
  return out;
}

TEST(PreTokenizer, SplitBehaviorsFollowHuggingFace) {
  EXPECT_THAT(split_pieces(SplitBehavior::kRemoved, false),
              ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(split_pieces(SplitBehavior::kIsolated, false),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(split_pieces(SplitBehavior::kMergedWithPrevious, false),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(split_pieces(SplitBehavior::kMergedWithNext, false),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(split_pieces(SplitBehavior::kContiguous, false),
              ElementsAre("the", "-", "final", "--", "countdown"));
  // invert: the words are the matches, the dashes the gaps.
  EXPECT_THAT(split_pieces(SplitBehavior::kRemoved, true), ElementsAre("-", "-", "-"));
  EXPECT_THAT(split_pieces(SplitBehavior::kMergedWithPrevious, true),
              ElementsAre("the", "-final", "-", "-countdown"));
}

TEST(UnicodeRegex, BehavesLikeOniguruma) {
  std::vector<RegexMatch> m;
  // Oniguruma's \s includes U+0085 (PCRE2's does not); U+200B is not a space in either.
  UnicodeRegex("\\s").find_all(
      "a\xC2\x85"
      "b\xE2\x80\x8B",
      m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].start, 1u);
  m.clear();
  // Case-insensitive contractions also match the long s, as in Hugging Face.
  UnicodeRegex("(?i:'s)").find_all("x'S y'\xC5\xBF", m);
  EXPECT_EQ(m.size(), 2u);
  m.clear();
  // Empty matches: one per position, none right after a match.
  UnicodeRegex("a*").find_all("baa", m);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].start, 0u);
  EXPECT_EQ(m[0].end, 0u);
  EXPECT_EQ(m[1].start, 1u);
  EXPECT_EQ(m[1].end, 3u);
  const std::string translated = UnicodeRegex::translate_oniguruma("[^\\s\\p{L}]\\u00e9");
  EXPECT_EQ(translated.rfind("[^\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}\\p{L}", 0), 0u);
  EXPECT_THAT(translated, HasSubstr("\\p{L}\\x{1C89}-\\x{1C8A}"));  // Unicode 16 letters
  EXPECT_THAT(translated, HasSubstr("\\x{31350}-\\x{323AF}]\\x{00e9}"));
  // A letter added in Unicode 16 (U+1C89 CYRILLIC CAPITAL LETTER TJE) is a letter.
  m.clear();
  UnicodeRegex("\\p{L}+").find_all(
      "a\xE1\xB2\x89"
      "b",
      m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].end, 5u);
  EXPECT_THROW(UnicodeRegex("[a&&b]"), Error);
}

TEST(RealTokenizer, Qwen3MatchesHuggingFaceIds) {
  const std::string dir = std::string(M2FP4_SHARED_DIR) + "/tokenizers/qwen3";
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no " << dir;
  const Tokenizer t = Tokenizer::load(dir);
  // Ids from Hugging Face tokenizers 0.23 (Tokenizer.from_file(...).encode(...).ids).
  EXPECT_THAT(t.encode("Hello world"), ElementsAre(9707, 1879));
  EXPECT_THAT(t.encode("<|im_start|>user"), ElementsAre(151644, 872));
  EXPECT_EQ(t.config().eos_token.value_or(""), "<|im_end|>");
  EXPECT_EQ(t.config().eos_id, 151645);
  EXPECT_FALSE(t.config().bos_token.has_value());
  ASSERT_TRUE(t.config().chat_template.has_value());
  EXPECT_THAT(*t.config().chat_template, HasSubstr("<|im_start|>"));
  const std::string text = "\xE4\xBD\xA0\xE5\xA5\xBD world \xF0\x9F\x98\x80!";  // 你好 world 😀!
  EXPECT_EQ(t.decode(t.encode(text)), text);
}

}  // namespace
}  // namespace m2fp4
