// MiniMax-M2 tool calls through the whole output parser (serving.md (b)): parameter typing,
// vLLM's minimax_m2 test cases (tests/tool_parsers/test_minimax_m2_tool_parser.py) as
// hand-checked expectations, m2fp4's own rules ("What m2fp4 does" 3-8), then split invariance.
#include "text/parsers/tool_call_parser.h"

#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/parsers/output_parser.h"

namespace m2fp4 {
namespace {

using Json = nlohmann::ordered_json;
using Types = std::vector<std::string>;

// ---- parameter typing -------------------------------------------------------------------------

Types sorted(Types t) {
  std::sort(t.begin(), t.end());
  return t;
}

TEST(SchemaTypesTest, TypeStringListEnumAndCombinators) {
  auto types = [](const char* schema) {
    return sorted(schema_types(nlohmann::json::parse(schema)));
  };
  EXPECT_EQ(types(R"({"type": "integer"})"), Types({"integer"}));
  EXPECT_EQ(types(R"({"type": "Integer"})"), Types({"integer"}));
  EXPECT_EQ(types(R"({"type": ["integer", "null"]})"), Types({"integer", "null"}));
  EXPECT_EQ(types(R"({"anyOf": [{"type": "string"}, {"type": "null"}]})"),
            Types({"null", "string"}));
  EXPECT_EQ(types(R"({"oneOf": [{"allOf": [{"type": "object"}]}, {"type": "array"}]})"),
            Types({"array", "object"}));
  EXPECT_EQ(types(R"({"enum": ["celsius", "fahrenheit"]})"), Types({"string"}));
  EXPECT_EQ(types(R"({"enum": [1, 2.5, true, null]})"),
            Types({"boolean", "integer", "null", "number"}));
  EXPECT_EQ(types(R"({"description": "no type"})"), Types({"string"}));
  EXPECT_EQ(types(R"("not a schema")"), Types({"string"}));
}

Json convert(const char* raw, Types types) {
  return convert_parameter_value(raw, types);
}

TEST(ConvertParameterValueTest, Integer) {
  EXPECT_EQ(convert("42", {"integer"}), Json(42));
  EXPECT_EQ(convert("-7", {"integer"}), Json(-7));
  EXPECT_EQ(convert("+3", {"integer"}), Json(3));
  EXPECT_TRUE(convert("5.0", {"integer"}).is_number_integer());  // m2fp4: 5.0 -> 5
  EXPECT_EQ(convert("5.0", {"integer"}), Json(5));
  EXPECT_EQ(convert("5.5", {"integer"}), Json(5.5));    // int() fails, JSON fallback
  EXPECT_EQ(convert("abc", {"integer"}), Json("abc"));  // never dropped
  EXPECT_EQ(convert("+-3", {"integer"}), Json("+-3"));
  EXPECT_EQ(convert("null", {"integer"}), Json(nullptr));
  EXPECT_EQ(convert("None", {"integer"}), Json("None"));             // vLLM would give null
  EXPECT_EQ(convert("[1, 2]", {"integer"}), Json::parse("[1, 2]"));  // JSON fallback
}

TEST(ConvertParameterValueTest, Number) {
  EXPECT_EQ(convert("3.5", {"number"}), Json(3.5));
  EXPECT_TRUE(convert("2.0", {"number"}).is_number_integer());  // integral -> int, as vLLM
  EXPECT_EQ(convert("1e3", {"number"}), Json(1000));
  EXPECT_EQ(convert("-.25", {"number"}), Json(-0.25));
  EXPECT_EQ(convert("inf", {"number"}), Json("inf"));  // would be invalid JSON
  EXPECT_EQ(convert("nan", {"number"}), Json("nan"));
  EXPECT_EQ(convert("1e999", {"number"}), Json("1e999"));
}

TEST(ConvertParameterValueTest, Boolean) {
  for (const char* t : {"true", "True", "1", "yes", "ON"})
    EXPECT_EQ(convert(t, {"boolean"}), Json(true)) << t;
  for (const char* f : {"false", "FALSE", "0", "no", "Off"})
    EXPECT_EQ(convert(f, {"boolean"}), Json(false)) << f;
  EXPECT_EQ(convert("maybe", {"boolean"}), Json("maybe"));
}

TEST(ConvertParameterValueTest, ObjectAndArrayAreJson) {
  EXPECT_EQ(convert(R"({"theme": "dark", "fontSize": 14})", {"object"}),
            Json::parse(R"({"theme": "dark", "fontSize": 14})"));
  EXPECT_EQ(convert("[1, \"a\", null]", {"array"}), Json::parse("[1, \"a\", null]"));
  EXPECT_EQ(convert("{a: 1}", {"object"}), Json("{a: 1}"));      // not JSON: kept as text
  EXPECT_EQ(convert("{'a': 1}", {"object"}), Json("{'a': 1}"));  // no Python literal eval
}

TEST(ConvertParameterValueTest, StringAndEnumStayText) {
  EXPECT_EQ(convert("42", {"string"}), Json("42"));
  EXPECT_EQ(convert("true", {"string"}), Json("true"));
  EXPECT_EQ(convert("null", {"string"}), Json("null"));  // m2fp4: string-only keeps "null"
  EXPECT_EQ(convert("&amp; <b>", {"string"}), Json("&amp; <b>"));  // no HTML unescaping
  EXPECT_EQ(convert("celsius",
                    schema_types(nlohmann::json::parse(R"({"enum": ["celsius", "fahrenheit"]})"))),
            Json("celsius"));
}

TEST(ConvertParameterValueTest, TypeListsAndNullable) {
  EXPECT_EQ(convert("null", {"string", "null"}), Json(nullptr));
  EXPECT_EQ(convert("Alice", {"string", "null"}), Json("Alice"));
  EXPECT_EQ(convert("5", {"integer", "string"}), Json(5));
  EXPECT_EQ(convert("five", {"integer", "string"}), Json("five"));
  EXPECT_EQ(convert("[1]", {"array", "null"}), Json::parse("[1]"));
}

TEST(DumpJsonPythonStyleTest, SeparatorsAndRawUnicode) {
  const Json v =
      Json::parse(R"({"b": [1, 2.5, true, null], "a": {"x": "Z\u00fcrich\n\""}, "e": {}})");
  EXPECT_EQ(dump_json_python_style(v),
            "{\"b\": [1, 2.5, true, null], \"a\": {\"x\": \"Z\xC3\xBCrich\\n\\\"\"}, \"e\": {}}");
  EXPECT_EQ(dump_json_python_style(Json("\x01")), "\"\\u0001\"");
}

