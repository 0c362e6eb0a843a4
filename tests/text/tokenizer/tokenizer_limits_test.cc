// Hostile tokenizer.json files (issue 8): each is refused at load with an m2fp4::Error that names
// tokenizer.json and the part at fault, instead of allocating tens of GB, reading past a buffer,
// letting a nlohmann exception escape, or letting PCRE2 cut a UTF-8 character.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/bpe.h"
#include "text/tokenizer/tokenizer.h"
#include "text/tokenizer/unicode.h"
#include "text/tokenizer/unicode_regex.h"

namespace m2fp4 {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A valid byte-level tokenizer.json: byte b is id b, no merges.
Json byte_tokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    std::string token;
    append_byte_level(std::string(1, static_cast<char>(b)), token);
    vocab[token] = b;
  }
  const Json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  return {{"version", "1.0"},
          {"added_tokens", Json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level},
          {"post_processor", nullptr},
          {"decoder", byte_level},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
}

std::string load_error(const std::string& text) {
  try {
    Tokenizer::from_json_text(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

std::string load_error(const Json& spec) {
  return load_error(spec.dump());
}

TEST(TokenizerLimitsTest, TheBaseFileLoads) {
  const Tokenizer t = Tokenizer::from_json_text(byte_tokenizer().dump());
  EXPECT_EQ(t.decode(t.encode("ok")), "ok");
}

// Ids size the decoding tables: an id near 2^31 used to ask for tens of GB.
TEST(TokenizerLimitsTest, VocabIdFarBeyondTheVocabularyIsRefused) {
  Json spec = byte_tokenizer();
  spec["model"]["vocab"]["far"] = 2147483000;
  EXPECT_THAT(load_error(spec), AllOf(HasSubstr("tokenizer.json"), HasSubstr("vocab id 2147483000"),
                                      HasSubstr("out of range")));
  spec["model"]["vocab"]["far"] = uint64_t{1} << 40;
  EXPECT_THAT(load_error(spec), HasSubstr("out of range"));
  // Holes are fine while ids stay within twice the size plus 65536.
  EXPECT_EQ(max_vocab_id(257), 2 * 257 + 65536);
  spec["model"]["vocab"]["far"] = max_vocab_id(257) - 1;
  EXPECT_EQ(load_error(spec), "(loaded)");
  spec["model"]["vocab"]["far"] = max_vocab_id(257);
  EXPECT_THAT(load_error(spec), HasSubstr("out of range"));
}

// An added token whose content is a vocabulary entry takes that entry's id, so the same bound
// covers it; the id written in the file is only compared (as Hugging Face does).
TEST(TokenizerLimitsTest, AddedTokenIdsStayBounded) {
  Json spec = byte_tokenizer();
  spec["added_tokens"].push_back({{"id", 2147483646}, {"content", "<big>"}, {"special", true}});
  const Tokenizer t = Tokenizer::from_json_text(spec.dump());
  EXPECT_EQ(t.token_to_id("<big>"), 256);
  EXPECT_EQ(t.vocab_size(), 257);
}

// RobertaProcessing reads cls[1] and sep[1]: a short pair read past the array.
TEST(TokenizerLimitsTest, RobertaProcessorWithAShortClsIsRefused) {
  Json spec = byte_tokenizer();
  spec["post_processor"] = {{"type", "RobertaProcessing"}, {"cls", {"<s>"}}, {"sep", {"</s>", 2}}};
  EXPECT_THAT(load_error(spec), AllOf(HasSubstr("RobertaProcessing"), HasSubstr("cls")));
  spec["post_processor"]["cls"] = Json::array();
  EXPECT_THAT(load_error(spec), HasSubstr("cls"));
  spec["post_processor"]["cls"] = {"<s>", "zero"};
  EXPECT_THAT(load_error(spec), HasSubstr("cls id \"zero\""));
  spec["post_processor"]["cls"] = {"<s>", -1};
  EXPECT_THAT(load_error(spec), HasSubstr("cls id -1"));
  spec["post_processor"]["cls"] = {"<s>", 0};
  const Tokenizer t = Tokenizer::from_json_text(spec.dump());
  EXPECT_EQ(t.encode("a", true), (std::vector<int32_t>{0, 'a', 2}));
}

TEST(TokenizerLimitsTest, TemplateProcessingIdsAreChecked) {
  Json spec = byte_tokenizer();
  spec["post_processor"] = Json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A"}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": ["1"]}}})");
  EXPECT_THAT(load_error(spec), HasSubstr("special token '<s>' id \"1\""));
  spec["post_processor"]["special_tokens"]["<s>"]["ids"] = "1";
  EXPECT_THAT(load_error(spec), HasSubstr("'<s>' is not defined"));
  spec["post_processor"]["single"][0]["SpecialToken"] = "<s>";
  EXPECT_THAT(load_error(spec), HasSubstr("SpecialToken without a string id"));
}

// Wrong JSON types deep inside a part used to escape as nlohmann::type_error.
TEST(TokenizerLimitsTest, WrongJsonTypesAreErrorsNamingThePart) {
  struct Case {
    const char* part;
    Json value;
  };
  const std::vector<Case> cases = {
      {"normalizer", {{"type", "Strip"}, {"strip_left", "yes"}}},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", 5}}}, {"content", "x"}}},
      {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", 1}}}, {"behavior", "Isolated"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", "no"}}},
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"String", " "}}},
        {"behavior", "Isolated"},
        {"invert", 1}}},
      {"post_processor", {{"type", 7}}},
      {"decoder", {{"type", Json::array()}}},
  };
  for (const Case& c : cases) {
    Json spec = byte_tokenizer();
    spec[c.part] = c.value;
    EXPECT_THAT(load_error(spec), AllOf(HasSubstr("tokenizer.json"), HasSubstr(c.part)))
        << c.value.dump();
  }
  Json spec = byte_tokenizer();
  spec["model"]["merges"] = Json::array({Json::array({"a", 1})});
  EXPECT_THAT(load_error(spec), HasSubstr("merge 0"));
  spec = byte_tokenizer();
  spec["added_tokens"] = {{{"content", "x"}, {"special", "true"}}};
  EXPECT_THAT(load_error(spec), HasSubstr("'special' must be a boolean"));
}

TEST(TokenizerLimitsTest, TokenizerConfigWithWrongTypesIsAnError) {
  const std::string json = byte_tokenizer().dump();
  try {
    Tokenizer::from_json_text(json, R"({"chat_template": [{"name": 1, "template": "x"}]})");
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("tokenizer_config.json"));
  }
}

TEST(TokenizerLimitsTest, DeeplyNestedJsonIsRefused) {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  EXPECT_THAT(load_error(deep), HasSubstr("tokenizer.json: JSON nested 100000 levels deep"));
}

// \C matches a single byte even in UTF mode, so a Split on it would cut characters and a
// lookbehind could read before the text: PCRE2 is told to refuse it.
TEST(TokenizerLimitsTest, BackslashCIsRefused) {
  EXPECT_THROW(UnicodeRegex("a\\C"), Error);
  EXPECT_THROW(UnicodeRegex("(?<=\\C)x"), Error);
  Json spec = byte_tokenizer();
  spec["pre_tokenizer"] = Json::parse(R"({"type": "Split", "pattern": {"Regex": "\\C"},
                                          "behavior": "Isolated"})");
  EXPECT_THAT(load_error(spec), AllOf(HasSubstr("regex does not compile"), HasSubstr("\\C")));
  // An escaped backslash followed by C is a literal and still fine.
  EXPECT_NO_THROW(UnicodeRegex("\\\\C"));
}

}  // namespace
}  // namespace m2fp4
