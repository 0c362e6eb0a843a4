// Statements, scoping, macros, undefined values and operators of the Jinja evaluator.
// Every expectation is jinja2's output for the same template (see jinja_test_util.h).
#include <gtest/gtest.h>

#include "jinja_test_util.h"

namespace m2fp4::jinja {
namespace {

using testing::render;

TEST(JinjaEval, IfElifElse) {
  EXPECT_EQ(render("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}"), "c");
  EXPECT_EQ(render("{% if none %}a{% elif false %}b{% else %}d{% endif %}{% if 0 %}x{% endif %}"),
            "d");
  EXPECT_EQ(render("{{ 'a' if 1 > 2 else 'b' }} {{ 'y' if true }}[{{ 'n' if false }}] {{ 1 if 0 "
                   "else 2 if 0 else 3 }}"),
            "b y[] 3");
}

TEST(JinjaEval, ForLoopVariables) {
  EXPECT_EQ(
      render("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
             "loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
      "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(
      render(
          "{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{% endfor %}"),
      "<1>2|1<2>3|2<3>|");
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }}{% if loop.changed(x > "
                   "1) %}*{% endif %} {% endfor %}"),
            "odd* even* odd ");
  EXPECT_EQ(render("{% for row in [[1, 2], [3]] %}{% set outer = loop %}{% for x in row %}{{ "
                   "outer.index }}.{{ loop.index }}={{ x }} {% endfor %}{% endfor %}"),
            "1.1=1 1.2=2 2.1=3 ");
}

TEST(JinjaEval, ForFilterElseAndUnpacking) {
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}:{{ loop.index }}/{{ "
                   "loop.length }} {% endfor %}"),
            "2:1/2 4:2/2 ");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %} {% for x in [1] if x > 5 %}x{% "
                   "else %}all filtered{% endfor %}"),
            "empty all filtered");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %} {% for "
                   "k, v in {'z': 0}|items %}{{ k }}{{ v }}{% endfor %}"),
            "b=1;a=2; z0");
  EXPECT_EQ(render("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %} {% for c in 'héllo' %}[{{ c "
                   "}}]{% endfor %} {% for x in undefined_name %}x{% else %}undefined iterates as "
                   "empty{% endfor %}"),
            "ba [h][é][l][l][o] undefined iterates as empty");
  EXPECT_EQ(render("{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }} {% endfor %}"), "3 7 ");
}

TEST(JinjaEval, BreakAndContinue) {
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 5 %}{% break %}{% endif %}{% if i is odd "
                   "%}{% continue %}{% endif %}{{ i }}{% endfor %}"),
            "024");
}

TEST(JinjaEval, ScopingFollowsJinja2) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = i * 10 %}{{ x }};{% "
                   "endfor %}{{ x }}"),
            "10;110;120;1");
  EXPECT_EQ(
      render(
          "{% for i in range(3) %}{% if i == 1 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}"),
      "[][5][]");
  EXPECT_EQ(
      render("{% if true %}{% set leaked = 'if blocks share the scope' %}{% endif %}{{ leaked }}"),
      "if blocks share the scope");
  EXPECT_EQ(render("{% for i in [1] %}{% set inner = 1 %}{% endfor %}{{ inner is defined }}"),
            "False");
  EXPECT_EQ(render("{% set content = 'outer' %}{% for p in ['a', 'b'] %}{% set content = p %}{% "
                   "endfor %}{{ content }}"),
            "outer");
  EXPECT_EQ(render("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}"),
            "2");
  EXPECT_EQ(render("{% macro m() %}{% set y = 5 %}{{ y }}{% endmacro %}{{ m() }}[{{ y }}]"), "5[]");
  EXPECT_EQ(render("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"), "3[]");
  EXPECT_EQ(render("{% set x %}captured {{ 1 + 1 }}{% endset %}<{{ x }}>{% set y | upper %}up{% "
                   "endset %}{{ y }}"),
            "<captured 2>UP");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
}

TEST(JinjaEval, NamespaceCarriesStateOutOfLoops) {
  EXPECT_EQ(render("{% set ns = namespace(total=0, seen=[]) %}{% for i in range(4) %}{% set "
                   "ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}{{ "
                   "ns.total }} {{ ns.seen }} {{ ns.missing is defined }}"),
            "6 [0, 1, 2, 3] False");
  EXPECT_EQ(render("{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }}"),
            "121");
}

TEST(JinjaEval, MacrosAndCall) {
  EXPECT_EQ(render("{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name "
                   "}}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', 'Hi') }} {{ "
                   "greet('Cy', punct='?') }} [{{ greet() }}]"),
            "Hello, Ann! Hi, Bo! Hello, Cy? [Hello, !]");
  EXPECT_EQ(render("{% macro m(a) %}{{ a }}|{{ varargs }}|{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, "
                   "k='v') }}"),
            "1|(2, 3)|{'k': 'v'}");
  EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% "
                   "call wrap('b') %}bold{% endcall %}"),
            "<b>bold</b>");
  EXPECT_EQ(render("{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% "
                   "endmacro %}{% call(x) each([1, 2]) %}({{ x }}){% endcall %}"),
            "(1)(2)");
  EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif "
                   "%}{% endmacro %}{{ fact(5) }}"),
            "120");
  EXPECT_EQ(render("{% macro m() %}{% if ident is not defined %}{% set ident = 'default id' %}{% "
                   "endif %}{{ ident }}{% endmacro %}{{ m() }}"),
            "default id");
  EXPECT_EQ(render("{% macro m() %}{% if ident is not defined %}{% set ident = 'default id' %}{% "
                   "endif %}{{ ident }}{% endmacro %}{{ m() }}",
                   "{\"ident\": \"given id\"}"),
            "given id");
}

