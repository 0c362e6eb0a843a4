// Printing (Python repr), filters, tests, str methods and globals.
// Every expectation is jinja2's output for the same template (see jinja_test_util.h).
#include <gtest/gtest.h>

#include "jinja_test_util.h"

namespace m2fp4::jinja {
namespace {

using testing::render;

TEST(JinjaPrint, PythonReprOfValues) {
  EXPECT_EQ(render("{{ 1.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1.5e-7 }} {{ 0.1 "
                   "+ 0.2 }} {{ 1 / 3 }} {{ -0.0 }} {{ 1e400 }}"),
            "1.0 1e+16 1000000000000000.0 0.0001 1e-05 1.5e-07 0.30000000000000004 "
            "0.3333333333333333 -0.0 inf");
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }} {{ (1,) }} {{ (1, 'b') }} {{ "
                   "{1: 'int key', none: 'n'} }}"),
            "[1, 'a', None, True, 1.5, [2], {'k': 'v'}] (1,) (1, 'b') {1: 'int key', None: 'n'}");
  EXPECT_EQ(render("{{ [\"it's\"] }} {{ ['say \"hi\"'] }} {{ ['both \\' and \"'] }} {{ "
                   "['line\\nbreak\\ttab\\\\'] }} {{ ['é', '日本', '\\x01', '\\u200b'] }}"),
            "[\"it's\"] ['say \"hi\"'] ['both \\' and \"'] ['line\\nbreak\\ttab\\\\'] ['é', "
            "'日本', '\\x01', '\\u200b']");
  EXPECT_EQ(render("{{ m }} {{ m.content }}",
                   "{\"m\": {\"role\": \"user\", \"content\": \"hé\", \"n\": null, \"f\": 2.0, "
                   "\"b\": false}}"),
            "{'role': 'user', 'content': 'hé', 'n': None, 'f': 2.0, 'b': False} hé");
}

TEST(JinjaFilters, ToJsonMatchesTransformers) {
  EXPECT_EQ(render("{{ t|tojson }}",
                   "{\"t\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
                   "\"properties\": {\"city\": {\"type\": \"string\", \"description\": \"Ville – "
                   "\\\"quoted\\\" \\\\ é\\n\"}, \"days\": {\"type\": \"integer\", \"default\": "
                   "1.0}}, \"required\": [\"city\"]}, \"strict\": true, \"extra\": null}}"),
            "{\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": "
            "{\"city\": {\"type\": \"string\", \"description\": \"Ville – \\\"quoted\\\" \\\\ "
            "é\\n\"}, \"days\": {\"type\": \"integer\", \"default\": 1.0}}, \"required\": "
            "[\"city\"]}, \"strict\": true, \"extra\": null}");
  EXPECT_EQ(
      render(
          "{{ [1, [2, 3], {}]|tojson(indent=2) }}|{{ {'b': 1, 'a': [] }|tojson(sort_keys=true) "
          "}}|{{ 'ü😀'|tojson(ensure_ascii=true) }}|{{ {'a': 1}|tojson(separators=(',', ':')) }}"),
      "[\n  1,\n  [\n    2,\n    3\n  ],\n  {}\n]|{\"a\": [], \"b\": "
      "1}|\"\\u00fc\\ud83d\\ude00\"|{\"a\":1}");
  EXPECT_EQ(render("{{ '\\x00\\x1f\\x7f\\u2028'|tojson }} {{ 1e20|tojson }} {{ 1.5e-7|tojson }} {{ "
                   "12345678901234|tojson }} {{ {1: 'x', true: 'y'}|tojson }}"),
            "\"\\u0000\\u001f\x7f"
            "\u2028\" 1e+20 1.5e-07 12345678901234 {\"1\": \"y\"}");
  EXPECT_EQ(render("{{ 'x'|tojson|string }} {{ none|tojson }} {{ (1, 2)|tojson }} {{ {'a': "
                   "1}|tojson(indent='\\t') }}"),
            "\"x\" null [1, 2] {\n\t\"a\": 1\n}");
}