TEST(ToolSchemasTest, LooksUpParameterTypesAndRejectsBadTools) {
  const ToolSchemas schemas(nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"n": {"type": "integer"}}}}},
    {"name": "bare", "parameters": {"properties": {"b": {"type": "boolean"}}}}])"));
  EXPECT_EQ(schemas.param_types("f", "n"), Types({"integer"}));
  EXPECT_EQ(schemas.param_types("f", "other"), Types({"string"}));
  EXPECT_EQ(schemas.param_types("bare", "b"), Types({"boolean"}));
  EXPECT_EQ(schemas.param_types("unknown", "n"), Types({"string"}));
  EXPECT_THROW(ToolSchemas(nlohmann::json::parse(R"({"name": "f"})")), Error);
  EXPECT_THROW(ToolSchemas(nlohmann::json::parse(R"([42])")), Error);
  EXPECT_THROW(ToolSchemas(nlohmann::json::parse(R"([{"function": {"parameters": {}}}])")), Error);
}

TEST(ToolCallIdTest, RandomIdsHaveVllmForm) {
  const std::string a = random_tool_call_id(), b = random_tool_call_id();
  EXPECT_TRUE(std::regex_match(a, std::regex("call_[0-9a-f]{24}"))) << a;
  EXPECT_NE(a, b);
}

// ---- the output parser --------------------------------------------------------------------------

