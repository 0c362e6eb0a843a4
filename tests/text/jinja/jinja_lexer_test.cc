// Lexer behaviour: whitespace control as transformers configures jinja2 (trim_blocks,
// lstrip_blocks), raw blocks, literals. Every expectation is jinja2's output for the same template
// (see jinja_test_util.h).
#include <gtest/gtest.h>

#include "jinja_test_util.h"

namespace m2fp4::jinja {
namespace {

using testing::render;

TEST(JinjaLexer, TrimBlocksRemovesOneNewlineAfterBlockTags) {
  EXPECT_EQ(render("{% if true %}\nyes\n{% endif %}\nend"), "yes\nend");
  EXPECT_EQ(render("{% if true %}\n\nyes{% endif %}"), "\nyes");
  EXPECT_EQ(render("{# comment #}\nafter"), "after");
  EXPECT_EQ(render("{{ 'print' }}\nkeeps newline"), "print\nkeeps newline");
}

TEST(JinjaLexer, LstripBlocksRemovesIndentBeforeBlockAndCommentTags) {
  EXPECT_EQ(render("  {% if true %}\n    yes\n  {% endif %}\nend\n"), "    yes\nend");
  EXPECT_EQ(render("x\n\t {% if true %}y{% endif %}"), "x\ny");
  EXPECT_EQ(render("text  {% if true %}y{% endif %}"), "text  y");
  EXPECT_EQ(render("  {# comment #}\nafter"), "after");
  EXPECT_EQ(render("  {{ 'variables are not stripped' }}"), "  variables are not stripped");
  EXPECT_EQ(render("\u00a0\u3000{% if true %}unicode spaces count{% endif %}"),
            "unicode spaces count");
}

TEST(JinjaLexer, MinusAndPlusSigns) {
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a \n {{- 'x' -}} \n b"), "axb");
  EXPECT_EQ(render("line1\n  {#- comment -#}\n\nline2"), "line1line2");
  EXPECT_EQ(render("  {%+ if true %}kept indent{% endif %}"), "  kept indent");
  EXPECT_EQ(render("{% if true +%}\nkept newline{% endif %}"), "\nkept newline");
  EXPECT_EQ(render("{%- if true -%}\n\n   a   \n\n{%- endif -%}\n\n"), "a");
}

TEST(JinjaLexer, TrailingNewlineAndLineEndings) {
  EXPECT_EQ(render("x\n"), "x");
  EXPECT_EQ(render("x\n\n"), "x\n");
  EXPECT_EQ(render("a\r\nb\rc\r\n"), "a\nb\nc");
  EXPECT_EQ(render("\n\n{{ 'a' }}"), "\n\na");
}

TEST(JinjaLexer, RawBlocks) {
  EXPECT_EQ(render("{% raw %}{{ not parsed }} {% if %}{% endraw %}"), "{{ not parsed }} {% if %}");
  EXPECT_EQ(render("  {%- raw -%}  {{ x }}  {%- endraw -%}  \nafter"), "{{ x }}after");
  EXPECT_EQ(render("{% raw %}\nbody\n{% endraw %}\nafter"), "\nbody\nafter");
}

TEST(JinjaLexer, Literals) {
  EXPECT_EQ(render("{{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }} {{ 'a\\\\b' }} {{ 'tab\\there' }} {{ "
                   "'a\\qb' }}"),
            "it's say \"hi\" a\\b tab\there a\\qb");
  EXPECT_EQ(render("{{ '\\u00e9\\x41\\101\\U0001F600' }} {{ 'adjacent' ' strings' }}"),
            "éAA😀 adjacent strings");
  EXPECT_EQ(
      render("{{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 1_000 }} {{ 1.5e3 }} {{ 1E2 }} {{ 2.50 }}"),
      "31 5 15 1000 1500.0 100.0 2.5");
  EXPECT_EQ(render("{{ [1, 2,] }} {{ {'a': 1,} }} {{ (1,) }} {{ () }} {{ {'a': {'b': 1}}}}"),
            "[1, 2] {'a': 1} (1,) () {'a': {'b': 1}}");
  EXPECT_EQ(render("{{ true }} {{ True }} {{ false }} {{ none }} {{ None }}"),
            "True True False None None");
}

}  // namespace
}  // namespace m2fp4::jinja