TEST(JinjaFilters, StringFilters) {
  EXPECT_EQ(render("{{ 'abc'|upper }} {{ 'ÀBC'|lower }} {{ 'hello wORLD-foo(bar'|title }} {{ "
                   "'hELLO wORLD'|capitalize }} [{{ '  pad  '|trim }}] [{{ 'xxaxx'|trim('x') }}] "
                   "{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'|replace('a', 'b', 2) }}"),
            "ABC àbc Hello World-Foo(Bar Hello world [pad] [a] a+b+c bba");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ "
                   "'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x'|indent('>> ', first=true) }}"),
            "a\n    b\n\n    c|  a\n  b|a\n  \n  b|>> x");
  EXPECT_EQ(render("{{ 'a<b>&\"\\''|e }} {{ 'x'|safe }} {{ 42|string }} {{ [1]|string }} {{ "
                   "'abc'|center(7) }}| {{ 'one two  three'|wordcount }} {{ 'abc'|reverse }}"),
            "a&lt;b&gt;&amp;&#34;&#39; x 42 [1]   abc  | 3 cba");
  EXPECT_EQ(render("{{ '%s-%s'|format('a', 1) }} {{ 'straße'|upper }} {{ 'ΑΣ'|lower }}"),
            "a-1 STRASSE ας");
}

TEST(JinjaFilters, SequenceFilters) {
  EXPECT_EQ(render("{{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', "
                   "'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ [{'n': 2}, "
                   "{'n': 1}]|sort(attribute='n') }}"),
            "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] ['A', 'b', 'c'] [{'n': 1}, {'n': 2}]");
  EXPECT_EQ(render("{{ [1, 2, 2, 3, 1]|unique|list }} {{ ['a', 'A', 'b']|unique|list }} {{ [1, 2, "
                   "3]|join(', ') }} {{ [{'n': 'x'}, {'n': 'y'}]|join('+', attribute='n') }} {{ "
                   "[1, 2, 3]|reverse|list }}"),
            "[1, 2, 3] ['a', 'b'] 1, 2, 3 x+y [3, 2, 1]");
  EXPECT_EQ(render("{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ [1, 2, 3]|length }} {{ {'a': "
                   "1}|count }} {{ 'héllo'|length }} [{{ []|first }}] {{ [1, 2, 3]|sum }} {{ [1, "
                   "5, 3]|max }} {{ [4, 2, 3]|min }} {{ 'ab'|list }} {{ {'k': 1}|list }}"),
            "1 3 3 1 5 [] 6 5 2 ['a', 'b'] ['k']");
  EXPECT_EQ(render("{{ [{'a': 1, 'b': 2}, {'a': 3}]|map(attribute='a')|list }} {{ [{}, {'a': "
                   "1}]|map(attribute='a', default='-')|list }} {{ ['x', 'y']|map('upper')|join }} "
                   "{{ [1.6, 2.4]|map('round')|list }}"),
            "[1, 3] ['-', 1] XY [2.0, 2.0]");
  EXPECT_EQ(
      render(
          "{{ [{'a': 1}, {'b': 2}]|selectattr('a')|list }} {{ [{'a': 1}, {'a': 2}]|selectattr('a', "
          "'equalto', 2)|list }} {{ [{'a': 1}, {}]|rejectattr('a', 'defined')|list }} {{ [1, 2, 3, "
          "4]|select('even')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ [0, 1, '', "
          "'a']|select|list }} {{ [1, 5, 9]|select('gt', 4)|list }}"),
      "[{'a': 1}] [{'a': 2}] [{}] [2, 4] [2, 4] [1, 'a'] [5, 9]");
  EXPECT_EQ(render("{{ {'b': 2, 'a': 1}|dictsort }} {{ {'b': 2, 'a': 1}|items|list }} {{ [1, 2, "
                   "3]|batch(2)|list }}"),
            "[('a', 1), ('b', 2)] [('b', 2), ('a', 1)] [[1, 2], [3]]");
  EXPECT_EQ(render("{% set g = [1, 2]|map('string') %}{{ g|join }}|{{ g|join }}"), "12|");
}