const nlohmann::json& tools() {
  static const nlohmann::json kTools = nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                     "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {"name": "search_web", "parameters": {"type": "object",
      "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "fn_a", "parameters": {"type": "object",
      "properties": {"x": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "fn_b", "parameters": {"type": "object",
      "properties": {"y": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "get_stock", "parameters": {"type": "object",
      "properties": {"ticker": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "update_profile", "parameters": {"type": "object",
      "properties": {"nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}},
    {"type": "function", "function": {"name": "update_settings", "parameters": {"type": "object",
      "properties": {"config": {"anyOf": [{"type": "object"}, {"type": "null"}]}}}}},
    {"type": "function", "function": {"name": "typed", "parameters": {"type": "object",
      "properties": {"i": {"type": "integer"}, "n": {"type": "number"}, "b": {"type": "boolean"},
                     "o": {"type": "object"}, "a": {"type": "array"}, "s": {"type": "string"},
                     "opt": {"type": ["integer", "null"]}}}}}])");
  return kTools;
}

struct Parsed {
  std::vector<Json> deltas;
  Json message;
  std::string finish_reason;
};

Parsed parse(const std::vector<std::string>& chunks, const nlohmann::json& tool_list = tools(),
             ReasoningMode mode = ReasoningMode::kNone, const char* finish = "stop") {
  int counter = 0;
  OutputParserOptions options;
  options.reasoning = mode;
  options.tools = tool_list;
  options.make_tool_call_id = [&counter] { return "call_" + std::to_string(counter++); };
  OutputParser parser(std::move(options));
  Parsed p;
  for (const auto& c : chunks) {
    for (auto& d : parser.feed(c)) p.deltas.push_back(std::move(d));
  }
  for (auto& d : parser.finish(finish)) p.deltas.push_back(std::move(d));
  p.message = merge_deltas(p.deltas);
  p.finish_reason = parser.finish_reason();
  return p;
}

Parsed parse_m2(const std::string& text, const char* finish = "stop") {
  return parse({text}, tools(), ReasoningMode::kMinimaxM2, finish);
}

// The tool calls of a merged message as (name, arguments string) pairs.
std::vector<std::pair<std::string, std::string>> calls(const Parsed& p) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!p.message.contains("tool_calls")) return out;
  for (const auto& c : p.message["tool_calls"]) {
    out.emplace_back(c["function"]["name"].get<std::string>(),
                     c["function"]["arguments"].get<std::string>());
  }
  return out;
}

using Calls = std::vector<std::pair<std::string, std::string>>;

std::string invoke(const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& params) {
  std::string s = "<invoke name=\"" + name + "\">";
  for (const auto& [k, v] : params) s += "<parameter name=\"" + k + "\">" + v + "</parameter>";
  return s + "</invoke>";
}

TEST(MergeDeltasTest, ConcatenatesPerChannelAndIndex) {
  const std::vector<Json> deltas = {
      Json::parse(R"({"reasoning_content": "a"})"), Json::parse(R"({"content": "b"})"),
      Json::parse(R"({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                                      "function": {"name": "f", "arguments": "{\"k\""}}]})"),
      Json::parse(R"({"reasoning_content": "c"})"),
      Json::parse(R"({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]})")};
  EXPECT_EQ(merge_deltas(deltas), Json::parse(R"({"role": "assistant", "content": "b",
      "reasoning_content": "ac", "tool_calls": [{"id": "call_x", "type": "function",
      "function": {"name": "f", "arguments": "{\"k\": 1}"}}]})"));
  EXPECT_EQ(merge_deltas({}), Json::parse(R"({"role": "assistant", "content": null,
      "reasoning_content": null})"));
}

// vLLM TestContentStreaming.test_plain_content
TEST(ToolCallParserTest, PlainContent) {
  const Parsed p = parse({"Hello ", "world"});
  EXPECT_EQ(p.message["content"], "Hello world");
  EXPECT_FALSE(p.message.contains("tool_calls"));
  EXPECT_EQ(p.finish_reason, "stop");
}

// vLLM test_content_before_tool_call
TEST(ToolCallParserTest, ContentBeforeToolCall) {
  const Parsed p = parse({"Let me check. ", "<minimax:tool_call>" +
                                                invoke("get_weather", {{"city", "Seattle"}}) +
                                                "</minimax:tool_call>"});
  EXPECT_EQ(p.message["content"], "Let me check. ");
  EXPECT_EQ(calls(p), Calls({{"get_weather", R"({"city": "Seattle"})"}}));
  EXPECT_EQ(p.finish_reason, "tool_calls");
}

