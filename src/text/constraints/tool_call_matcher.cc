#include "text/constraints/tool_call_matcher.h"

#include <algorithm>
#include <numeric>
#include <string_view>

#include "base/error.h"
#include "text/parsers/tool_call_parser.h"

namespace m2fp4 {
namespace {

constexpr std::string_view kOpen = "<minimax:tool_call>\n<invoke name=\"";
constexpr std::string_view kFreeNameEnd = "\">";
constexpr std::string_view kValueClose = "</parameter>\n";
constexpr std::string_view kParamStart = "<parameter name=\"";
constexpr std::string_view kInvokeEnd = "</invoke>\n";
constexpr std::string_view kNextInvoke = "<invoke name=\"";
constexpr std::string_view kBlockEnd = "</minimax:tool_call>";

bool is_ws(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// A name the parser reads back unchanged from `name="..."`.
bool writable_name(const std::string& name) {
  if (name.empty() || name.size() > 256) return false;
  if (is_ws(static_cast<uint8_t>(name.front())) || is_ws(static_cast<uint8_t>(name.back()))) {
    return false;
  }
  for (unsigned char c : name) {
    if (c == '"' || c == '\'' || c == '<' || c == '>' || c < 0x20) return false;
  }
  return true;
}

// A byte a free parameter name may hold (no spaces: the parser trims them).
bool free_name_byte(uint8_t c) {
  return !(c == '"' || c == '\'' || c == '<' || c == '>' || c <= 0x20 || c == 0x7F);
}

ToolCallGrammar::Value value_spec(const nlohmann::json& schema) {
  using Value = ToolCallGrammar::Value;
  Value v;
  if (!schema.is_object()) return v;
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array() && !e->empty()) {
    std::vector<std::string> choices;
    bool ok = true;
    for (const auto& x : *e) {
      if (x.is_structured()) ok = false;
      if (!ok) break;
      std::string text = x.is_string() ? x.get<std::string>() : dump_json_python_style(x);
      if (text.find("</parameter>") != std::string::npos) ok = false;
      choices.push_back(text + std::string(kValueClose));
    }
    if (ok) {
      std::sort(choices.begin(), choices.end());
      choices.erase(std::unique(choices.begin(), choices.end()), choices.end());
      v.kind = Value::Kind::kChoice;
      v.choices = std::move(choices);
      return v;
    }
  }
  const std::vector<std::string> types = schema_types(schema);
  if (types.size() != 1) return v;
  const std::string& t = types[0];
  if (t == "integer" || t == "int") {
    v.kind = Value::Kind::kInteger;
  } else if (t == "number" || t == "float") {
    v.kind = Value::Kind::kJson;
    v.json_types = kJsonNumber;
  } else if (t == "object" || t == "array") {
    v.kind = Value::Kind::kJson;
    v.json_types = t == "object" ? kJsonObject : kJsonArray;
  } else if (t == "boolean" || t == "bool") {
    v.kind = Value::Kind::kChoice;
    v.choices = {"false" + std::string(kValueClose), "true" + std::string(kValueClose)};
  } else if (t == "null") {
    v.kind = Value::Kind::kChoice;
    v.choices = {"null" + std::string(kValueClose)};
  }
  return v;
}

ToolCallGrammar::Tool tool_spec(const nlohmann::json& fn) {
  ToolCallGrammar::Tool tool;
  const nlohmann::json* props = nullptr;
  const nlohmann::json* required = nullptr;
  if (auto p = fn.find("parameters"); p != fn.end() && p->is_object()) {
    if (auto q = p->find("properties"); q != p->end() && q->is_object() && !q->empty()) {
      props = &*q;
    }
    if (auto r = p->find("required"); r != p->end() && r->is_array()) required = &*r;
  }
  if (props == nullptr) {
    tool.free_params = true;
    return tool;
  }
  std::vector<std::pair<std::string, const nlohmann::json*>> params;
  for (auto it = props->begin(); it != props->end(); ++it) {
    if (writable_name(it.key())) params.emplace_back(it.key() + std::string(kFreeNameEnd), &*it);
  }
  std::sort(params.begin(), params.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < params.size(); ++i) {
    tool.param_heads.push_back(params[i].first);
    tool.values.push_back(value_spec(*params[i].second));
    if (required != nullptr && i < 64) {
      const std::string name = params[i].first.substr(0, params[i].first.size() - 2);
      for (const auto& r : *required) {
        if (r.is_string() && r.get<std::string>() == name) tool.required |= uint64_t{1} << i;
      }
    }
  }
  return tool;
}

}  // namespace

std::shared_ptr<const ToolCallGrammar> ToolCallGrammar::build(const nlohmann::json& tools,
                                                              bool parallel_tool_calls) {
  auto g = std::make_shared<ToolCallGrammar>();
  g->parallel = parallel_tool_calls;
  std::vector<std::pair<std::string, Tool>> entries;
  if (tools.is_array()) {
    for (const auto& t : tools) {
      if (!t.is_object()) continue;
      const nlohmann::json& fn = t.contains("function") ? t["function"] : t;
      if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string()) continue;
      const std::string name = fn["name"].get<std::string>();
      if (!writable_name(name)) continue;
      const std::string head = name + "\">\n";
      const bool seen = std::any_of(entries.begin(), entries.end(),
                                    [&](const auto& e) { return e.first == head; });
      if (!seen) entries.emplace_back(head, tool_spec(fn));  // the first tool of a name wins
    }
  }
  M2_CHECK(!entries.empty(),
           "no tool name can be written in the MiniMax-M2 tool-call format (names must be "
           "non-empty, without quotes or angle brackets)");
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [head, tool] : entries) {
    g->tool_heads.push_back(head);
    g->tools.push_back(std::move(tool));
  }
  return g;
}

