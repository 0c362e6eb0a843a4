#include "text/parsers/output_parser.h"

#include <map>
#include <utility>

#include "base/error.h"

namespace m2fp4 {
namespace {

using Json = nlohmann::ordered_json;

bool tools_given(const nlohmann::json& tools) {
  if (tools.is_null()) return false;
  M2_CHECK(tools.is_array(), "tools must be an array (or null), got ", tools.type_name());
  return !tools.empty();
}

// Bytes at the end of `s` that start a UTF-8 character whose other bytes have not arrived.
size_t incomplete_utf8_suffix(std::string_view s) {
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t length = c >= 0xF0 && c <= 0xF7   ? 4
                          : c >= 0xE0 && c <= 0xEF ? 3
                          : c >= 0xC0 && c <= 0xDF ? 2
                                                   : 1;
    return length > back ? back : 0;
  }
  return 0;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace

OutputParser::OutputParser(OutputParserOptions options)
    : tool_parsing_(tools_given(options.tools)),
      reasoning_(options.reasoning),
      tools_(tool_parsing_ ? ToolSchemas(options.tools) : ToolSchemas(),
             std::move(options.make_tool_call_id)) {}

std::vector<Json> OutputParser::feed(std::string_view piece) {
  M2_CHECK(!finished_, "output parser fed after finish()");
  // Tags are ASCII, so holding back a partial character never delays a decision; it keeps every
  // delta valid UTF-8.
  utf8_tail_.append(piece);
  const size_t keep = utf8_tail_.size() - incomplete_utf8_suffix(utf8_tail_);
  std::vector<ReasoningPiece> pieces;
  reasoning_.feed(std::string_view(utf8_tail_).substr(0, keep), pieces);
  utf8_tail_.erase(0, keep);
  route(pieces);
  return std::exchange(deltas_, {});
}

std::vector<Json> OutputParser::finish(std::string_view finish_reason) {
  M2_CHECK(!finished_, "output parser finished twice");
  M2_CHECK(finish_reason == "stop" || finish_reason == "length", "unknown finish reason '",
           finish_reason, "' (expected stop or length)");
  finished_ = true;
  std::vector<ReasoningPiece> pieces;
  reasoning_.feed(utf8_tail_, pieces);  // an invalid tail: passed on, dumped as U+FFFD
  utf8_tail_.clear();
  reasoning_.finish(pieces);
  route(pieces);
  if (tool_parsing_) {
    std::vector<ToolCallEvent> events;
    tools_.finish(events);
    add_tool_events(events);
  }
  content_spaces_.clear();  // whitespace-only content is null
  if (finish_reason == "length") {
    finish_reason_ = "length";
  } else {
    finish_reason_ = tools_.calls_started() > 0 ? "tool_calls" : "stop";
  }
  return std::exchange(deltas_, {});
}

void OutputParser::route(std::vector<ReasoningPiece>& pieces) {
  for (ReasoningPiece& p : pieces) {
    if (p.is_reasoning) {
      add_text("reasoning_content", p.text);
    } else if (tool_parsing_) {
      std::vector<ToolCallEvent> events;
      tools_.feed(p.text, events);
      add_tool_events(events);
    } else {
      add_content(p.text);
    }
  }
}

// Appends text to the last delta when it carries only the same key, else starts a delta.
void OutputParser::add_text(const char* key, std::string_view text) {
  if (text.empty()) return;
  if (!deltas_.empty() && deltas_.back().size() == 1 && deltas_.back().contains(key)) {
    deltas_.back()[key].get_ref<std::string&>().append(text);
    return;
  }
  Json delta = Json::object();
  delta[key] = std::string(text);
  deltas_.push_back(std::move(delta));
}

void OutputParser::add_content(std::string_view text) {
  if (content_started_) {
    add_text("content", text);
    return;
  }
  size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  content_spaces_.append(text.substr(0, i));
  if (i == text.size()) return;
  content_started_ = true;
  add_text("content", content_spaces_);
  content_spaces_.clear();
  add_text("content", text.substr(i));
}

void OutputParser::add_tool_events(std::vector<ToolCallEvent>& events) {
  for (ToolCallEvent& e : events) {
    if (e.kind == ToolCallEvent::Kind::kContent) {
      add_content(e.text);
      continue;
    }
    Json* calls = nullptr;
    if (!deltas_.empty() && deltas_.back().contains("tool_calls")) {
      calls = &deltas_.back()["tool_calls"];
    } else {
      Json delta = Json::object();
      delta["tool_calls"] = Json::array();
      deltas_.push_back(std::move(delta));
      calls = &deltas_.back()["tool_calls"];
    }
    if (e.kind == ToolCallEvent::Kind::kCallStart) {
      Json call = Json::object();
      call["index"] = e.index;
      call["id"] = std::move(e.id);
      call["type"] = "function";
      call["function"] = Json{{"name", std::move(e.name)}, {"arguments", ""}};
      calls->push_back(std::move(call));
    } else if (!calls->empty() && calls->back()["index"] == e.index) {
      calls->back()["function"]["arguments"].get_ref<std::string&>().append(e.text);
    } else {
      Json call = Json::object();
      call["index"] = e.index;
      call["function"] = Json{{"arguments", std::move(e.text)}};
      calls->push_back(std::move(call));
    }
  }
}

Json merge_deltas(const std::vector<Json>& deltas) {
  std::string content, reasoning;
  bool has_content = false, has_reasoning = false;
  std::map<int, Json> calls;
  for (const Json& d : deltas) {
    if (auto it = d.find("content"); it != d.end() && it->is_string()) {
      content += it->get<std::string>();
      has_content = true;
    }
    if (auto it = d.find("reasoning_content"); it != d.end() && it->is_string()) {
      reasoning += it->get<std::string>();
      has_reasoning = true;
    }
    if (auto it = d.find("tool_calls"); it != d.end()) {
      for (const Json& c : *it) {
        const int index = c.at("index").get<int>();
        Json& call = calls[index];
        if (call.is_null()) {
          call = Json{{"id", nullptr},
                      {"type", "function"},
                      {"function", Json{{"name", ""}, {"arguments", ""}}}};
        }
        if (c.contains("id")) call["id"] = c["id"];
        if (c.contains("type")) call["type"] = c["type"];
        if (auto f = c.find("function"); f != c.end()) {
          if (f->contains("name")) {
            call["function"]["name"].get_ref<std::string&>() += (*f)["name"].get<std::string>();
          }
          if (f->contains("arguments")) {
            call["function"]["arguments"].get_ref<std::string&>() +=
                (*f)["arguments"].get<std::string>();
          }
        }
      }
    }
  }
  Json message = Json::object();
  message["role"] = "assistant";
  message["content"] = has_content && !content.empty() ? Json(content) : Json(nullptr);
  message["reasoning_content"] = has_reasoning && !reasoning.empty() ? Json(reasoning) : Json();
  if (!calls.empty()) {
    Json list = Json::array();
    for (auto& [index, call] : calls) list.push_back(std::move(call));
    message["tool_calls"] = std::move(list);
  }
  return message;
}

}  // namespace m2fp4