// vLLM test_incremental_chunks and test_single_chunk_complete
TEST(ToolCallParserTest, IncrementalAndSingleChunk) {
  const Parsed a =
      parse({"<minimax:tool_call>", "<invoke name=\"get_weather\">",
             "<parameter name=\"city\">Seattle</parameter>", "</invoke></minimax:tool_call>"});
  const Parsed b =
      parse({"<minimax:tool_call><invoke name=\"get_weather\"><parameter "
             "name=\"city\">Seattle</parameter></invoke></minimax:tool_call>"});
  for (const Parsed* p : {&a, &b}) {
    EXPECT_EQ(calls(*p), Calls({{"get_weather", R"({"city": "Seattle"})"}}));
    EXPECT_TRUE(p->message["content"].is_null());
    EXPECT_EQ(p->message["tool_calls"][0]["id"], "call_0");
  }
}

// vLLM test_multiple_params: without a schema ("lookup" is not a tool) 5 stays "5"; with the
// schema's integer it is 5.
TEST(ToolCallParserTest, MultipleParams) {
  const std::vector<std::string> chunks = {"<minimax:tool_call>", "<invoke name=\"lookup\">",
                                           "<parameter name=\"city\">Seattle</parameter>",
                                           "<parameter name=\"days\">5</parameter>",
                                           "</invoke></minimax:tool_call>"};
  EXPECT_EQ(calls(parse(chunks)), Calls({{"lookup", R"({"city": "Seattle", "days": "5"})"}}));
  std::vector<std::string> typed = chunks;
  typed[1] = "<invoke name=\"get_weather\">";
  EXPECT_EQ(calls(parse(typed)), Calls({{"get_weather", R"({"city": "Seattle", "days": 5})"}}));
}

// vLLM test_two_invokes_incremental, test_two_invokes_in_single_delta, test_different_functions,
// test_multi_invoke_indices
TEST(ToolCallParserTest, SeveralInvokesInOneBlock) {
  EXPECT_EQ(
      calls(parse({"<minimax:tool_call>", invoke("search_web", {{"query", "OpenAI"}}),
                   invoke("search_web", {{"query", "Gemini"}}), "</minimax:tool_call>"})),
      Calls({{"search_web", R"({"query": "OpenAI"})"}, {"search_web", R"({"query": "Gemini"})"}}));
  const Parsed p =
      parse({"<minimax:tool_call>", invoke("fn_a", {{"x", "1"}}) + invoke("fn_b", {{"y", "2"}}),
             "</minimax:tool_call>"});
  EXPECT_EQ(calls(p), Calls({{"fn_a", R"({"x": 1})"}, {"fn_b", R"({"y": 2})"}}));
  std::vector<int> indices;
  for (const auto& d : p.deltas) {
    for (const auto& c : d.value("tool_calls", Json::array())) {
      if (c.contains("id")) indices.push_back(c["index"].get<int>());
    }
  }
  EXPECT_EQ(indices, std::vector<int>({0, 1}));
  EXPECT_EQ(calls(parse({"<minimax:tool_call>", invoke("get_weather", {{"city", "NYC"}}),
                         invoke("get_stock", {{"ticker", "AAPL"}}), "</minimax:tool_call>"})),
            Calls({{"get_weather", R"({"city": "NYC"})"}, {"get_stock", R"({"ticker": "AAPL"})"}}));
}

// vLLM test_tool_call_fields: the first delta of a call carries index, id, type and name.
TEST(ToolCallParserTest, DeltaShape) {
  const Parsed p =
      parse({"<minimax:tool_call><invoke name=\"fn\">", "<parameter name=\"k\">v</parameter>",
             "<parameter name=\"n\">1</parameter>", "</invoke></minimax:tool_call>"});
  ASSERT_EQ(p.deltas.size(), 4u);
  EXPECT_EQ(p.deltas[0], Json::parse(R"({"tool_calls": [{"index": 0, "id": "call_0",
      "type": "function", "function": {"name": "fn", "arguments": ""}}]})"));
  // One fragment per completed parameter, then "}" at </invoke>.
  EXPECT_EQ(p.deltas[1], Json::parse(R"({"tool_calls": [{"index": 0, "function":
      {"arguments": "{\"k\": \"v\""}}]})"));
  EXPECT_EQ(p.deltas[2], Json::parse(R"({"tool_calls": [{"index": 0, "function":
      {"arguments": ", \"n\": \"1\""}}]})"));
  EXPECT_EQ(p.deltas[3], Json::parse(R"({"tool_calls": [{"index": 0, "function":
      {"arguments": "}"}}]})"));
  // A call without parameters closes with {}.
  EXPECT_EQ(calls(parse({"<minimax:tool_call><invoke name=\"fn\"></invoke></minimax:tool_call>"})),
            Calls({{"fn", "{}"}}));
}

