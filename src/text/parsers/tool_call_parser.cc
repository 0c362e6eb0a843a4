#include "text/parsers/tool_call_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <utility>

#include "base/error.h"
#include "base/json_depth.h"

namespace m2fp4 {
namespace {

constexpr std::string_view kInvokeClose = "</invoke>";
constexpr std::string_view kParamOpen = "<parameter name=";
constexpr std::string_view kParamClose = "</parameter>";

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

size_t skip_spaces(std::string_view text, size_t pos) {
  while (pos < text.size() && is_space(text[pos])) ++pos;
  return pos;
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Whether `text` at `pos` is `tag` (kPartial: the text ends inside a prefix of it).
PrefixMatch match_at(std::string_view text, size_t pos, std::string_view tag) {
  const std::string_view rest = text.substr(std::min(pos, text.size()));
  if (rest.size() >= tag.size()) {
    return rest.substr(0, tag.size()) == tag ? PrefixMatch::kYes : PrefixMatch::kNo;
  }
  return tag.substr(0, rest.size()) == rest ? PrefixMatch::kPartial : PrefixMatch::kNo;
}

// A name as written after `name=`: bare, "double" or 'single' quoted (vLLM accepts all three).
// Empty when it is not a usable name.
std::string clean_name(std::string_view raw) {
  std::string_view s = trim_spaces(raw);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    s = trim_spaces(s.substr(1, s.size() - 2));
  }
  if (s.find_first_of("\"'") != std::string_view::npos) return {};
  return std::string(s);
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool has_type(const std::vector<std::string>& types,
              std::initializer_list<std::string_view> names) {
  for (const auto& t : types) {
    for (std::string_view n : names) {
      if (t == n) return true;
    }
  }
  return false;
}

// [+-]?digits, as Python's int() reads a trimmed decimal (without its `_` separators).
std::optional<int64_t> parse_integer(std::string_view s) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (!s.empty() && s.front() == '-') return std::nullopt;
  }
  if (s.empty() || s.front() == '+') return std::nullopt;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A finite decimal ([+-]? digits [. digits] [e [+-] digits], or .digits): what Python's float()
// reads, minus inf/nan, which would make the arguments invalid JSON.
std::optional<double> parse_decimal(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const size_t mantissa = i;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t exp_start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == exp_start) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const bool negative = s[0] == '-';
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data() + mantissa, s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return negative ? -v : v;
}

// An integral double that int64 holds exactly, as an integer.
std::optional<int64_t> integral(double v) {
  if (v != std::floor(v) || v < -9.2233720368547758e18 || v >= 9.2233720368547758e18) {
    return std::nullopt;
  }
  return static_cast<int64_t>(v);
}

void dump_python_style(const nlohmann::ordered_json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, item] : v.items()) {
      if (!first) out += ", ";
      first = false;
      out += nlohmann::ordered_json(key).dump(-1, ' ', false,
                                              nlohmann::ordered_json::error_handler_t::replace);
      out += ": ";
      dump_python_style(item, out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out += ", ";
      dump_python_style(v[i], out);
    }
    out += ']';
  } else {
    out += v.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
}

