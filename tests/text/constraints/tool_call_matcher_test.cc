// The tool-call matcher: texts written the way the chat template writes calls are taken byte by
// byte, and what it takes to the end is read back by the repo's own minimax_m2 output parser
// (text/parsers) as calls of the request's tools with schema-valid arguments; malformed or
// off-schema texts are refused at the first impossible byte (hand-checked).
#include "text/constraints/tool_call_matcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/parsers/output_parser.h"

namespace m2fp4 {
namespace {

using Json = nlohmann::ordered_json;

const nlohmann::json& tools() {
  static const nlohmann::json t = nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {
      "type": "object",
      "properties": {"city": {"type": "string"},
                     "unit": {"enum": ["celsius", "fahrenheit"]},
                     "days": {"type": "integer"},
                     "hourly": {"type": "boolean"},
                     "coords": {"type": "array"},
                     "scale": {"type": "number"}},
      "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
      "type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get", "parameters": {
      "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}},
    {"type": "function", "function": {"name": "bad\"name"}}
  ])");
  return t;
}

// Bytes taken before one is refused (text.size() if none), and whether the block is complete.
size_t taken(const ToolCallGrammar& g, const std::string& text, bool* complete = nullptr) {
  ToolCallMatcher m(&g);
  for (size_t i = 0; i < text.size(); ++i) {
    if (!m.feed(static_cast<uint8_t>(text[i]))) return i;
  }
  if (complete) *complete = m.complete();
  return text.size();
}

Json parse_calls(const std::string& text) {
  OutputParserOptions o;
  o.reasoning = ReasoningMode::kNone;
  o.tools = tools();
  OutputParser p(o);
  std::vector<Json> deltas = p.feed(text);
  for (auto& d : p.finish("stop")) deltas.push_back(std::move(d));
  Json m = merge_deltas(deltas);
  EXPECT_EQ(p.finish_reason(), "tool_calls") << text;
  return m;
}

const std::string kCall =
    "<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
    "<parameter name=\"city\">Paris <b></parameter>\n"
    "<parameter name=\"unit\">celsius</parameter>\n"
    "<parameter name=\"days\">-12</parameter>\n"
    "<parameter name=\"hourly\">true</parameter>\n"
    "<parameter name=\"coords\">[1.5, {\"a\": \"</p>\"}]</parameter>\n"
    "<parameter name=\"scale\">2.5e3</parameter>\n"
    "</invoke>\n</minimax:tool_call>";

TEST(ToolCallMatcher, TakesTemplateFormattedCallsThatTheParserReadsBack) {
  const auto g = ToolCallGrammar::build(tools(), true);
  bool complete = false;
  ASSERT_EQ(taken(*g, "\n\n" + kCall, &complete), kCall.size() + 2);
  EXPECT_TRUE(complete);
  const Json m = parse_calls(kCall);
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "get_weather");
  const Json args = Json::parse(m["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_EQ(args, Json::parse(R"({"city": "Paris <b>", "unit": "celsius", "days": -12,
      "hourly": true, "coords": [1.5, {"a": "</p>"}], "scale": 2500.0})"));

  const std::string two =
      "<minimax:tool_call>\n<invoke name=\"get_time\">\n</invoke>\n"
      "<invoke name=\"get\">\n<parameter name=\"x\">0</parameter>\n</invoke>\n"
      "</minimax:tool_call>";
  ASSERT_EQ(taken(*g, two, &complete), two.size());
  EXPECT_TRUE(complete);
  const Json m2 = parse_calls(two);
  ASSERT_EQ(m2["tool_calls"].size(), 2u);
  EXPECT_EQ(m2["tool_calls"][0]["function"]["name"], "get_time");
  EXPECT_EQ(m2["tool_calls"][0]["function"]["arguments"], "{}");
  EXPECT_EQ(m2["tool_calls"][1]["function"]["arguments"], "{\"x\": 0}");
}

TEST(ToolCallMatcher, RefusesOffSchemaTextAtTheFirstImpossibleByte) {
  const auto g = ToolCallGrammar::build(tools(), true);
  const std::string open = "<minimax:tool_call>\n<invoke name=\"";
  const std::string weather = open + "get_weather\">\n";
  struct Case {
    std::string text;
    size_t taken;
  };
  const std::vector<Case> cases = {
      {"Sure: " + open, 0},                     // text before the block
      {std::string(9, ' ') + open, 8},          // too much leading whitespace
      {open + "get_wind\">", open.size() + 5},  // unknown tool
      {open + "get\"x", open.size() + 4},       // `get"` must go on with `>\n`
      {open + "bad", open.size() + 0},          // unwritable name left out
      {weather + "<parameter name=\"town\">", weather.size() + 17},
      {weather + "</invoke>", weather.size() + 1},  // `city` is required
      {weather + "<parameter name=\"unit\">kelvin", weather.size() + 23},
      {weather + "<parameter name=\"days\">1.5", weather.size() + 24},
      {weather + "<parameter name=\"days\">007", weather.size() + 24},
      {weather + "<parameter name=\"hourly\">yes", weather.size() + 25},
      {weather + "<parameter name=\"coords\">{}", weather.size() + 25},
      {weather + "<parameter name=\"coords\">[\"</parameter>\"]",
       weather.size() + 25 + 2 + 11},  // the tag inside JSON
      {weather + "<parameter name=\"city\">a</parameter>x", weather.size() + 36},
      {weather + "<parameter name=\"city\">a</parameter>\n<parameter name=\"city\">",
       weather.size() + 37 + 17 + 1},  // only the used `city` starts with "ci"
      {weather + "<parameter name=\"city\">\xc3(</parameter>", weather.size() + 24},
  };
  for (const Case& c : cases) EXPECT_EQ(taken(*g, c.text), c.taken) << c.text;

  const std::string one = "<minimax:tool_call>\n<invoke name=\"get_time\">\n</invoke>\n";
  const auto single = ToolCallGrammar::build(tools(), false);
  EXPECT_EQ(taken(*single, one + "<invoke"), one.size() + 1);  // no parallel calls
  bool complete = true;
  EXPECT_EQ(taken(*single, one + "</minimax:tool_call>", &complete), one.size() + 20);
  EXPECT_TRUE(complete);
  EXPECT_EQ(taken(*single, one + "</minimax:tool_call>\n"), one.size() + 20);  // then nothing
}

TEST(ToolCallMatcher, FreeParameterNamesWhenNoPropertiesAreDeclared) {
  const auto g = ToolCallGrammar::build(
      nlohmann::json::parse(R"([{"type": "function", "function": {"name": "f"}}])"), true);
  const std::string text =
      "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"any_n\xc3\xa9\">v</parameter>\n"
      "</invoke>\n</minimax:tool_call>";
  bool complete = false;
  EXPECT_EQ(taken(*g, text, &complete), text.size());
  EXPECT_TRUE(complete);
  const std::string spaced = "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a b";
  EXPECT_EQ(taken(*g, spaced), spaced.size() - 2);
}

TEST(ToolCallMatcher, NoWritableToolIsAnError) {
  EXPECT_THROW(
      ToolCallGrammar::build(nlohmann::json::parse(R"([{"function": {"name": "<x>"}}])"), true),
      Error);
}

// Random walks over accepted bytes (values typed, so walks end): never a dead end, and every
// completed block is read back as calls of known tools with schema-valid arguments.
TEST(ToolCallMatcher, RandomWalksGiveSchemaValidCalls) {
  const nlohmann::json typed = nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "set", "parameters": {"type": "object",
      "properties": {"n": {"type": "integer"}, "on": {"type": "boolean"},
                     "mode": {"enum": ["a", "ab", 3]}, "v": {"type": "object"}},
      "required": ["n"]}}},
    {"type": "function", "function": {"name": "setup", "parameters": {"type": "object",
      "properties": {"k": {"enum": ["x"]}}}}}
  ])");
  std::mt19937 rng(5);
  for (bool parallel : {true, false}) {
    const auto g = ToolCallGrammar::build(typed, parallel);
    int completed = 0;
    for (int walk = 0; walk < 200; ++walk) {
      ToolCallMatcher m(g.get());
      std::string text;
      for (int step = 0; step < 3000 && !m.complete(); ++step) {
        std::vector<uint8_t> ok;
        for (int b = 0; b < 256; ++b) {
          ToolCallMatcher probe = m;
          if (probe.feed(static_cast<uint8_t>(b))) ok.push_back(static_cast<uint8_t>(b));
        }
        ASSERT_FALSE(ok.empty()) << "dead end after '" << text << "'";
        uint8_t b = ok[rng() % ok.size()];
        for (uint8_t pref : {'}', '<', '"'}) {  // close JSON values and tags sooner
          if (rng() % 2 == 0 && std::find(ok.begin(), ok.end(), pref) != ok.end()) b = pref;
        }
        ASSERT_TRUE(m.feed(b));
        text += static_cast<char>(b);
      }
      if (!m.complete()) continue;
      ++completed;
      OutputParserOptions o;
      o.reasoning = ReasoningMode::kNone;
      o.tools = typed;
      OutputParser p(o);
      std::vector<Json> deltas = p.feed(text);
      for (auto& d : p.finish("stop")) deltas.push_back(std::move(d));
      ASSERT_EQ(p.finish_reason(), "tool_calls") << text;
      const Json msg = merge_deltas(deltas);
      EXPECT_TRUE(msg["content"].is_null()) << text;
      ASSERT_GE(msg["tool_calls"].size(), 1u);
      if (!parallel) {
        EXPECT_EQ(msg["tool_calls"].size(), 1u) << text;
      }
      for (const auto& call : msg["tool_calls"]) {
        const std::string name = call["function"]["name"];
        const Json args = Json::parse(call["function"]["arguments"].get<std::string>());
        ASSERT_TRUE(args.is_object());
        if (name == "set") {
          ASSERT_TRUE(args.contains("n")) << text;
          EXPECT_TRUE(args["n"].is_number_integer()) << text;
          if (args.contains("on")) {
            EXPECT_TRUE(args["on"].is_boolean());
          }
          if (args.contains("mode")) {
            EXPECT_TRUE(args["mode"] == "a" || args["mode"] == "ab" || args["mode"] == 3) << text;
          }
          if (args.contains("v")) {
            EXPECT_TRUE(args["v"].is_object()) << text;
          }
          for (const auto& [k, v] : args.items()) {
            EXPECT_TRUE(k == "n" || k == "on" || k == "mode" || k == "v") << k;
          }
        } else {
          ASSERT_EQ(name, "setup");
          for (const auto& [k, v] : args.items()) {
            EXPECT_EQ(k, "k");
            EXPECT_EQ(v, "x");
          }
        }
      }
    }
    EXPECT_GT(completed, 100);
  }
}

}  // namespace
}  // namespace m2fp4