// vLLM test_header_and_params_in_separate_chunks (stream_interval > 1)
TEST(ToolCallParserTest, LargeChunks) {
  const Parsed p = parse({"<minimax:tool_call><invoke name=\"get_weather\">",
                          "<parameter name=\"city\">Seattle</parameter><parameter "
                          "name=\"days\">5</parameter></invoke></minimax:tool_call>"});
  EXPECT_EQ(calls(p), Calls({{"get_weather", R"({"city": "Seattle", "days": 5})"}}));
  EXPECT_EQ(p.deltas.size(), 2u);  // header, then all arguments of the second chunk at once
}

// vLLM TestAnyOfNullableParam (PR#32342)
TEST(ToolCallParserTest, AnyOfNullable) {
  auto one = [](const std::string& name, const std::string& param, const std::string& value) {
    return calls(parse({"<minimax:tool_call>" + invoke(name, {{param, value}}) +
                        "</minimax:tool_call>"}))
        .at(0)
        .second;
  };
  EXPECT_EQ(one("update_profile", "nickname", "Alice"), R"({"nickname": "Alice"})");
  EXPECT_EQ(one("update_profile", "nickname", "null"), R"({"nickname": null})");
  EXPECT_EQ(one("update_settings", "config", R"({"theme": "dark", "fontSize": 14})"),
            R"({"config": {"theme": "dark", "fontSize": 14}})");
}

// The format as the model writes it (serving.md (b)): reasoning, answer, a block with newlines.
TEST(ToolCallParserTest, FullMiniMaxOutput) {
  const Parsed p = parse_m2(
      "The user wants weather.\n</think>\n\nLet me check.\n<minimax:tool_call>\n"
      "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n"
      "<parameter name=\"unit\">celsius</parameter>\n<parameter name=\"days\">3</parameter>\n"
      "</invoke>\n<invoke name=\"typed\">\n<parameter name=\"i\">\n7\n</parameter>\n"
      "<parameter name=\"n\">2.5</parameter>\n<parameter name=\"b\">false</parameter>\n"
      "<parameter name=\"o\">{\"k\": [1, 2]}</parameter>\n<parameter "
      "name=\"a\">[\"x\"]</parameter>\n"
      "<parameter name=\"s\">  two words  </parameter>\n<parameter name=\"opt\">null</parameter>\n"
      "<parameter name=\"extra\">5</parameter>\n</invoke>\n</minimax:tool_call>");
  EXPECT_EQ(p.message["reasoning_content"], "The user wants weather.\n");
  EXPECT_EQ(p.message["content"], "\n\nLet me check.\n");
  EXPECT_EQ(calls(p),
            Calls({{"get_weather", R"({"city": "Paris", "unit": "celsius", "days": 3})"},
                   {"typed", R"({"i": 7, "n": 2.5, "b": false, "o": {"k": [1, 2]}, "a": ["x"], )"
                             R"("s": "two words", "opt": null, "extra": "5"})"}}));
  EXPECT_EQ(p.finish_reason, "tool_calls");
}

// Rule 3: a block starts only at <minimax:tool_call> + whitespace + <invoke name=.
TEST(ToolCallParserTest, BareMentionIsText) {
  const std::string text = "Use <minimax:tool_call> blocks to call tools.";
  const Parsed p = parse({text});
  EXPECT_EQ(p.message["content"], text);
  EXPECT_EQ(p.finish_reason, "stop");
  const Parsed q = parse({"The <minimax:tool_call> tag. <minimax:tool_call>\n  " +
                          invoke("fn_a", {{"x", "1"}}) + "</minimax:tool_call>"});
  EXPECT_EQ(q.message["content"], "The <minimax:tool_call> tag. ");
  EXPECT_EQ(calls(q), Calls({{"fn_a", R"({"x": 1})"}}));
}

