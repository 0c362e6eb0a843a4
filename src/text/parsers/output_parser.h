// Model output -> OpenAI chat-completion deltas: the reasoning parser splits reasoning from
// content, the tool-call parser (when the request has tools) takes calls out of the content
// (serving.md (b)). Fed pieces of any size - even split inside a UTF-8 character - it returns
// deltas whose merged message is the same whatever the split:
//   {"reasoning_content": "..."}
//   {"content": "..."}
//   {"tool_calls": [{"index": 0, "id": "call_..", "type": "function",
//                    "function": {"name": "get_weather", "arguments": ""}}]}
//   {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": \"Paris\""}}]}
// Whitespace-only content is never sent (the merged content is then null).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"

namespace m2fp4 {

struct OutputParserOptions {
  ReasoningMode reasoning = ReasoningMode::kMinimaxM2;
  // The request's `tools` (OpenAI array). Null or empty: no tool parsing, calls stay text.
  nlohmann::json tools;
  ToolCallParser::IdGenerator make_tool_call_id = random_tool_call_id;
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options);

  // The deltas that this piece of output decides, in order (often none: text held back).
  std::vector<nlohmann::ordered_json> feed(std::string_view piece);
  // End of output; `finish_reason` is the engine's: "stop" (EOS or stop string) or "length".
  // Returns the deltas that flush held-back text.
  std::vector<nlohmann::ordered_json> finish(std::string_view finish_reason);

  // After finish(): what the API reports. "length" for a truncated output (even with calls),
  // else "tool_calls" when calls were made, else "stop".
  const std::string& finish_reason() const { return finish_reason_; }
  bool tool_parsing() const { return tool_parsing_; }
  // Bytes the reasoning and tool-call parsers have examined: linear in the bytes fed (see
  // ReasoningParser::bytes_scanned).
  size_t bytes_scanned() const { return reasoning_.bytes_scanned() + tools_.bytes_scanned(); }

 private:
  void route(std::vector<ReasoningPiece>& pieces);
  void add_text(const char* key, std::string_view text);
  void add_content(std::string_view text);
  void add_tool_events(std::vector<ToolCallEvent>& events);

  bool tool_parsing_;
  ReasoningParser reasoning_;
  ToolCallParser tools_;
  std::string utf8_tail_;       // bytes of a UTF-8 character not complete yet
  std::string content_spaces_;  // whitespace-only content, sent once other content follows
  bool content_started_ = false;
  bool finished_ = false;
  std::string finish_reason_;
  std::vector<nlohmann::ordered_json> deltas_;  // of the current feed/finish call
};

// The message that streamed deltas describe: {"role": "assistant", "content": string or null,
// "reasoning_content": string or null, "tool_calls": [{"id", "type", "function": {"name",
// "arguments"}}...]} (tool_calls only when there are calls, in index order).
nlohmann::ordered_json merge_deltas(const std::vector<nlohmann::ordered_json>& deltas);

}  // namespace m2fp4
