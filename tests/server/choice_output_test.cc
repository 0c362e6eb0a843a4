// ChoiceOutput: engine tokens -> API deltas. Fed one token at a time, the merged deltas must equal
// the output parser run on the whole decoded text at once (the one-shot parse is the reference).
#include "server/choice_output.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "text/chat/minimax_m2_template.h"
#include "text/tokenizer/bpe_trainer.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

const Tokenizer& tiny_tokenizer() {
  static const Tokenizer t = Tokenizer::from_json_text(
      train_byte_level_bpe_tokenizer_json(builtin_training_corpus(), 512, minimax_added_tokens()),
      tiny_tokenizer_config_json(minimax_m2_chat_template()));
  return t;
}

Json tools() {
  return Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
      "days": {"type": "integer"}}}}}])");
}

std::function<std::string()> counting_ids() {
  auto n = std::make_shared<int>(0);
  return [n] { return "call_" + std::to_string((*n)++); };
}

ChoiceOptions chat_options() {
  ChoiceOptions o;
  o.chat = true;
  o.parser.reasoning = ReasoningMode::kMinimaxM2;
  o.parser.tools = tools();
  o.parser.make_tool_call_id = counting_ids();
  return o;
}

// One-shot reference: the parser on the whole text.
Json reference_message(const std::string& text, const std::string& reason) {
  OutputParserOptions po;
  po.reasoning = ReasoningMode::kMinimaxM2;
  po.tools = tools();
  po.make_tool_call_id = counting_ids();
  OutputParser p(po);
  std::vector<Json> deltas = p.feed(text);
  for (auto& d : p.finish(reason)) deltas.push_back(d);
  return merge_deltas(deltas);
}

Json strip_reasoning_alias(const std::vector<OutputPiece>& pieces, std::vector<Json>& deltas) {
  for (const auto& p : pieces) {
    if (p.delta.empty()) continue;
    Json d = p.delta;
    if (d.contains("reasoning_content")) {
      EXPECT_EQ(d["reasoning"], d["reasoning_content"]);
      d.erase("reasoning");
    }
    deltas.push_back(d);
  }
  return merge_deltas(deltas);
}

const std::string kToolOutput =
    "Let me look that up.\n</think>\n\nChecking.\n<minimax:tool_call>\n<invoke "
    "name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n<parameter "
    "name=\"days\">3</parameter>\n</invoke>\n<invoke name=\"get_weather\">\n<parameter "
    "name=\"city\">Oslo</parameter>\n</invoke>\n</minimax:tool_call>";

TEST(ChoiceOutput, TokenByTokenEqualsOneShotParse) {
  const Tokenizer& tok = tiny_tokenizer();
  const std::vector<int32_t> ids = tok.encode(kToolOutput);
  ASSERT_GT(ids.size(), 10u);
  ChoiceOutput out(tok, chat_options());
  std::vector<OutputPiece> pieces;
  for (int32_t id : ids) ASSERT_FALSE(out.add_tokens({id}, {}, pieces));
  out.finish("stop", pieces);
  std::vector<Json> deltas;
  const Json merged = strip_reasoning_alias(pieces, deltas);
  EXPECT_EQ(merged, reference_message(tok.decode(ids, true), "stop"));
  EXPECT_EQ(out.finish_reason(), "tool_calls");
  ASSERT_TRUE(merged.contains("tool_calls"));
  EXPECT_EQ(merged["tool_calls"].size(), 2u);
  EXPECT_EQ(merged["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\", \"days\": 3}");
  EXPECT_EQ(out.tokens(), static_cast<int64_t>(ids.size()));
  // Tool calls stream as fragments: more than one delta carries index 0 arguments.
  int fragments = 0;
  for (const auto& d : deltas) {
    if (d.contains("tool_calls") && d["tool_calls"][0]["index"] == 0) ++fragments;
  }
  EXPECT_GE(fragments, 2);
}

TEST(ChoiceOutput, ParallelToolCallsFalseKeepsTheFirst) {
  const Tokenizer& tok = tiny_tokenizer();
  ChoiceOptions o = chat_options();
  o.parallel_tool_calls = false;
  ChoiceOutput out(tok, o);
  std::vector<OutputPiece> pieces;
  out.add_tokens(tok.encode(kToolOutput), {}, pieces);
  out.finish("stop", pieces);
  std::vector<Json> deltas;
  const Json merged = strip_reasoning_alias(pieces, deltas);
  ASSERT_EQ(merged["tool_calls"].size(), 1u);
  EXPECT_EQ(merged["tool_calls"][0]["function"]["name"], "get_weather");
}

TEST(ChoiceOutput, StopStringEndsOutputAndIsNotSent) {
  const Tokenizer& tok = tiny_tokenizer();
  ChoiceOptions o;
  o.chat = false;
  o.stop = {"brown fox"};
  ChoiceOutput out(tok, o);
  std::vector<OutputPiece> pieces;
  const std::vector<int32_t> ids = tok.encode("the quick brown fox jumps");
  bool stopped = false;
  size_t used = 0;
  for (int32_t id : ids) {
    ++used;
    if (out.add_tokens({id}, {}, pieces)) {
      stopped = true;
      break;
    }
  }
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(out.finished());
  EXPECT_EQ(out.finish_reason(), "stop");
  std::string text;
  for (const auto& p : pieces) text += p.delta.value("text", "");
  EXPECT_EQ(text, "the quick ");
  EXPECT_EQ(out.tokens(), static_cast<int64_t>(used));
}

TEST(ChoiceOutput, LengthWithoutParserIsRawContent) {
  const Tokenizer& tok = tiny_tokenizer();
  ChoiceOptions o;
  o.chat = true;
  o.parse_output = false;
  o.logprobs = true;
  ChoiceOutput out(tok, o);
  std::vector<OutputPiece> pieces;
  const std::vector<int32_t> ids = tok.encode("hello <think> there");
  std::vector<TokenLogprob> lps;
  for (int32_t id : ids) lps.push_back(TokenLogprob{id, -0.5f, {{id, -0.5f}}});
  out.add_tokens(ids, lps, pieces);
  out.finish("length", pieces);
  std::string text;
  size_t n_lp = 0;
  for (const auto& p : pieces) {
    text += p.delta.value("content", "");
    if (!p.logprobs.is_null()) n_lp += p.logprobs["content"].size();
  }
  EXPECT_EQ(text, tok.decode(ids, true));
  EXPECT_EQ(n_lp, ids.size());
  EXPECT_EQ(out.finish_reason(), "length");
}

}  // namespace
}  // namespace m2fp4::server