// Rule 4: content is all text outside blocks; rule 5: the closing tag may be missing.
TEST(ToolCallParserTest, ContentAroundBlocksAndMissingBlockEnd) {
  const std::string block_a =
      "<minimax:tool_call>" + invoke("fn_a", {{"x", "1"}}) + "</minimax:tool_call>";
  const std::string block_b = "<minimax:tool_call>\n" + invoke("fn_b", {{"y", "2"}}) + "\n";
  const Parsed p = parse({"A " + block_a + " B " + block_b});
  EXPECT_EQ(p.message["content"], "A  B ");
  EXPECT_EQ(calls(p), Calls({{"fn_a", R"({"x": 1})"}, {"fn_b", R"({"y": 2})"}}));
  // EOS right after </parameter>: the call is closed.
  EXPECT_EQ(calls(parse(
                {"<minimax:tool_call><invoke name=\"fn_a\"><parameter name=\"x\">1</parameter>"})),
            Calls({{"fn_a", R"({"x": 1})"}}));
}

TEST(ToolCallParserTest, WhitespaceOnlyContentIsNull) {
  const Parsed p = parse_m2("r</think>\n\n<minimax:tool_call>\n" + invoke("fn_a", {{"x", "1"}}) +
                            "\n</minimax:tool_call>\n");
  EXPECT_TRUE(p.message["content"].is_null());
  for (const auto& d : p.deltas) EXPECT_FALSE(d.contains("content")) << d.dump();
}

// Rule 7: truncation inside a call never gives invalid JSON and reports "length".
TEST(ToolCallParserTest, TruncationInsideACall) {
  const Parsed p = parse_m2(
      "r</think>ok<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"city\">Paris</parameter>\n<parameter name=\"days\">1",
      "length");
  EXPECT_EQ(calls(p), Calls({{"get_weather", R"({"city": "Paris"})"}}));
  EXPECT_EQ(p.message["content"], "ok");
  EXPECT_EQ(p.finish_reason, "length");
  // Cut before the first name is complete: no call; the text is content.
  const Parsed q = parse_m2("r</think><minimax:tool_call>\n<invoke name=\"get_wea", "length");
  EXPECT_FALSE(q.message.contains("tool_calls"));
  EXPECT_EQ(q.message["content"], "<minimax:tool_call>\n<invoke name=\"get_wea");
  EXPECT_EQ(q.finish_reason, "length");
  // A partial tag in content at the end is content.
  EXPECT_EQ(parse_m2("r</think>Hello <minimax:tool", "length").message["content"],
            "Hello <minimax:tool");
}

TEST(ToolCallParserTest, WithoutToolsCallsStayText) {
  const std::string block =
      "<minimax:tool_call>" + invoke("fn_a", {{"x", "1"}}) + "</minimax:tool_call>";
  for (const nlohmann::json& none : {nlohmann::json(), nlohmann::json::array()}) {
    const Parsed p = parse({"a", block}, none);
    EXPECT_EQ(p.message["content"], "a" + block);
    EXPECT_EQ(p.finish_reason, "stop");
  }
}

// Malformed markup is content, never dropped; an announced call stays valid JSON.
TEST(ToolCallParserTest, MalformedBlocksBecomeContent) {
  const std::string junk_in_invoke =
      "<minimax:tool_call><invoke name=\"fn_a\">oops<parameter name=\"x\">1</parameter></invoke>";
  Parsed p = parse({junk_in_invoke});
  EXPECT_EQ(calls(p), Calls({{"fn_a", "{}"}}));
  EXPECT_EQ(p.message["content"], "oops<parameter name=\"x\">1</parameter></invoke>");

  for (const std::string bad :
       {"<minimax:tool_call><invoke name=\"\"></invoke></minimax:tool_call>",
        "<minimax:tool_call><invoke name=<b>x</b></invoke>",
        "<minimax:tool_call>\n<invoke name=\"a\"b\"></invoke>"}) {
    p = parse({"pre ", bad});
    EXPECT_FALSE(p.message.contains("tool_calls")) << bad;
    EXPECT_EQ(p.message["content"], "pre " + bad);
  }

  p = parse({"<minimax:tool_call>" + invoke("fn_a", {{"x", "1"}}) + "\nDone."});
  EXPECT_EQ(calls(p), Calls({{"fn_a", R"({"x": 1})"}}));
  EXPECT_EQ(p.message["content"], "\nDone.");

  p = parse(
      {"<minimax:tool_call><invoke name=\"fn_a\"><parameter name=\"\">1</parameter></invoke>"});
  EXPECT_EQ(calls(p), Calls({{"fn_a", "{}"}}));
  EXPECT_EQ(p.message["content"], "<parameter name=\"\">1</parameter></invoke>");
}

