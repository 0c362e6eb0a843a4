// A byte-at-a-time matcher for a MiniMax-M2 tool-call block, as the chat template writes one
// (serving.md (c)) and the minimax_m2 tool parser (text/parsers/tool_call_parser.h) reads it:
//
//   <minimax:tool_call>\n
//   <invoke name="NAME">\n
//   <parameter name="P">VALUE</parameter>\n     (zero or more)
//   </invoke>\n                                 (more invokes only with parallel calls)
//   </minimax:tool_call>
//
// preceded by at most kMaxLeadingWhitespace bytes of whitespace and followed by nothing. What is
// enforced, from the request's tools:
// - NAME is one of the tools' names;
// - P is one of that tool's `parameters.properties` (any name without quotes or angle brackets
//   when it declares none), each at most once; `</invoke>` only once every `required` property
//   that `properties` declares has been given;
// - VALUE follows the property's schema where it is simple: `enum` of scalars -> exactly one of
//   the values (strings raw, others as JSON); a single type integer -> a JSON integer, number ->
//   a JSON number, boolean -> true/false, null -> null, object / array -> a JSON value of that
//   type (json_matcher.h); anything else -> any well-formed UTF-8 text without `</parameter>`.
// The layout is the template's exactly (one newline where it puts one), so the model cannot
// wander in whitespace. Tools or properties whose names cannot be written in the format (quotes,
// angle brackets, surrounding spaces) are left out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/constraints/json_matcher.h"
#include "text/constraints/utf8_checker.h"

namespace m2fp4 {

// What a request allows, built once per request and shared by its choices' matchers.
struct ToolCallGrammar {
  struct Value {
    enum class Kind : uint8_t { kText, kInteger, kJson, kChoice } kind = Kind::kText;
    uint8_t json_types = 0;            // kJson: the JsonTypeBits allowed
    std::vector<std::string> choices;  // kChoice: sorted, each + "</parameter>\n"
  };
  struct Tool {
    std::vector<std::string> param_heads;  // sorted: NAME + "\">"
    std::vector<Value> values;             // by param_heads index
    uint64_t required = 0;                 // bits of param_heads indices (the first 64)
    bool free_params = false;              // no properties declared: any parameter name
  };
  std::vector<std::string> tool_heads;  // sorted: NAME + "\">\n"
  std::vector<Tool> tools;              // by tool_heads index
  bool parallel = true;

  // From an OpenAI `tools` array (already narrowed to the named tool for a named tool_choice).
  // Throws m2fp4::Error when no tool name can be written in the format.
  static std::shared_ptr<const ToolCallGrammar> build(const nlohmann::json& tools,
                                                      bool parallel_tool_calls);
};

class ToolCallMatcher {
 public:
  static constexpr int kMaxLeadingWhitespace = 8;
  static constexpr int kMaxFreeNameBytes = 64;
  static constexpr int kMaxIntegerDigits = 19;

  explicit ToolCallMatcher(const ToolCallGrammar* grammar) : g_(grammar) {}

  // Appends one byte; false if no valid block starts with the bytes so far plus it (the state is
  // then unspecified: feed a copy when probing).
  bool feed(uint8_t byte);
  bool feed(std::string_view bytes) {
    for (char c : bytes) {
      if (!feed(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  // `</minimax:tool_call>` has been written: nothing may follow.
  bool complete() const { return phase_ == Phase::kDone; }
  bool may_end() const { return complete(); }
  // Same state: the same bytes are accepted from here on.
  bool operator==(const ToolCallMatcher&) const = default;

 private:
  enum class Phase : uint8_t {
    kLead,          // leading whitespace, then the block's opening
    kLiteral,       // a fixed string (literal_), then next_
    kAlternatives,  // one of two fixed strings (alt_ says which pair, alive_ which remain)
    kChoice,        // one of a sorted list of strings (choice_ says which list)
    kFreeName,      // a parameter name of a tool without properties
    kValueText,     // free text up to `</parameter>`
    kValueInteger,  // a JSON integer
    kValueJson,     // a JSON value (json_)
    kDone,
  };
  enum class Literal : uint8_t { kOpen, kFreeNameEnd, kValueClose };
  enum class Alt : uint8_t { kInvokeBody, kAfterInvoke };
  enum class ChoiceList : uint8_t { kTools, kParams, kValues };

  bool feed_literal(uint8_t byte);
  bool feed_alternatives(uint8_t byte);
  bool feed_choice(uint8_t byte);
  bool feed_value_text(uint8_t byte);
  bool feed_integer(uint8_t byte);
  bool feed_json(uint8_t byte);
  const std::vector<std::string>& choice_list() const;
  void enter_invoke_body();
  void enter_value();
  void start_literal(Literal literal, uint8_t pos);
  bool params_left() const;

  const ToolCallGrammar* g_;
  Phase phase_ = Phase::kLead;
  Literal literal_ = Literal::kOpen;
  Alt alt_ = Alt::kInvokeBody;
  ChoiceList choice_ = ChoiceList::kTools;
  uint8_t alive_ = 0;         // kAlternatives: bit 0 first, bit 1 second
  uint8_t count_ = 0;         // leading whitespace / name bytes / integer digits so far
  uint8_t close_ = 0;         // bytes of `</parameter>` matched inside a value
  uint8_t int_state_ = 0;     // kValueInteger: 0 start, 1 after '-', 2 after a leading 0, 3 digits
  uint16_t pos_ = 0;          // bytes of the current literal / alternative / choice matched
  uint32_t lo_ = 0, hi_ = 0;  // kChoice: the candidates [lo_, hi_) sharing the bytes so far
  int32_t tool_ = -1;         // the invoke's tool (tool_heads index)
  int32_t param_ = -1;        // the parameter's index (param_heads), -1 for a free name
  uint64_t used_ = 0;         // parameters of this invoke given so far (the first 64)
  Utf8Checker utf8_;
  JsonMatcher json_;
};

}  // namespace m2fp4
