// The streaming output parser (reasoning + MiniMax-M2 tool calls). Input: an options byte
// (reasoning mode, tools on/off, finish reason), a chunking seed byte, then model output. The
// output is fed once whole and once in pseudo-random chunks of 1-16 bytes (cutting tags and
// UTF-8 characters anywhere). Invariants: both give the same merged message and finish reason,
// every delta is valid UTF-8 JSON, and the parser's scan work stays linear in the bytes fed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "fuzz_util.h"
#include "text/parsers/output_parser.h"

namespace {

using namespace m2fp4;
using Json = nlohmann::ordered_json;

const nlohmann::json& tools() {
  static const nlohmann::json t = nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"location": {"type": "string"}, "days": {"type": "integer"},
                     "ratio": {"type": "number"}, "ok": {"type": "boolean"},
                     "opts": {"type": "object"}, "tags": {"type": "array"},
                     "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}},
    {"type": "function", "function": {"name": "noop"}}
  ])");
  return t;
}

struct Run {
  Json message;
  std::string finish_reason;
  size_t scanned = 0;
  size_t feeds = 0;
};

Run run(std::string_view text, uint8_t options, uint8_t seed, bool chunked) {
  OutputParserOptions o;
  o.reasoning = static_cast<ReasoningMode>(options % 3);
  if ((options & 4) != 0) o.tools = tools();
  int next_id = 0;
  o.make_tool_call_id = [&next_id] { return "call_" + std::to_string(next_id++); };
  OutputParser parser(std::move(o));
  std::vector<Json> deltas;
  Run r;
  uint32_t state = seed * 2654435761u + 1;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = text.size() - pos;
    if (chunked) {
      state = state * 1103515245u + 12345u;
      n = std::min<size_t>(n, 1 + ((state >> 16) % 16));
    }
    for (Json& d : parser.feed(text.substr(pos, n))) deltas.push_back(std::move(d));
    pos += n;
    ++r.feeds;
  }
  for (Json& d : parser.finish((options & 8) != 0 ? "length" : "stop")) {
    deltas.push_back(std::move(d));
  }
  // Valid UTF-8 in, valid UTF-8 deltas out (a strict dump throws otherwise); invalid bytes are
  // passed on and dumped as U+FFFD.
  bool valid_input = true;
  try {
    (void)Json(std::string(text)).dump();
  } catch (const nlohmann::json::exception&) {
    valid_input = false;
  }
  for (const Json& d : deltas) {
    if (valid_input) {
      (void)d.dump();
    } else {
      (void)d.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  r.message = merge_deltas(deltas);
  r.finish_reason = parser.finish_reason();
  r.scanned = parser.bytes_scanned();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::ByteReader reader(data, size);
  const uint8_t options = reader.byte();
  const uint8_t seed = reader.byte();
  const std::string_view text = reader.rest();
  const Run whole = run(text, options, seed, false);
  const Run chunked = run(text, options, seed, true);
  FUZZ_CHECK(whole.message == chunked.message);
  FUZZ_CHECK(whole.finish_reason == chunked.finish_reason);
  // Linear work: each feed rescans at most a few tag lengths of held-back text.
  FUZZ_CHECK(chunked.scanned <= 8 * text.size() + 128 * chunked.feeds + 256);
  FUZZ_CHECK(whole.scanned <= 8 * text.size() + 256);
  return 0;
}