TEST(ToolCallParserTest, NameQuotingAndValueTrimming) {
  const Parsed p =
      parse({"<minimax:tool_call><invoke name='fn_a'><parameter name=x> 4 </parameter>"
             "</invoke><invoke name=get_weather><parameter name=' city '>\n  S\xC3\xA3o "
             "Paulo \n\n</parameter></invoke></minimax:tool_call>"});
  EXPECT_EQ(calls(p),
            Calls({{"fn_a", R"({"x": 4})"}, {"get_weather", "{\"city\": \"S\xC3\xA3o Paulo\"}"}}));
}

// Rule 1's tool escape, end to end.
TEST(ToolCallParserTest, CallInsideUnclosedThinking) {
  const Parsed p = parse_m2("I'll look it up.\n<minimax:tool_call>\n" +
                            invoke("search_web", {{"query", "x"}}) + "\n</minimax:tool_call>");
  EXPECT_EQ(p.message["reasoning_content"], "I'll look it up.\n");
  EXPECT_TRUE(p.message["content"].is_null());
  EXPECT_EQ(calls(p), Calls({{"search_web", R"({"query": "x"})"}}));
}

// append_think: content keeps the think block, the tool parser runs on that content.
TEST(ToolCallParserTest, AppendThinkWithTools) {
  const Parsed p = parse({"r\n</think>\n\nok\n<minimax:tool_call>\n" +
                          invoke("fn_a", {{"x", "1"}}) + "\n</minimax:tool_call>"},
                         tools(), ReasoningMode::kMinimaxM2AppendThink);
  EXPECT_TRUE(p.message["reasoning_content"].is_null());
  EXPECT_EQ(p.message["content"], "<think>r\n</think>\n\nok\n");
  EXPECT_EQ(calls(p), Calls({{"fn_a", R"({"x": 1})"}}));
}

// ---- split invariance ---------------------------------------------------------------------------

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

// What every stream must look like, whatever the split.
void check_delta_shapes(const std::vector<Json>& deltas) {
  int next_index = 0;
  for (const Json& d : deltas) {
    ASSERT_EQ(d.size(), 1u) << d.dump();
    if (d.contains("content") || d.contains("reasoning_content")) {
      const std::string& text = d.begin()->get_ref<const std::string&>();
      EXPECT_FALSE(text.empty());
      EXPECT_TRUE(valid_utf8(text)) << "a delta split a UTF-8 character";
      continue;
    }
    for (const Json& c : d.at("tool_calls")) {
      const int index = c.at("index").get<int>();
      if (index == next_index) {  // first appearance: id, type, name
        EXPECT_TRUE(c.contains("id") && c.contains("type") && c["function"].contains("name"))
            << c.dump();
        ++next_index;
      } else {
        EXPECT_LT(index, next_index);
        EXPECT_EQ(c.size(), 2u) << c.dump();  // index + function.arguments only
        EXPECT_FALSE(c["function"].contains("name"));
      }
    }
  }
}

struct Output {
  std::string text;
  ReasoningMode mode = ReasoningMode::kMinimaxM2;
  bool with_tools = true;
};