const std::vector<std::string>& ToolCallMatcher::choice_list() const {
  switch (choice_) {
    case ChoiceList::kTools:
      return g_->tool_heads;
    case ChoiceList::kParams:
      return g_->tools[tool_].param_heads;
    case ChoiceList::kValues:
      break;
  }
  return g_->tools[tool_].values[param_].choices;
}

bool ToolCallMatcher::params_left() const {
  const ToolCallGrammar::Tool& t = g_->tools[tool_];
  if (t.free_params) return true;
  const size_t n = t.param_heads.size();
  if (n > 64) return true;
  const uint64_t all = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  return (used_ & all) != all;
}

void ToolCallMatcher::start_literal(Literal literal, uint8_t pos) {
  phase_ = Phase::kLiteral;
  literal_ = literal;
  pos_ = pos;
}

void ToolCallMatcher::enter_invoke_body() {
  const ToolCallGrammar::Tool& t = g_->tools[tool_];
  phase_ = Phase::kAlternatives;
  alt_ = Alt::kInvokeBody;
  pos_ = 0;
  alive_ = 0;
  if (params_left()) alive_ |= 1;
  if ((t.required & ~used_) == 0) alive_ |= 2;
}

void ToolCallMatcher::enter_value() {
  close_ = 0;
  count_ = 0;
  utf8_ = Utf8Checker{};
  if (param_ < 0) {
    phase_ = Phase::kValueText;
    return;
  }
  const ToolCallGrammar::Value& v = g_->tools[tool_].values[param_];
  switch (v.kind) {
    case ToolCallGrammar::Value::Kind::kText:
      phase_ = Phase::kValueText;
      break;
    case ToolCallGrammar::Value::Kind::kInteger:
      phase_ = Phase::kValueInteger;
      int_state_ = 0;
      break;
    case ToolCallGrammar::Value::Kind::kJson:
      phase_ = Phase::kValueJson;
      json_ = JsonMatcher(v.json_types);
      break;
    case ToolCallGrammar::Value::Kind::kChoice:
      phase_ = Phase::kChoice;
      choice_ = ChoiceList::kValues;
      lo_ = 0;
      hi_ = static_cast<uint32_t>(v.choices.size());
      pos_ = 0;
      break;
  }
}

bool ToolCallMatcher::feed_literal(uint8_t byte) {
  std::string_view lit = literal_ == Literal::kOpen          ? kOpen
                         : literal_ == Literal::kFreeNameEnd ? kFreeNameEnd
                                                             : kValueClose;
  if (byte != static_cast<uint8_t>(lit[pos_])) return false;
  if (++pos_ < lit.size()) return true;
  switch (literal_) {
    case Literal::kOpen:
      phase_ = Phase::kChoice;
      choice_ = ChoiceList::kTools;
      lo_ = 0;
      hi_ = static_cast<uint32_t>(g_->tool_heads.size());
      pos_ = 0;
      break;
    case Literal::kFreeNameEnd:
      param_ = -1;
      enter_value();
      break;
    case Literal::kValueClose:
      enter_invoke_body();
      break;
  }
  return true;
}

bool ToolCallMatcher::feed_alternatives(uint8_t byte) {
  const std::string_view first = alt_ == Alt::kInvokeBody ? kParamStart : kNextInvoke;
  const std::string_view second = alt_ == Alt::kInvokeBody ? kInvokeEnd : kBlockEnd;
  uint8_t alive = 0;
  if ((alive_ & 1) && pos_ < first.size() && static_cast<uint8_t>(first[pos_]) == byte) alive |= 1;
  if ((alive_ & 2) && pos_ < second.size() && static_cast<uint8_t>(second[pos_]) == byte) {
    alive |= 2;
  }
  if (alive == 0) return false;
  alive_ = alive;
  ++pos_;
  if (alive_ == 1 && pos_ == first.size()) {
    if (alt_ == Alt::kInvokeBody) {
      if (g_->tools[tool_].free_params) {
        phase_ = Phase::kFreeName;
        count_ = 0;
        utf8_ = Utf8Checker{};
      } else {
        phase_ = Phase::kChoice;
        choice_ = ChoiceList::kParams;
        lo_ = 0;
        hi_ = static_cast<uint32_t>(g_->tools[tool_].param_heads.size());
        pos_ = 0;
      }
    } else {
      phase_ = Phase::kChoice;
      choice_ = ChoiceList::kTools;
      lo_ = 0;
      hi_ = static_cast<uint32_t>(g_->tool_heads.size());
      pos_ = 0;
    }
  } else if (alive_ == 2 && pos_ == second.size()) {
    if (alt_ == Alt::kInvokeBody) {
      phase_ = Phase::kAlternatives;
      alt_ = Alt::kAfterInvoke;
      pos_ = 0;
      alive_ = static_cast<uint8_t>((g_->parallel ? 1 : 0) | 2);
    } else {
      phase_ = Phase::kDone;
    }
  }
  return true;
}

