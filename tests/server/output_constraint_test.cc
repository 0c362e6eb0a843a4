// Structured output constraints as the chat handler builds them from request bodies, driven
// token by token over a trained tokenizer the way the engine drives them: nothing is masked while
// the model reasons, `</think>` (however it is spelled) switches the constraint on, and what a
// random walk over allowed tokens completes is JSON (nlohmann) or tool calls (the minimax parser).
#include "server/output_constraint.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "text/constraints/json_matcher.h"
#include "text/parsers/output_parser.h"
#include "text/tokenizer/bpe_trainer.h"

namespace m2fp4::server {
namespace {

using Json = nlohmann::ordered_json;

const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::from_json_text(
      train_byte_level_bpe_tokenizer_json(builtin_training_corpus(), 512, minimax_added_tokens()),
      tiny_tokenizer_config_json());
  return t;
}

std::shared_ptr<const TokenTrie> trie() {
  static const auto t = std::make_shared<TokenTrie>(tokenizer());
  return t;
}

const Json kMessages = Json::parse(R"([{"role": "user", "content": "hi"}])");
const Json kTools = Json::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer"}},
    "required": ["city"]}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
    "properties": {"zone": {"type": "boolean"}}}}}])");

ConstraintFactory factory(const Json& extra, bool reasoning, bool tools_parsed = true) {
  Json body = {{"messages", kMessages}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  const ParsedRequest req = parse_chat_request(body, GenerationDefaults{});
  return output_constraint_factory(req, tools_parsed, reasoning, [] { return trie(); });
}

void accept_text(TokenConstraint& c, const std::string& text) {
  for (int32_t id : tokenizer().encode(text)) c.accept(id);
}

// What the engine would sample: a random allowed token (end tokens aside), preferring tokens
// that close things so walks finish; stops when complete. Returns the text. Every mask is
// checked token by token against allows().
std::string walk(TokenConstraint& c, std::mt19937& rng, int steps) {
  std::string text;
  const size_t n = static_cast<size_t>(tokenizer().vocab_size());
  for (int s = 0; s < steps && !c.complete(); ++s) {
    std::vector<uint8_t> allowed(n, 0);
    c.fill_allowed(allowed);
    std::vector<int32_t> ids, closing;
    for (size_t t = 0; t < n; ++t) {
      // The mask (walked or cached) says what the single-token check says.
      EXPECT_EQ(allowed[t] != 0, c.allows(static_cast<int32_t>(t))) << t << " after " << text;
      if (!allowed[t]) continue;
      ids.push_back(static_cast<int32_t>(t));
      const std::string_view b = tokenizer().token_bytes(static_cast<int32_t>(t));
      if (b.find_first_of("}<\"") != std::string_view::npos) closing.push_back(ids.back());
    }
    if (ids.empty()) {
      EXPECT_TRUE(c.may_end()) << "dead end after '" << text << "'";
      break;
    }
    const auto& pool = !closing.empty() && rng() % 2 == 0 ? closing : ids;
    const int32_t id = pool[rng() % pool.size()];
    text += tokenizer().token_bytes(id);
    c.accept(id);
  }
  return text;
}

TEST(OutputConstraint, NoneForTextOrAutoToolChoice) {
  EXPECT_FALSE(factory(Json::object(), true));
  EXPECT_FALSE(factory({{"response_format", {{"type", "text"}}}}, true));
  EXPECT_FALSE(factory({{"tools", kTools}, {"tool_choice", "auto"}}, true));
  // tool_choice required without the tool parser running leaves the output free.
  EXPECT_FALSE(factory({{"tools", kTools}, {"tool_choice", "required"}}, true, false));
}

TEST(OutputConstraint, FreeWhileReasoningThenJson) {
  auto c = factory({{"response_format", {{"type", "json_object"}}}}, true)();
  EXPECT_FALSE(c->active());
  accept_text(*c, "Let me think about {braces} and </thi");
  EXPECT_TRUE(c->active());  // a token may end the reasoning now
  EXPECT_FALSE(c->complete());
  EXPECT_TRUE(c->may_end());  // EOS stays allowed while reasoning
  // Finishing `</think>` is allowed only with JSON-compatible bytes after it.
  EXPECT_TRUE(c->allows(tokenizer().encode("n")[0]));
  accept_text(*c, "nk");
  const int32_t gt = tokenizer().encode(">")[0];
  EXPECT_TRUE(c->allows(gt));
  c->accept(gt);
  EXPECT_TRUE(c->active());
  EXPECT_FALSE(c->may_end());
  EXPECT_FALSE(c->allows(tokenizer().encode("Sure")[0]));
  EXPECT_TRUE(c->allows(tokenizer().encode("{")[0]));
  EXPECT_FALSE(c->allows(tokenizer().token_to_id("[e~[")));  // special tokens never
  accept_text(*c, "\n{\"a\": [1, \"x\"]}");
  EXPECT_TRUE(c->complete());
}

TEST(OutputConstraint, TheThinkEndTokenSwitchesItOn) {
  auto c = factory({{"response_format", {{"type", "json_object"}}}}, true)();
  accept_text(*c, "plan");
  EXPECT_FALSE(c->active());
  c->accept(tokenizer().token_to_id("</think>"));
  EXPECT_TRUE(c->active());
  EXPECT_FALSE(c->allows(tokenizer().encode("x")[0]));
  // Without reasoning it holds from the first token.
  auto d = factory({{"response_format", {{"type", "json_object"}}}}, false)();
  EXPECT_TRUE(d->active());
  EXPECT_FALSE(d->allows(tokenizer().token_to_id("</think>")));
}

TEST(OutputConstraint, RandomWalksCompleteAsJson) {
  std::mt19937 rng(1);
  int completed = 0;
  for (int i = 0; i < 40; ++i) {
    auto c = factory({{"response_format", {{"type", "json_object"}}}}, false)();
    const std::string text = walk(*c, rng, 300);
    if (!c->complete()) continue;
    ++completed;
    const Json v = Json::parse(text, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << text;
    EXPECT_TRUE(v.is_object()) << text;
  }
  EXPECT_GT(completed, 10);
}

TEST(OutputConstraint, JsonSchemaTopLevelType) {
  const Json schema = {{"type", "json_schema"},
                       {"json_schema", {{"name", "x"}, {"schema", {{"type", "array"}}}}}};
  auto c = factory({{"response_format", schema}}, false)();
  EXPECT_FALSE(c->allows(tokenizer().encode("{")[0]));
  EXPECT_TRUE(c->allows(tokenizer().encode("[")[0]));
  EXPECT_EQ(schema_top_level_types(Json::parse(R"({"type": ["integer", "null"]})")),
            m2fp4::kJsonInteger | m2fp4::kJsonNull);
  EXPECT_EQ(schema_top_level_types(Json::parse(R"({"properties": {}})")), m2fp4::kJsonAny);
  EXPECT_THROW(schema_top_level_types(Json::parse(R"({"type": "date"})")), ApiError);
}

TEST(OutputConstraint, JsonSchemaWithPropertiesWalksGiveSchemaDocuments) {
  const Json schema = {
      {"type", "json_schema"},
      {"json_schema",
       {{"name", "v"},
        {"schema", Json::parse(R"({"type": "object", "required": ["ok"], "properties": {
            "ok": {"type": "boolean"}, "level": {"enum": [1, 2, 3]}}})")}}}};
  std::mt19937 rng(4);
  int completed = 0;
  for (int i = 0; i < 30; ++i) {
    auto c = factory({{"response_format", schema}}, false)();
    const std::string text = walk(*c, rng, 200);
    if (!c->complete()) continue;
    ++completed;
    const Json v = Json::parse(text, nullptr, false);
    ASSERT_TRUE(v.is_object()) << text;
    EXPECT_TRUE(v.contains("ok") && v["ok"].is_boolean()) << text;
    for (const auto& [k, x] : v.items()) {
      EXPECT_TRUE(k == "ok" || (k == "level" && (x == 1 || x == 2 || x == 3))) << text;
    }
  }
  EXPECT_GT(completed, 10);
}

std::vector<Json> parse_tool_calls(const std::string& text) {
  OutputParserOptions o;
  o.reasoning = ReasoningMode::kMinimaxM2;
  o.tools = kTools;
  OutputParser p(o);
  std::vector<Json> deltas = p.feed(text);
  for (auto& d : p.finish("stop")) deltas.push_back(std::move(d));
  EXPECT_EQ(p.finish_reason(), "tool_calls") << text;
  const Json m = merge_deltas(deltas);
  std::vector<Json> calls;
  if (m.contains("tool_calls")) {
    for (const auto& c : m["tool_calls"]) calls.push_back(c["function"]);
  }
  return calls;
}

TEST(OutputConstraint, NamedToolChoiceWalksCallThatTool) {
  const Json named = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  std::mt19937 rng(2);
  int completed = 0;
  for (int i = 0; i < 30; ++i) {
    auto c = factory({{"tools", kTools}, {"tool_choice", named}, {"parallel_tool_calls", false}},
                     true)();
    accept_text(*c, "I will call it.");
    c->accept(tokenizer().token_to_id("</think>"));
    const std::string text = walk(*c, rng, 400);
    if (!c->complete()) continue;
    ++completed;
    const auto calls = parse_tool_calls("I will call it.</think>" + text);
    ASSERT_EQ(calls.size(), 1u) << text;
    EXPECT_EQ(calls[0]["name"], "get_weather");
    const Json args = Json::parse(calls[0]["arguments"].get<std::string>());
    EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "Rome") << text;
    if (args.contains("days")) {
      EXPECT_TRUE(args["days"].is_number_integer()) << text;
    }
  }
  EXPECT_GT(completed, 10);
}

TEST(OutputConstraint, RequiredToolChoiceAllowsAnyToolAndParallelCalls) {
  std::mt19937 rng(3);
  int completed = 0;
  for (int i = 0; i < 30; ++i) {
    auto c = factory({{"tools", kTools}, {"tool_choice", "required"}}, false)();
    const std::string text = walk(*c, rng, 400);
    if (!c->complete()) continue;
    ++completed;
    const auto calls = parse_tool_calls("</think>" + text);
    ASSERT_GE(calls.size(), 1u) << text;
    for (const auto& call : calls) {
      EXPECT_TRUE(call["name"] == "get_weather" || call["name"] == "get_time") << text;
    }
  }
  EXPECT_GT(completed, 10);
}

// A call block opened inside unclosed reasoning ends the reasoning for the minimax_m2 reasoning
// parser (its tool escape): a forced call is enforced from that tag on.
TEST(OutputConstraint, ToolCallStartedInsideTheReasoning) {
  std::mt19937 rng(6);
  int completed = 0;
  for (int i = 0; i < 20; ++i) {
    auto c = factory({{"tools", kTools}, {"tool_choice", "required"}}, true)();
    accept_text(*c, "The user wants the weather. ");
    EXPECT_FALSE(c->active());
    c->accept(tokenizer().token_to_id("<minimax:tool_call>"));
    EXPECT_TRUE(c->active());
    EXPECT_FALSE(c->may_end());
    EXPECT_FALSE(c->allows(tokenizer().encode("x")[0]));
    const std::string text = walk(*c, rng, 400);
    if (!c->complete()) continue;
    ++completed;
    const auto calls = parse_tool_calls("The user wants the weather. <minimax:tool_call>" + text);
    ASSERT_GE(calls.size(), 1u) << text;
  }
  EXPECT_GT(completed, 5);
  // JSON output has no such escape: the tag is reasoning text.
  auto j = factory({{"response_format", {{"type", "json_object"}}}}, true)();
  j->accept(tokenizer().token_to_id("<minimax:tool_call>"));
  EXPECT_FALSE(j->active());
}

TEST(OutputConstraint, UnwritableToolNamesAreABadRequest) {
  const Json bad = Json::parse(R"([{"type": "function", "function": {"name": "a\"b"}}])");
  EXPECT_THROW(factory({{"tools", bad}, {"tool_choice", "required"}}, false), ApiError);
}

}  // namespace
}  // namespace m2fp4::server
