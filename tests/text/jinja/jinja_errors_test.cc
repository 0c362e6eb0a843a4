// Template errors name the line and the problem (m2fp4::Error "template line N: ...").
// jinja2 (as transformers configures it) fails on each of these templates too, with the same
// message and line (where jinja2 reports a line for a runtime error at all).
#include <gtest/gtest.h>

#include "jinja_test_util.h"

namespace m2fp4::jinja {
namespace {

using testing::render_error;

TEST(JinjaErrors, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(render_error("line 1\nline 2\n{% if %}{% endif %}"),
            "template line 3: Expected an expression, got 'end of statement block'");
  EXPECT_EQ(render_error("a\n{% for x in y %}\nbody"),
            "template line 3: Unexpected end of template. Jinja was looking for the following "
            "tags: 'endfor' or 'else'. The innermost block that needs to be closed is 'for'.");
  EXPECT_EQ(render_error("{% if true %}\n{% endfor %}"),
            "template line 2: Encountered unknown tag 'endfor'. Jinja was looking for the "
            "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be "
            "closed is 'if'.");
  EXPECT_EQ(render_error("\n\n{{ 1 +* 2 }}"), "template line 3: unexpected '*'");
  EXPECT_EQ(render_error("{{ 'unterminated }}"), "template line 1: unexpected char \"'\" at 3");
  EXPECT_EQ(render_error("x\n{# no end"), "template line 2: Missing end of comment tag");
  EXPECT_EQ(render_error("{% do x %}"), "template line 1: Encountered unknown tag 'do'.");
  EXPECT_EQ(render_error("{% break %}"), "template line 1: 'break' outside of a for loop");
}

TEST(JinjaErrors, RuntimeErrorsNameTheLine) {
  EXPECT_EQ(render_error("ok\n\n\n{{ raise_exception('Conversation roles must alternate') }}"),
            "template line 4: Conversation roles must alternate");
  EXPECT_EQ(render_error("{{ missing.attr }}"), "template line 1: 'missing' is undefined");
  EXPECT_EQ(render_error("\n{{ m.a.b }}", R"({"m": {}})"),
            "template line 2: 'dict object' has no attribute 'a'");
  EXPECT_EQ(render_error("{{ 'a' + 1 }}"),
            "template line 1: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(render_error("{% set x = 1 %}\n{% set x.y = 2 %}"),
            "template line 2: cannot assign attribute on non-namespace object");
  EXPECT_EQ(render_error("{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
            "template line 1: too many values to unpack (expected 2)");
  EXPECT_EQ(render_error("{% for x in 5 %}{% endfor %}"),
            "template line 1: 'int' object is not iterable");
  EXPECT_EQ(render_error("{{ [1]|nofilter }}"), "template line 1: No filter named 'nofilter'.");
  EXPECT_EQ(render_error("{% set l = [] %}{{ l.append(1) }}"),
            "template line 1: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(render_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
            "template line 1: macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(render_error("{% set ns = namespace() %}{% set ns._x = 1 %}"),
            "template line 1: Chat templates cannot store underscore-prefixed attributes on a "
            "namespace, but got '_x'. Please rename the attribute.");
}

TEST(JinjaErrors, ErrorInsideMacroNamesTheMacroLine) {
  EXPECT_EQ(render_error("{% macro m() %}\n{{ 1 // 0 }}\n{% endmacro %}\n\n{{ m() }}"),
            "template line 2: integer division or modulo by zero");
}

}  // namespace
}  // namespace m2fp4::jinja
