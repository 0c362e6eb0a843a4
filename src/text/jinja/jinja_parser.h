// Jinja parser: tokens -> syntax tree, with jinja2's grammar and operator precedence
// (jinja2.parser.Parser). Supports the statements chat templates use: if/elif/else, for (with
// `if` filter, `else`, tuple targets), set (expression, block and namespace attribute), macro,
// call, filter, with, break/continue (transformers enables loopcontrols), raw, and
// transformers' {% generation %} block.
#pragma once

#include <memory>
#include <string_view>

#include "text/jinja/jinja_ast.h"
#include "text/jinja/jinja_lexer.h"

namespace m2fp4::jinja {

// Parses template source; syntax errors raise m2fp4::Error("template line N: ...").
std::shared_ptr<const Template> parse_template(std::string_view source,
                                               const LexerOptions& options = {});

}  // namespace m2fp4::jinja
