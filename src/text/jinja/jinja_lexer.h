// Jinja lexer: splits template source into text and tag tokens, applying whitespace control
// (`{%-`, `-%}`, `{%+`, `+%}`) and the environment options transformers uses for chat templates
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False) exactly as jinja2 3.1 does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace m2fp4::jinja {

struct Token {
  enum class Type {
    kData,  // template text, already stripped
    kVariableBegin,
    kVariableEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,  // value holds the unescaped string
    kInteger,
    kFloat,
    kOperator,  // value holds the operator text: "+", "//", "==", "(", ...
    kEof,
  };
  Type type = Type::kEof;
  std::string value;
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Tokenizes `source`; syntax errors raise m2fp4::Error("template line N: ...").
std::vector<Token> tokenize(std::string_view source, const LexerOptions& options = {});

// "template line N: message" as an m2fp4::Error.
[[noreturn]] void template_fail(int line, const std::string& message);

}  // namespace m2fp4::jinja