// The JSON value of a parameter text, or a discarded value if it is not JSON. Text nested
// deeper than kMaxJsonDepth counts as not JSON (it stays a string), as vLLM's json.loads fails
// with RecursionError there and keeps the text; this also keeps dumping the value bounded.
nlohmann::ordered_json parse_json_parameter(std::string_view raw) {
  if (json_nesting_depth(raw) > kMaxJsonDepth) return nlohmann::ordered_json::value_t::discarded;
  return nlohmann::ordered_json::parse(raw, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

PrefixMatch match_tool_block_start(std::string_view text, size_t pos, size_t* name_pos,
                                   size_t* spaces_end) {
  const PrefixMatch open = match_at(text, pos, kToolBlockOpen);
  if (open != PrefixMatch::kYes) return open;
  size_t from = pos + kToolBlockOpen.size();
  if (spaces_end != nullptr) from = std::max(from, *spaces_end);
  const size_t invoke = skip_spaces(text, from);
  if (spaces_end != nullptr) *spaces_end = invoke;
  const PrefixMatch m = match_at(text, invoke, kInvokeOpen);
  if (m == PrefixMatch::kYes && name_pos != nullptr) *name_pos = invoke + kInvokeOpen.size();
  return m;
}

size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

std::vector<std::string> schema_types(const nlohmann::json& schema) {
  std::vector<std::string> types;
  auto add = [&](std::string t) {
    t = to_lower(t);
    if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(std::move(t));
  };
  if (schema.is_object()) {
    if (auto it = schema.find("type"); it != schema.end()) {
      if (it->is_string()) add(it->get<std::string>());
      if (it->is_array()) {
        for (const auto& t : *it) {
          if (t.is_string()) add(t.get<std::string>());
        }
      }
    }
    if (auto it = schema.find("enum"); it != schema.end() && it->is_array()) {
      for (const auto& v : *it) {
        if (v.is_null()) add("null");
        if (v.is_boolean()) add("boolean");
        if (v.is_number_integer()) add("integer");
        if (v.is_number_float()) add("number");
        if (v.is_string()) add("string");
        if (v.is_array()) add("array");
        if (v.is_object()) add("object");
      }
    }
    for (const char* choice : {"anyOf", "oneOf", "allOf"}) {
      if (auto it = schema.find(choice); it != schema.end() && it->is_array()) {
        for (const auto& sub : *it) {
          if (!sub.is_object()) continue;  // vLLM: a non-object choice counts as "string"
          for (auto& t : schema_types(sub)) add(std::move(t));
        }
      }
    }
  }
  if (types.empty()) types.push_back("string");
  return types;
}

nlohmann::ordered_json convert_parameter_value(std::string_view raw,
                                               const std::vector<std::string>& types) {
  using Json = nlohmann::ordered_json;
  const bool string_only = std::all_of(types.begin(), types.end(), [](const std::string& t) {
    return t == "string" || t == "str" || t == "text";
  });
  // vLLM nulls null/None/nil whatever the schema; m2fp4 keeps "null" for string-only schemas.
  if (raw == "null" && (has_type(types, {"null"}) || !string_only)) return nullptr;

  if (has_type(types, {"integer", "int"})) {
    if (auto v = parse_integer(raw)) return *v;
    if (auto d = parse_decimal(raw)) {
      if (auto v = integral(*d)) return *v;
    }
  }
  if (has_type(types, {"number", "float"})) {
    if (auto d = parse_decimal(raw)) {
      if (auto v = integral(*d)) return *v;
      return *d;
    }
  }
  if (has_type(types, {"boolean", "bool"})) {
    const std::string lower = to_lower(trim_spaces(raw));
    if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") return true;
    if (lower == "false" || lower == "0" || lower == "no" || lower == "off") return false;
  }
  if (has_type(types, {"object", "array"})) {
    Json v = parse_json_parameter(raw);
    if (!v.is_discarded()) return v;
  }
  if (has_type(types, {"string", "str", "text"})) return std::string(raw);
  Json v = parse_json_parameter(raw);
  if (!v.is_discarded()) return v;
  return std::string(raw);
}

std::string dump_json_python_style(const nlohmann::ordered_json& value) {
  std::string out;
  dump_python_style(value, out);
  return out;
}

ToolSchemas::ToolSchemas(const nlohmann::json& tools) {
  if (tools.is_null()) return;
  M2_CHECK(tools.is_array(), "tools must be an array (or null), got ", tools.type_name());
  for (size_t i = 0; i < tools.size(); ++i) {
    const nlohmann::json& tool = tools[i];
    M2_CHECK(tool.is_object(), "tools[", i, "] must be an object");
    const nlohmann::json& fn = tool.contains("function") ? tool["function"] : tool;
    M2_CHECK(fn.is_object() && fn.contains("name") && fn["name"].is_string(), "tools[", i,
             "] has no function name");
    const std::string name = fn["name"].get<std::string>();
    if (properties_.count(name)) continue;  // vLLM uses the first tool of a name
    nlohmann::json props = nlohmann::json::object();
    if (auto p = fn.find("parameters"); p != fn.end() && p->is_object()) {
      if (auto q = p->find("properties"); q != p->end() && q->is_object()) props = *q;
    }
    properties_.emplace(name, std::move(props));
  }
}

std::vector<std::string> ToolSchemas::param_types(const std::string& tool,
                                                  const std::string& param) const {
  auto t = properties_.find(tool);
  if (t == properties_.end()) return {"string"};
  auto p = t->second.find(param);
  if (p == t->second.end() || !p->is_object()) return {"string"};
  return schema_types(*p);
}

std::string random_tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kHex[rng() & 15];
  return id;
}

ToolCallParser::ToolCallParser(ToolSchemas schemas, IdGenerator make_id)
    : schemas_(std::move(schemas)), make_id_(std::move(make_id)) {}

void ToolCallParser::emit_content(std::vector<ToolCallEvent>& out, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().kind == ToolCallEvent::Kind::kContent) {
    out.back().text.append(text);
    return;
  }
  ToolCallEvent e;
  e.kind = ToolCallEvent::Kind::kContent;
  e.text = std::string(text);
  out.push_back(std::move(e));
}

