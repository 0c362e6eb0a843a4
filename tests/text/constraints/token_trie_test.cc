// The vocabulary trie's one-walk mask equals feeding every token's bytes to its own copy of the
// matcher (the brute force it replaces), on a trained tiny tokenizer and on Qwen3's 151k one.
#include "text/constraints/token_trie.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "text/constraints/json_matcher.h"
#include "text/constraints/tool_call_matcher.h"
#include "text/tokenizer/bpe_trainer.h"

namespace m2fp4 {
namespace {

template <class Matcher>
std::vector<uint8_t> brute_force(const Tokenizer& tok, const Matcher& m, size_t n) {
  std::vector<uint8_t> allowed(n, 0);
  for (int32_t id = 0; id < static_cast<int32_t>(n) && id < tok.vocab_size(); ++id) {
    if (!tok.has_id(id) || tok.is_special(id) || tok.token_bytes(id).empty()) continue;
    Matcher probe = m;
    bool ok = true;
    for (char c : tok.token_bytes(id)) {
      if (!(ok = probe.feed(static_cast<uint8_t>(c)))) break;
    }
    allowed[id] = ok;
  }
  return allowed;
}

// Matcher states reached by feeding prefixes of some texts.
template <class Matcher>
void check_states(const Tokenizer& tok, const Matcher& start,
                  const std::vector<std::string>& texts) {
  const TokenTrie trie(tok);
  const size_t n = static_cast<size_t>(tok.vocab_size()) + 7;  // the model's vocab may be larger
  int allowed_somewhere = 0;
  for (const std::string& text : texts) {
    Matcher m = start;
    for (size_t k = 0; k <= text.size(); ++k) {
      std::vector<uint8_t> got(n, 0);
      trie.fill_allowed(m, got);
      const std::vector<uint8_t> expected = brute_force(tok, m, n);
      ASSERT_EQ(got, expected) << "after '" << text.substr(0, k) << "'";
      for (uint8_t a : got) allowed_somewhere += a;
      if (k < text.size()) {
        ASSERT_TRUE(m.feed(static_cast<uint8_t>(text[k]))) << text;
      }
    }
  }
  EXPECT_GT(allowed_somewhere, 0);
}

const std::vector<std::string> kJsonTexts = {
    "{\"name\": \"caf\xc3\xa9\", \"list\": [1, -2.5e3, true, null], \"o\": {}}",
    "  {\"a\\u00e9\\n\":[[]]}"};
const std::string kToolText =
    "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</"
    "parameter>\n<parameter name=\"days\">3</parameter>\n</invoke>\n</minimax:tool_call>";

const nlohmann::json& weather_tools() {
  static const nlohmann::json t = nlohmann::json::parse(R"([{"type": "function", "function": {
      "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}}}}}])");
  return t;
}

TEST(TokenTrie, MaskEqualsBruteForceOnATrainedTokenizer) {
  const Tokenizer tok = Tokenizer::from_json_text(
      train_byte_level_bpe_tokenizer_json(builtin_training_corpus(), 512, minimax_added_tokens()),
      tiny_tokenizer_config_json());
  const TokenTrie trie(tok);
  // Special tokens are not in the trie; `</think>` and `<minimax:tool_call>` (not special) are.
  EXPECT_FALSE(trie.contains(tok.token_to_id("[e~[")));
  EXPECT_TRUE(trie.contains(tok.token_to_id("</think>")));
  EXPECT_TRUE(trie.contains(tok.token_to_id("<minimax:tool_call>")));
  check_states(tok, JsonMatcher(kJsonObject), kJsonTexts);
  const auto grammar = ToolCallGrammar::build(weather_tools(), true);
  check_states(tok, ToolCallMatcher(grammar.get()), {kToolText});
}

TEST(TokenTrie, MaskEqualsBruteForceOnQwen3) {
  const std::string dir = std::string(M2FP4_SHARED_DIR) + "/tokenizers/qwen3";
  if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << dir << " not found";
  const Tokenizer tok = Tokenizer::load(dir);
  check_states(tok, JsonMatcher(kJsonObject), {kJsonTexts[0].substr(0, 24)});
}

}  // namespace
}  // namespace m2fp4