std::vector<Output> outputs() {
  const std::string weather =
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Z\xC3\xBCrich "
      "\xE5\x8C\x97\xE4\xBA\xAC</parameter>\n<parameter name=\"days\">3</parameter>\n<parameter "
      "name=\"unit\">celsius</parameter>\n</invoke>\n<invoke name=\"typed\">\n<parameter "
      "name=\"o\">{\"a\": [1, 2.5, \"\xF0\x9F\x98\x80\"]}</parameter>\n<parameter "
      "name=\"b\">yes</parameter>\n<parameter name=\"opt\">null</parameter>\n</invoke>\n"
      "</minimax:tool_call>";
  return {
      {"Weather for two cities \xE2\x80\x94 caf\xC3\xA9.\n</think>\n\nChecking "
       "\xF0\x9F\x8C\xA7.\n" +
       weather},
      {"<think>thinking</think>A <minimax:tool_call> mention, then " + weather +
       " between </think>" + weather + " after \xE2\x9C\x93"},
      {"no end think " + weather},  // tool escape
      {"r</think><minimax:tool_call><invoke name=\"fn_a\">junk<parameter name=\"x\">1</parameter>"
       "</invoke></minimax:tool_call><minimax:tool_call>\n<invoke name=\"\"></invoke> and "
       "<minimax:tool_call><invoke name=\"fn_b\"><parameter name=\"y\">2</parameter></invoke>\n"
       "trailing text"},
      {"r</think>\n \n" + weather + "\n"},  // whitespace-only content
      {"r</think><minimax:tool_call><invoke name=\"fn_a\"><parameter name=\"x\">1</parameter>",
       ReasoningMode::kMinimaxM2},  // EOS inside a call
      {"r\n</think>\n\nok " + weather, ReasoningMode::kMinimaxM2AppendThink},
      {"<think>x</think> " + weather, ReasoningMode::kNone},
      {"Thinking\xE2\x80\xA6</think>text " + weather, ReasoningMode::kMinimaxM2, false},
  };
}

Parsed parse_output(const Output& o, const std::vector<std::string>& chunks, const char* finish) {
  return parse(chunks, o.with_tools ? tools() : nlohmann::json(), o.mode, finish);
}

// Property (rule 8): deltas for any split - every split point into two pieces, byte by byte
// (splitting UTF-8 characters), one code point at a time, and seeded random splits - merge to
// the one-shot parse.
TEST(ToolCallParserTest, SplitInvariance) {
  std::mt19937 rng(20240531);
  for (const Output& o : outputs()) {
    const Parsed one = parse_output(o, {o.text}, "stop");
    check_delta_shapes(one.deltas);
    auto same = [&](const std::vector<std::string>& chunks, const std::string& how) {
      const Parsed p = parse_output(o, chunks, "stop");
      EXPECT_EQ(p.message, one.message) << how << " of: " << o.text;
      EXPECT_EQ(p.finish_reason, one.finish_reason) << how;
      check_delta_shapes(p.deltas);
    };
    for (size_t i = 0; i <= o.text.size(); ++i) {
      same({o.text.substr(0, i), o.text.substr(i)}, "split at " + std::to_string(i));
    }
    std::vector<std::string> bytes, code_points;
    for (char c : o.text) bytes.emplace_back(1, c);
    same(bytes, "byte-wise");
    for (char c : o.text) {
      if ((static_cast<unsigned char>(c) & 0xC0) == 0x80) {
        code_points.back() += c;
      } else {
        code_points.emplace_back(1, c);
      }
    }
    same(code_points, "code-point-wise");
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<std::string> pieces;
      for (size_t at = 0; at < o.text.size();) {
        const size_t n = std::uniform_int_distribution<size_t>(0, 12)(rng);
        pieces.push_back(o.text.substr(at, n));
        at += n;
      }
      same(pieces, "random split " + std::to_string(trial));
    }
  }
}

// Property (rule 7): an output cut anywhere ("length") gives only valid JSON arguments.
TEST(ToolCallParserTest, EveryTruncationGivesValidArguments) {
  for (const Output& o : outputs()) {
    for (size_t n = 0; n <= o.text.size(); ++n) {
      const Parsed p = parse_output(o, {o.text.substr(0, n)}, "length");
      EXPECT_EQ(p.finish_reason, "length");
      for (const auto& [name, args] : calls(p)) {
        EXPECT_FALSE(name.empty());
        const auto parsed = nlohmann::json::parse(args, nullptr, false);
        EXPECT_TRUE(parsed.is_object()) << "cut at " << n << ": " << args;
      }
    }
  }
}

}  // namespace
}  // namespace m2fp4