TEST(JinjaFilters, NumberAndDefaultFilters) {
  EXPECT_EQ(render("{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ "
                   "'0x1A'|int(base=16) }} {{ '3.5'|float }} {{ 'x'|float }} {{ 3|float }}"),
            "42 4 0 7 3 26 3.5 0.0 3.0");
  EXPECT_EQ(
      render("{{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) "
             "}} {{ 2.1|round(method='ceil') }} {{ 2.9|round(method='floor') }} {{ 5|round }}"),
      "3 2.57 2.0 4.0 2.67 3.0 2.0 5");
  EXPECT_EQ(render("{{ 'x'|default('d') }} {{ missing|default('d') }} {{ ''|default('d') }} [{{ "
                   "''|default('d', true) }}] {{ none|d('n') }} {{ none|d('n', boolean=true) }}"),
            "x d  [d] None n");
}

TEST(JinjaTests, TypeAndValueTests) {
  EXPECT_EQ(render("{{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer "
                   "}} {{ 1.0 is float }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is mapping "
                   "}} {{ [] is iterable }} {{ 'a' is sequence }} {{ 1 is iterable }}"),
            "True True True False True True True False True True False");
  EXPECT_EQ(render("{{ none is none }} {{ true is boolean }} {{ 1 is boolean }} {{ 1 is true }} {{ "
                   "true is true }} {{ false is false }} {{ 0 is false }} {{ missing is undefined "
                   "}} {{ 'x' is defined }}"),
            "True True False False True True False True True");
  EXPECT_EQ(render("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) "
                   "}} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 2 is in [1, 2] }}"),
            "True True True False True True True");
  EXPECT_EQ(render("{{ 1 is eq 1 }} {{ 1 is equalto 2 }} {{ 1 is ne 2 }} {{ 2 is gt 1 }} {{ 2 is "
                   "ge 2 }} {{ 1 is lt 2 }} {{ 1 is le 0 }} {{ 'upper' is filter }} {{ 'odd' is "
                   "test }} {{ 'a' is not string }}"),
            "True False True True True True False True True False");
}

TEST(JinjaMethods, StrMethods) {
  EXPECT_EQ(
      render("{{ 'Hello World'.upper() }} {{ 'Hello'.lower() }} {{ 'a b  c '.split() }} {{ "
             "'a,b,,c'.split(',') }} {{ 'a b c'.split(None, 1) }} {{ 'a/b/c'.rsplit('/', 1) }}"),
      "HELLO WORLD hello ['a', 'b', 'c'] ['a', 'b', '', 'c'] ['a', 'b c'] ['a/b', 'c']");
  EXPECT_EQ(render("[{{ '  x  '.strip() }}] [{{ 'xxaxx'.strip('x') }}] [{{ '\\n a'.lstrip() }}] "
                   "[{{ 'ab\\n\\n'.rstrip('\\n') }}] {{ 'abc'.startswith('ab') }} {{ "
                   "'abc'.endswith(('x', 'c')) }} {{ 'abc'.startswith('b', 1) }}"),
            "[x] [a] [a] [ab] True True True");
  EXPECT_EQ(render("{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ "
                   "'hello'.count('l') }} {{ 'hello'.replace('l', 'L') }} {{ 'hello'.replace('l', "
                   "'L', 1) }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }}"),
            "2 3 -1 2 heLLo heLlo Hello World Hello");
  EXPECT_EQ(render("{{ '-'.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ '{} and "
                   "{}'.format(1, 'two') }} {{ '{name}!'.format(name='x') }} {{ "
                   "'a=b=c'.partition('=') }} {{ 'pre_x'.removeprefix('pre_') }}"),
            "a-b ['a', 'b', 'c'] 1 and two x! ('a', '=', 'b=c') x");
}

TEST(JinjaGlobals, TransformersGlobals) {
  EXPECT_EQ(render("{{ strftime_now('%Y')|length }} {{ namespace(a=1).a }} {{ dict(x=1) }} {{ "
                   "range(3)|list }}"),
            "4 1 {'x': 1} [0, 1, 2]");
}

}  // namespace
}  // namespace m2fp4::jinja
