// The built-in behaviour of template values: Python operators, attribute and item lookup (the
// sandboxed environment's getattr/getitem), methods of str/dict/list, and jinja2's filters and
// tests (with transformers' tojson). Implemented in jinja_ops.cc, jinja_methods.cc and
// jinja_filters.cc.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/jinja/jinja_value.h"

namespace m2fp4::jinja {

// ---- operators and lookup (jinja_ops.cc) ----

// a op b for op in + - * / // % **.
Value binary_op(const std::string& op, const Value& a, const Value& b);
// a op b for op in eq ne lt lteq gt gteq in notin.
bool compare_op(const std::string& op, const Value& a, const Value& b);
// -v / +v.
Value unary_op(char op, const Value& v);
// obj.name: Python attribute first (methods), then item, else undefined.
Value get_attribute(const Value& obj, const std::string& name);
// obj[key]: item first, then attribute for string keys, else undefined.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] (each part may be None/undefined for "absent").
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// "fmt" % args (printf-style: %s %r %d %i %f %x %%, flags, width, precision). `escape` is
// Markup's %: the text of %s and %r is HTML-escaped unless the argument is Markup.
std::string percent_format(const std::string& fmt, const Value& args, bool escape = false);

// int(d) of a finite float, or an error where Python's int would not fit 64 bits.
int64_t float_to_int64(double d);

// Binds Python-style call arguments to named parameters; the first `required` must be given.
// Extra positional or unknown keyword arguments raise TypeError-like errors.
std::vector<std::optional<Value>> bind_args(std::string_view function, const CallArgs& args,
                                            std::initializer_list<std::string_view> params,
                                            size_t required);

// ---- Python str helpers (jinja_methods.cc) ----

std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_title(const std::string& s);
std::string py_capitalize(const std::string& s);
// str.strip/lstrip/rstrip: chars = nullopt strips whitespace.
std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                     bool right);
std::string py_replace(const std::string& s, const std::string& old, const std::string& repl,
                       int64_t count);
std::vector<std::string> py_splitlines(const std::string& s);
// str.split() with no separator: runs of whitespace separate, no empty parts.
std::vector<std::string> py_split_whitespace(const std::string& s);
// markupsafe.escape's text: & < > " ' as &amp; &lt; &gt; &#34; &#39;.
std::string html_escape(std::string_view text);
// markupsafe.escape(v): Markup stays as it is, anything else becomes Markup(escaped str(v)).
Value escape_value(const Value& v);
// str.format(*args, **kwargs) (jinja_format.cc).
std::string py_format(const std::string& fmt, const CallArgs& args);
// A bound method of a str/dict/list value, or nullopt when the type has no such method.
std::optional<Value> builtin_method(const Value& obj, const std::string& name);

// ---- filters and tests (jinja_filters.cc) ----

Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject,
                   const CallArgs& args);
bool apply_test(Interpreter& interp, const std::string& name, const Value& subject,
                const CallArgs& args);  // jinja_tests.cc
// Whether a filter of that name exists (`'upper' is filter`).
bool has_filter(const std::string& name);

}  // namespace m2fp4::jinja
