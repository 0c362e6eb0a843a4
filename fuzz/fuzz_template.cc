// Chat template parse + render. Input: template source, optionally followed by a NUL byte and a
// JSON array of messages (else a fixed conversation with tools, a tool call, a tool result,
// reasoning and list-of-parts content). Every failure must be an m2fp4::Error; any other
// exception escapes and libFuzzer reports it as a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_depth.h"
#include "fuzz_util.h"
#include "text/chat/chat_template.h"

namespace {

using Json = nlohmann::ordered_json;

const Json& default_messages() {
  static const Json messages = Json::parse(R"([
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris? \u00e9\u4f60"}]},
    {"role": "assistant", "content": "", "reasoning_content": "Call the tool.",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 3}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
    {"role": "assistant", "content": "It is 21 degrees."},
    {"role": "user", "content": "Thanks"}
  ])");
  return messages;
}

const Json& default_tools() {
  static const Json tools = Json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                     "n": {"type": "integer"}}, "required": ["city"]}}}
  ])");
  return tools;
}

const Json& extra_context() {
  static const Json extra =
      Json::parse(R"({"bos_token": "<s>", "eos_token": "</s>", "enable_thinking": true})");
  return extra;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view source = input.substr(0, nul);
  Json messages = default_messages();
  if (nul != std::string_view::npos) {
    const std::string_view json = input.substr(nul + 1);
    if (m2fp4::json_nesting_depth(json) <= m2fp4::kMaxJsonDepth) {
      Json parsed = Json::parse(json, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_array()) messages = std::move(parsed);
    }
  }
  try {
    const m2fp4::ChatTemplate chat_template(source);
    (void)chat_template.render(messages, default_tools(), /*add_generation_prompt=*/true,
                               extra_context());
    (void)chat_template.render(messages, nullptr, /*add_generation_prompt=*/false);
  } catch (const m2fp4::Error&) {
  }
  return 0;
}