void ToolCallParser::close_call(std::vector<ToolCallEvent>& out) {
  if (!call_open_) return;
  ToolCallEvent e;
  e.kind = ToolCallEvent::Kind::kArguments;
  e.index = next_index_ - 1;
  e.text = call_params_ == 0 ? "{}" : "}";
  out.push_back(std::move(e));
  call_open_ = false;
}

// Markup that does not fit the format ends the block where the decided text ends.
void ToolCallParser::malformed(std::vector<ToolCallEvent>& out) {
  if (!block_has_call_) {
    // Nothing was announced: `<minimax:tool_call>` was text after all; look again after it.
    emit_content(out, kToolBlockOpen);
    consume(kToolBlockOpen.size());
  } else {
    // pending() starts after the last announced piece of a call: from there on it is content.
    close_call(out);
  }
  enter(State::kContent, 0);
}

void ToolCallParser::feed(std::string_view text, std::vector<ToolCallEvent>& out) {
  // Dropping the decided prefix costs at most what was consumed since the last drop.
  if (head_ > 0 && head_ >= buf_.size() - head_) {
    buf_.erase(0, head_);
    head_ = 0;
  }
  buf_.append(text);
  while (step(out)) {
  }
}

bool ToolCallParser::step(std::vector<ToolCallEvent>& out) {
  const std::string_view buf = pending();
  switch (state_) {
    case State::kContent: {
      // Held-back text here is at most a partial `<minimax:tool_call>`: rescanning it is cheap.
      const size_t open = buf.find(kToolBlockOpen);
      if (open == std::string_view::npos) {
        scanned_ += buf.size();
        const size_t keep = buf.size() - partial_tag_suffix(buf, kToolBlockOpen);
        emit_content(out, buf.substr(0, keep));
        consume(keep);
        return false;
      }
      scanned_ += open + kToolBlockOpen.size();
      emit_content(out, buf.substr(0, open));
      consume(open);
      enter(State::kBlockStart, kToolBlockOpen.size());
      return true;
    }
    case State::kBlockStart: {
      // pending() starts with `<minimax:tool_call>`; the spaces before scan_pos_ are skipped.
      const size_t tag = skip_spaces(buf, scan_pos_);
      scanned_ += tag - scan_pos_ + kInvokeOpen.size();
      scan_pos_ = tag;
      const PrefixMatch m = match_at(buf, tag, kInvokeOpen);
      if (m == PrefixMatch::kPartial) return false;
      if (m == PrefixMatch::kNo) {
        // A mention of the tag, not a block.
        emit_content(out, kToolBlockOpen);
        consume(kToolBlockOpen.size());
        enter(State::kContent, 0);
        return true;
      }
      block_has_call_ = false;
      name_pos_ = tag + kInvokeOpen.size();
      enter(State::kInvokeName, name_pos_);
      return true;
    }
    case State::kInvokeName: {
      const size_t end = buf.find_first_of("<>", scan_pos_);
      scanned_ += (end == std::string_view::npos ? buf.size() : end + 1) - scan_pos_;
      if (end == std::string_view::npos) {
        scan_pos_ = buf.size();
        return false;
      }
      const std::string name =
          buf[end] == '>' ? clean_name(buf.substr(name_pos_, end - name_pos_)) : std::string();
      if (name.empty()) {
        malformed(out);
        return true;
      }
      ToolCallEvent e;
      e.kind = ToolCallEvent::Kind::kCallStart;
      e.index = next_index_++;
      e.id = make_id_();
      e.name = name;
      out.push_back(std::move(e));
      call_name_ = name;
      call_open_ = true;
      call_params_ = 0;
      block_has_call_ = true;
      consume(end + 1);
      enter(State::kInInvoke, 0);
      return true;
    }
    case State::kInInvoke: {
      const size_t tag = skip_spaces(buf, scan_pos_);
      scanned_ += tag - scan_pos_;
      scan_pos_ = tag;
      if (tag == buf.size()) return false;
      scanned_ += kParamOpen.size() + kInvokeClose.size();
      const PrefixMatch param = match_at(buf, tag, kParamOpen);
      const PrefixMatch close = match_at(buf, tag, kInvokeClose);
      if (param == PrefixMatch::kYes) {
        name_pos_ = tag + kParamOpen.size();
        enter(State::kParamName, name_pos_);
      } else if (close == PrefixMatch::kYes) {
        close_call(out);
        consume(tag + kInvokeClose.size());
        enter(State::kBlockIdle, 0);
      } else if (param == PrefixMatch::kPartial || close == PrefixMatch::kPartial) {
        return false;
      } else {
        malformed(out);
      }
      return true;
    }
    case State::kParamName: {
      const size_t end = buf.find_first_of("<>", scan_pos_);
      scanned_ += (end == std::string_view::npos ? buf.size() : end + 1) - scan_pos_;
      if (end == std::string_view::npos) {
        scan_pos_ = buf.size();
        return false;
      }
      param_name_ =
          buf[end] == '>' ? clean_name(buf.substr(name_pos_, end - name_pos_)) : std::string();
      if (param_name_.empty()) {
        malformed(out);
        return true;
      }
      value_pos_ = end + 1;
      enter(State::kParamValue, value_pos_);
      return true;
    }
    case State::kParamValue: {
      const size_t end = buf.find(kParamClose, scan_pos_);
      if (end == std::string_view::npos) {
        scanned_ += buf.size() - scan_pos_;
        // The last bytes may start `</parameter>`: look at them again next time.
        scan_pos_ = std::max(value_pos_, buf.size() - std::min(buf.size(), kParamClose.size()));
        return false;
      }
      scanned_ += end + kParamClose.size() - scan_pos_;
      const std::string_view raw = trim_spaces(buf.substr(value_pos_, end - value_pos_));
      const auto value =
          convert_parameter_value(raw, schemas_.param_types(call_name_, param_name_));
      ToolCallEvent e;
      e.kind = ToolCallEvent::Kind::kArguments;
      e.index = next_index_ - 1;
      e.text = call_params_ == 0 ? "{" : ", ";
      e.text += dump_json_python_style(param_name_);
      e.text += ": ";
      e.text += dump_json_python_style(value);
      out.push_back(std::move(e));
      ++call_params_;
      consume(end + kParamClose.size());
      enter(State::kInInvoke, 0);
      return true;
    }
    case State::kBlockIdle: {
      const size_t tag = skip_spaces(buf, scan_pos_);
      scanned_ += tag - scan_pos_;
      scan_pos_ = tag;
      if (tag == buf.size()) return false;
      scanned_ += kInvokeOpen.size() + kToolBlockClose.size();
      const PrefixMatch invoke = match_at(buf, tag, kInvokeOpen);
      const PrefixMatch close = match_at(buf, tag, kToolBlockClose);
      if (invoke == PrefixMatch::kYes) {
        name_pos_ = tag + kInvokeOpen.size();
        enter(State::kInvokeName, name_pos_);
      } else if (close == PrefixMatch::kYes) {
        consume(tag + kToolBlockClose.size());
        enter(State::kContent, 0);
      } else if (invoke == PrefixMatch::kPartial || close == PrefixMatch::kPartial) {
        return false;
      } else {
        malformed(out);
      }
      return true;
    }
  }
  return false;
}

void ToolCallParser::finish(std::vector<ToolCallEvent>& out) {
  while (step(out)) {
  }
  switch (state_) {
    case State::kContent:
    case State::kBlockStart:
      // A partial tag, or `<minimax:tool_call>` that nothing followed: text.
      emit_content(out, pending());
      break;
    case State::kInvokeName:
      // A block cut before its first call's name was complete yields no call: it is text.
      // A later call cut there is dropped like any cut markup of a block that has calls.
      if (!block_has_call_) emit_content(out, pending());
      break;
    case State::kInInvoke:
    case State::kParamName:
    case State::kParamValue:
      // Cut inside a call (finish_reason "length", or EOS without `</invoke>`): the call keeps
      // its complete parameters and stays valid JSON.
      close_call(out);
      break;
    case State::kBlockIdle:
      // `</minimax:tool_call>` may be missing at the end of the output.
      break;
  }
  buf_.clear();
  head_ = 0;
  enter(State::kContent, 0);
}

}  // namespace m2fp4