TEST(JinjaEval, FilterBlockAndGeneration) {
  EXPECT_EQ(render("{% filter upper %}hello {{ 'world' }}{% endfilter %}"), "HELLO WORLD");
  EXPECT_EQ(render("{% generation %}assistant text {{ 1 }}{% endgeneration %}"),
            "assistant text 1");
}

TEST(JinjaEval, UndefinedBehavesLikeJinja2Default) {
  EXPECT_EQ(render("[{{ missing }}] [{{ missing|length }}] [{{ missing|list }}] [{{ missing ~ 'x' "
                   "}}] [{{ missing|default('d') }}] [{{ missing is defined }}] [{{ missing == "
                   "missing }}] [{{ not missing }}]"),
            "[] [0] [[]] [x] [d] [False] [True] [True]");
  EXPECT_EQ(render("[{{ d.absent }}] [{{ d['absent'] }}] [{{ d.absent is defined }}] [{{ "
                   "d.absent|default('dflt') }}]",
                   "{\"d\": {\"present\": 1}}"),
            "[] [] [False] [dflt]");
  EXPECT_EQ(render("[{{ [missing] }}] [{{ missing|string }}] [{{ missing|trim }}] [{{ missing|join "
                   "}}] [{{ missing|first }}] [{{ missing|items|list }}]"),
            "[[Undefined]] [] [] [] [] [[]]");
}

TEST(JinjaEval, ExpressionsAndOperators) {
  EXPECT_EQ(render("{{ 7 + 2 }} {{ 7 - 9 }} {{ 7 * 2.0 }} {{ 7 / 2 }} {{ 8 / 4 }} {{ 7 // 2 }} {{ "
                   "-7 // 2 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }}"),
            "9 -2 14.0 3.5 2.0 3 -4 2 1.5 1024 0.5");
  EXPECT_EQ(render("{{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 + 2 * 3 }} {{ (1 + 2) ~ "
                   "3 }} {{ -3|abs }} {{ 'ab' * 2 }} {{ [0] * 3 }} {{ [1] + [2] }}"),
            "4 64 5 7 33 3 abab [0, 0, 0] [1, 2]");
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' "
                   "}} {{ [1, 2] < [1, 3] }} {{ 'B' < 'a' }}"),
            "True False True True True True True");
  EXPECT_EQ(render("{{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 0} }} {{ 3 not in (1, "
                   "2) }} {{ 'x' in missing }}"),
            "True True True True False");
  EXPECT_EQ(render("{{ 0 and 1 }} {{ 2 and 3 }} {{ 0 or '' }} {{ none or 'fallback' }} {{ not 0 }} "
                   "{{ not 1 == 2 }}"),
            "0 3  fallback True True");
  // jinja2 raises TypeError: unsupported operand type(s) for +: 'int' and 'str'
  EXPECT_TEMPLATE_ERROR("{{ 1 + 2 ~ 3 }}");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true ~ [1.5] ~ missing }}"), "a1NoneTrue[1.5]");
  EXPECT_EQ(render("{{ '%s is %d years, %.2f%%' % ('Ann', 30, 99.5) }} {{ '%(k)s=%(v)r' % {'k': "
                   "'key', 'v': 'val'} }} {{ '%5s|%-5s|' % ('r', 'l') }}"),
            "Ann is 30 years, 99.50% key='val'     r|l    |");
  EXPECT_EQ(render("{{ range(4)|list }} {{ range(2, 8, 3)|list }} {{ range(5, 0, -2)|list }} {{ "
                   "dict(a=1, b=[2]) }}"),
            "[0, 1, 2, 3] [2, 5] [5, 3, 1] {'a': 1, 'b': [2]}");
}

TEST(JinjaEval, AttributeAndItemLookup) {
  EXPECT_EQ(render("{{ m.role }} {{ m['role'] }} {{ m.tool_calls[0].function.name }} {{ "
                   "m.tool_calls[-1]['function']['arguments'].city }}",
                   "{\"m\": {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": "
                   "\"f\", \"arguments\": {\"city\": \"Oslo\"}}}]}}"),
            "assistant assistant f Oslo");
  EXPECT_EQ(render("{{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') "
                   "}} {{ d.get('zz') }} {{ d.get('zz', 0) }}",
                   "{\"d\": {\"a\": 1, \"b\": 2}}"),
            "[('a', 1), ('b', 2)] ['a', 'b'] [1, 2] 1 None 0");
  EXPECT_EQ(render("{{ [10, 20, 30][1] }} {{ [10, 20, 30][-1] }} [{{ [10][5] }}] {{ 'abc'[0] }} {{ "
                   "[10, 20].1 }}"),
            "20 30 [] a 20");
}

TEST(JinjaEval, Slicing) {
  EXPECT_EQ(render("{{ [1, 2, 3, 4][1:3] }} {{ [1, 2, 3][::-1] }} {{ [1, 2, 3][-2:] }} {{ [1, 2, "
                   "3, 4, 5][::2] }} {{ (1, 2, 3)[1:] }} {{ [1, 2][5:] }}"),
            "[2, 3] [3, 2, 1] [2, 3] [1, 3, 5] (2, 3) []");
  EXPECT_EQ(render("{{ 'abcdef'[1:4] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[5:1:-2] }} {{ 'héllo "
                   "wörld'[1:8] }} {{ '日本語'[-1] }}"),
            "bcd fedcba fd éllo wö 語");
}

}  // namespace
}  // namespace m2fp4::jinja