bool ToolCallMatcher::feed_choice(uint8_t byte) {
  const std::vector<std::string>& list = choice_list();
  // The candidates share their first pos_ bytes, so their bytes at pos_ are sorted.
  auto at = [&](uint32_t i) { return static_cast<uint8_t>(list[i][pos_]); };
  uint32_t lo = lo_, hi = hi_;
  {
    uint32_t a = lo, b = hi;  // first with at(i) >= byte
    while (a < b) {
      const uint32_t m = a + (b - a) / 2;
      if (at(m) < byte)
        a = m + 1;
      else
        b = m;
    }
    lo = a;
    b = hi;  // first with at(i) > byte
    while (a < b) {
      const uint32_t m = a + (b - a) / 2;
      if (at(m) <= byte)
        a = m + 1;
      else
        b = m;
    }
    hi = a;
  }
  if (lo >= hi) return false;
  if (choice_ == ChoiceList::kParams && hi <= 64) {
    // At least one candidate must still be unused.
    const uint64_t range =
        (hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1);
    if ((range & ~used_) == 0) return false;
  }
  lo_ = lo;
  hi_ = hi;
  ++pos_;
  if (list[lo_].size() != pos_) return true;
  // The strings are prefix-free: a complete one is the only candidate left.
  switch (choice_) {
    case ChoiceList::kTools:
      tool_ = static_cast<int32_t>(lo_);
      used_ = 0;
      enter_invoke_body();
      break;
    case ChoiceList::kParams:
      param_ = static_cast<int32_t>(lo_);
      if (lo_ < 64) used_ |= uint64_t{1} << lo_;
      enter_value();
      break;
    case ChoiceList::kValues:
      enter_invoke_body();
      break;
  }
  return true;
}

bool ToolCallMatcher::feed_value_text(uint8_t byte) {
  if (close_ == kValueClose.size() - 1) {
    // `</parameter>` ended the value: its newline follows.
    if (byte != '\n') return false;
    enter_invoke_body();
    return true;
  }
  if (byte == static_cast<uint8_t>(kValueClose[close_])) {
    if (close_ == 0 && !utf8_.at_boundary()) return false;
    ++close_;
    return true;
  }
  // Not the tag after all (its bytes so far were ASCII text); '<' may start it again.
  close_ = byte == '<' ? 1 : 0;
  return utf8_.feed(byte);
}

bool ToolCallMatcher::feed_integer(uint8_t byte) {
  const bool digit = byte >= '0' && byte <= '9';
  if (byte == '<' && int_state_ >= 2) {
    start_literal(Literal::kValueClose, 1);
    return true;
  }
  switch (int_state_) {
    case 0:
    case 1:
      if (byte == '-' && int_state_ == 0) {
        int_state_ = 1;
        return true;
      }
      if (!digit) return false;
      int_state_ = byte == '0' ? 2 : 3;
      count_ = 1;
      return true;
    case 3:
      if (!digit || count_ >= kMaxIntegerDigits) return false;
      ++count_;
      return true;
    default:
      return false;
  }
}

bool ToolCallMatcher::feed_json(uint8_t byte) {
  if (byte == '<' && json_.may_end()) {
    start_literal(Literal::kValueClose, 1);
    return true;
  }
  // `</parameter>` inside a JSON string would end the value early for the parser.
  if (byte == static_cast<uint8_t>(kValueClose[close_])) {
    if (++close_ == kValueClose.size() - 1) return false;
  } else {
    close_ = byte == '<' ? 1 : 0;
  }
  return json_.feed(byte);
}

bool ToolCallMatcher::feed(uint8_t byte) {
  switch (phase_) {
    case Phase::kLead:
      if (is_ws(byte)) {
        if (count_ >= kMaxLeadingWhitespace) return false;
        ++count_;
        return true;
      }
      start_literal(Literal::kOpen, 0);
      return feed_literal(byte);
    case Phase::kLiteral:
      return feed_literal(byte);
    case Phase::kAlternatives:
      return feed_alternatives(byte);
    case Phase::kChoice:
      return feed_choice(byte);
    case Phase::kFreeName:
      if (byte == '"' && count_ > 0 && utf8_.at_boundary()) {
        start_literal(Literal::kFreeNameEnd, 1);
        return true;
      }
      if (!free_name_byte(byte) || count_ >= kMaxFreeNameBytes) return false;
      ++count_;
      return utf8_.feed(byte);
    case Phase::kValueText:
      return feed_value_text(byte);
    case Phase::kValueInteger:
      return feed_integer(byte);
    case Phase::kValueJson:
      return feed_json(byte);
    case Phase::kDone:
      return false;
  }
  return false;
}

}  // namespace m2fp4
