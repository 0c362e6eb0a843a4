// Bounded work on adversarial model output (issue 8): unfinished markup fed a few bytes at a time
// is scanned a bounded number of times per byte (the parsers' bytes_scanned() counter, so the
// check is exact rather than timed), and a parameter value nested deeper than kMaxJsonDepth
// stays a string instead of being parsed and dumped recursively.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/json_depth.h"
#include "text/parsers/output_parser.h"
#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"

namespace m2fp4 {
namespace {

using Json = nlohmann::ordered_json;

const nlohmann::json& weather_tools() {
  static const nlohmann::json tools = nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"opts": {"type": "object"}, "location": {"type": "string"}}}}}])");
  return tools;
}

struct Fed {
  Json message;
  size_t scanned = 0;
  size_t feeds = 0;
};

// Feeds `text` to a fresh output parser `chunk` bytes at a time, then finishes.
Fed feed(std::string_view text, size_t chunk, ReasoningMode mode, bool tools) {
  OutputParserOptions options;
  options.reasoning = mode;
  if (tools) options.tools = weather_tools();
  int id = 0;
  options.make_tool_call_id = [&id] { return "call_" + std::to_string(id++); };
  OutputParser parser(std::move(options));
  std::vector<Json> deltas;
  Fed fed;
  for (size_t pos = 0; pos < text.size(); pos += chunk) {
    for (auto& d : parser.feed(text.substr(pos, chunk))) deltas.push_back(std::move(d));
    ++fed.feeds;
  }
  for (auto& d : parser.finish("length")) deltas.push_back(std::move(d));
  fed.message = merge_deltas(deltas);
  fed.scanned = parser.bytes_scanned();
  return fed;
}

struct UnfinishedCase {
  const char* name;
  std::string prefix;
  char filler;
  ReasoningMode mode;
};

// 200 KB after each unfinished prefix, 4 bytes a time: before the fix each feed rescanned the
// held-back text (2.7 s after `<minimax:tool_call>` + whitespace, 12-14 s inside a name), i.e.
// about n^2 / 8 = 5e9 bytes; linear scanning stays under a few bytes per byte fed.
TEST(ParserLimitsTest, UnfinishedMarkupIsScannedLinearly) {
  const std::string call = "<minimax:tool_call>\n<invoke name=\"get_weather\">\n";
  const std::vector<UnfinishedCase> cases = {
      {"block start + spaces (reasoning)", "<minimax:tool_call>", ' ', ReasoningMode::kMinimaxM2},
      {"block start + spaces (content)", "</think><minimax:tool_call>", '\n',
       ReasoningMode::kMinimaxM2},
      {"invoke name", "</think><minimax:tool_call>\n<invoke name=", 'a', ReasoningMode::kNone},
      {"parameter name", call + "<parameter name=", 'b', ReasoningMode::kNone},
      {"parameter value", call + "<parameter name=\"location\">", 'c', ReasoningMode::kNone},
      {"between parameters", call, ' ', ReasoningMode::kNone},
      {"after invoke", call + "</invoke>", '\t', ReasoningMode::kNone},
      {"content", "</think>", 'x', ReasoningMode::kMinimaxM2},
      {"reasoning", "", 'y', ReasoningMode::kMinimaxM2},
  };
  constexpr size_t kFiller = 200'000;
  constexpr size_t kChunk = 4;
  for (const UnfinishedCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string text = c.prefix + std::string(kFiller, c.filler);
    const Fed streamed = feed(text, kChunk, c.mode, /*tools=*/true);
    EXPECT_LE(streamed.scanned, 8 * text.size()) << "fed " << text.size() << " bytes";
    // The work bound does not change what is decided.
    const Fed whole = feed(text, text.size(), c.mode, /*tools=*/true);
    EXPECT_EQ(streamed.message, whole.message);
    EXPECT_LE(whole.scanned, 4 * text.size());
  }
}

// Many complete calls in one piece: consuming each decided piece must not move the rest of the
// buffer (that was quadratic in the number of calls for one large feed).
TEST(ParserLimitsTest, ManyCallsInOnePieceAreLinear) {
  std::string text = "</think>";
  const std::string call =
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"location\">P"
      "</parameter>\n</invoke>\n</minimax:tool_call>";
  for (int i = 0; i < 5000; ++i) text += call + "<minimax:tool_call>mention";
  const Fed whole = feed(text, text.size(), ReasoningMode::kMinimaxM2, /*tools=*/true);
  ASSERT_TRUE(whole.message.contains("tool_calls"));
  EXPECT_EQ(whole.message["tool_calls"].size(), 5000u);
  EXPECT_LE(whole.scanned, 4 * text.size());
  const Fed streamed = feed(text, 7, ReasoningMode::kMinimaxM2, /*tools=*/true);
  EXPECT_EQ(streamed.message, whole.message);
}

std::string nested_array(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// `m2fp4 parse` died with SIGSEGV on a parameter value nested deep: the JSON was parsed and then
// dumped recursively. Past kMaxJsonDepth the value is kept as the text it is (vLLM's json.loads
// fails with RecursionError there and keeps the text too).
TEST(ParserLimitsTest, DeeplyNestedParameterValueStaysText) {
  const std::string deep = nested_array(100'000);
  EXPECT_EQ(convert_parameter_value(deep, {"object"}), Json(deep));
  EXPECT_EQ(convert_parameter_value(deep, {"integer"}), Json(deep));
  const std::string shallow = nested_array(kMaxJsonDepth);
  EXPECT_TRUE(convert_parameter_value(shallow, {"object"}).is_array());
  EXPECT_EQ(convert_parameter_value(nested_array(kMaxJsonDepth + 1), {"array"}),
            Json(nested_array(kMaxJsonDepth + 1)));

  const std::string text =
      "</think><minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"opts\">" +
      deep + "</parameter>\n</invoke>\n</minimax:tool_call>";
  const Fed fed = feed(text, 64, ReasoningMode::kMinimaxM2, /*tools=*/true);
  ASSERT_TRUE(fed.message.contains("tool_calls"));
  const Json arguments =
      Json::parse(fed.message["tool_calls"][0]["function"]["arguments"].get<std::string>());
  EXPECT_EQ(arguments, Json({{"opts", deep}}));
}

}  // namespace
}  // namespace m2fp4
