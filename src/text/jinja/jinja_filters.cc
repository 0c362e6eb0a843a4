// jinja2's built-in filters (jinja2/filters.py; the tests are in jinja_tests.cc), with
// transformers' tojson (json.dumps with ensure_ascii=False, no HTML escaping). Filters that return
// iterators in jinja2 (map, select*, reject*, unique, items, reverse of a sequence) return one-shot
// generators here too, so they behave the same when printed, iterated twice or measured.
#include <unicode/uchar.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "text/jinja/jinja_builtins.h"
#include "text/jinja/jinja_eval.h"

namespace m2fp4::jinja {
namespace {

using Filter = Value (*)(Interpreter&, const Value&, const CallArgs&);

[[noreturn]] void fail_undefined(const Value& v) {
  eval_fail(v.undefined_hint());
}

bool opt_bool(const std::optional<Value>& v, bool fallback) {
  return v ? truthy(*v) : fallback;
}

// An integer argument (bool counts), as Python's operator.index: anything else is a TypeError.
int64_t int_arg(const Value& v, const char* what) {
  if (v.is_undefined()) eval_fail(v.undefined_hint());
  if (!v.is_int()) {
    eval_fail(what, ": '", type_name(v), "' object cannot be interpreted as an integer");
  }
  return v.as_int();
}

// A run of `width` spaces (padding, indentation), within the render's size limit.
std::string spaces(int64_t width, const char* what) {
  if (width <= 0) return "";
  check_size(uint64_t(width), what);
  return std::string(size_t(width), ' ');
}

Value lower_if_string(const Value& v) {
  return v.is_string() ? Value::string(py_lower(v.as_string())) : v;
}

// Filters that call a str method on soft_str(value) return Markup for Markup.
Value same_string_kind(const Value& subject, std::string text) {
  return subject.is_markup() ? Value::markup(std::move(text)) : Value::string(std::move(text));
}

// make_attrgetter: "a.b.0" looks up a, then b, then index 0 (environment.getitem each step).
Value attribute_path(const Value& item, const Value& attribute, const Value* default_value) {
  if (attribute.is_none() || attribute.is_undefined()) return item;
  std::vector<Value> parts;
  if (attribute.is_int()) {
    parts.push_back(attribute);
  } else {
    const std::string path = to_str(attribute);
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
      const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
      parts.push_back(digits ? Value::integer(std::stoll(part)) : Value::string(part));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
  }
  Value v = item;
  for (const Value& part : parts) {
    v = get_item(v, part);
    if (default_value && v.is_undefined()) v = *default_value;
  }
  return v;
}

// select/reject/selectattr/rejectattr.
Value select_or_reject(Interpreter& interp, const Value& seq, const CallArgs& args,
                       bool lookup_attr, bool keep_when) {
  // jinja2 filters nothing (and checks no arguments) when the sequence is falsy: None,
  // undefined, empty.
  if (!truthy(seq)) return Value::generator({});
  size_t off = 0;
  Value attr;
  if (lookup_attr) {
    if (args.positional.empty()) eval_fail("Missing parameter for attribute name");
    attr = args.positional[0];
    off = 1;
  }
  std::optional<std::string> test;
  CallArgs test_args;
  if (args.positional.size() > off) {
    test = to_str(args.positional[off]);
    test_args.positional.assign(args.positional.begin() + long(off) + 1, args.positional.end());
    test_args.keyword = args.keyword;
  }
  std::vector<Value> out;
  for (const Value& item : iterate(seq)) {
    const Value subject = lookup_attr ? attribute_path(item, attr, nullptr) : item;
    const bool ok = test ? apply_test(interp, *test, subject, test_args) : truthy(subject);
    if (ok == keep_when) out.push_back(item);
  }
  return Value::generator(std::move(out));
}

Value filter_map(Interpreter& interp, const Value& seq, const CallArgs& args) {
  if (!truthy(seq)) return Value::generator({});  // as select: a falsy sequence maps to nothing
  std::vector<Value> out;
  const Value* attribute = nullptr;
  const Value* default_value = nullptr;
  for (const auto& [k, v] : args.keyword) {
    if (k == "attribute") attribute = &v;
    if (k == "default") default_value = &v;
  }
  if (args.positional.empty() && attribute) {
    for (const auto& [k, v] : args.keyword) {
      if (k != "attribute" && k != "default") eval_fail("Unexpected keyword argument '", k, "'");
    }
    const Value* dflt = default_value && !default_value->is_none() ? default_value : nullptr;
    for (const Value& item : iterate(seq)) out.push_back(attribute_path(item, *attribute, dflt));
    return Value::generator(std::move(out));
  }
  if (args.positional.empty()) eval_fail("map requires a filter argument");
  const std::string name = to_str(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : iterate(seq)) out.push_back(apply_filter(interp, name, item, rest));
  return Value::generator(std::move(out));
}

Value filter_tojson(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b =
      bind_args("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}, 0);
  JsonOptions o;
  o.ensure_ascii = opt_bool(b[0], false);
  if (b[1] && !b[1]->is_none()) {
    if (b[1]->is_string()) {
      o.indent = b[1]->as_string();
    } else if (b[1]->is_int()) {
      o.indent = spaces(b[1]->as_int(), "tojson's indent");
    } else {
      eval_fail("tojson indent must be an int or a string");
    }
  }
  if (b[2] && !b[2]->is_none()) {
    const std::vector<Value> seps = iterate(*b[2]);
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string()) {
      eval_fail("tojson separators must be a pair of strings");
    }
    o.separators = std::make_pair(seps[0].as_string(), seps[1].as_string());
  }
  o.sort_keys = opt_bool(b[3], false);
  return Value::string(to_json(v, o));
}

Value filter_default(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("default", args, {"default_value", "boolean"}, 0);
  const bool use_default = v.is_undefined() || (opt_bool(b[1], false) && !truthy(v));
  if (!use_default) return v;
  return b[0] ? *b[0] : Value::string("");
}

Value filter_length(Interpreter&, const Value& v, const CallArgs& args) {
  bind_args("length", args, {}, 0);
  return Value::integer(length(v));
}

Value filter_string(Interpreter&, const Value& v, const CallArgs&) {
  return Value::string(to_str(v));
}

Value filter_list(Interpreter&, const Value& v, const CallArgs&) {
  return Value::list(iterate(v));
}

Value filter_first(Interpreter&, const Value& v, const CallArgs&) {
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value filter_last(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_generator()) eval_fail("'generator' object is not reversible");
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value filter_join(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("join", args, {"d", "attribute"}, 0);
  const std::string sep = b[0] ? to_str(*b[0]) : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    const std::string text = to_str(b[1] ? attribute_path(item, *b[1], nullptr) : item);
    check_size(uint64_t(out.size()) + sep.size() + text.size(), "join's result");
    if (!first) out += sep;
    first = false;
    out += text;
  }
  return Value::string(std::move(out));
}

Value filter_trim(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("trim", args, {"chars"}, 0);
  std::optional<std::string> chars;
  if (b[0] && !b[0]->is_none()) chars = to_str(*b[0]);
  return same_string_kind(v, py_strip(to_str(v), chars, true, true));
}

Value filter_upper(Interpreter&, const Value& v, const CallArgs&) {
  return same_string_kind(v, py_upper(to_str(v)));
}
Value filter_lower(Interpreter&, const Value& v, const CallArgs&) {
  return same_string_kind(v, py_lower(to_str(v)));
}
Value filter_capitalize(Interpreter&, const Value& v, const CallArgs&) {
  return same_string_kind(v, py_capitalize(to_str(v)));
}

Value filter_title(Interpreter&, const Value& v, const CallArgs&) {
  // Words start after runs of '-', whitespace, '(', '{', '[', '<'; each word gets its first
  // character upper-cased and the rest lower-cased.
  const std::u32string s = utf8_decode(to_str(v));
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
  };
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    const bool sep = is_sep(s[i]);
    while (j < s.size() && is_sep(s[j]) == sep) ++j;
    const std::string piece = utf8_encode(s.substr(i, j - i));
    if (sep) {
      out += piece;
    } else {
      out +=
          py_upper(utf8_encode(s.substr(i, 1))) + py_lower(utf8_encode(s.substr(i + 1, j - i - 1)));
    }
    i = j;
  }
  return Value::string(std::move(out));
}

Value filter_replace(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("replace", args, {"old", "new", "count"}, 2);
  const int64_t count = b[2] && !b[2]->is_none() ? int_arg(*b[2], "replace count") : -1;
  return Value::string(py_replace(to_str(v), to_str(*b[0]), to_str(*b[1]), count));
}

Value filter_indent(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("indent", args, {"width", "first", "blank"}, 0);
  if (!v.is_string()) eval_fail("indent expects a string, got ", type_name(v));
  std::string indention = "    ";
  if (b[0])
    indention = b[0]->is_string() ? b[0]->as_string() : spaces(int_arg(*b[0], "indent"), "indent");
  const std::vector<std::string> lines = py_splitlines(v.as_string() + "\n");
  std::string rv;
  if (opt_bool(b[2], false)) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n" + (lines[i].empty() ? lines[i] : indention + lines[i]);
    }
  }
  if (opt_bool(b[1], false)) rv = indention + rv;
  return Value::string(std::move(rv));
}

// Python float(str): optional whitespace, sign, digits with underscores, inf/nan.
std::optional<double> parse_python_float(const std::string& text) {
  std::string t = py_strip(text, std::nullopt, true, true);
  if (t.empty() || t.find("__") != std::string::npos || t.front() == '_' || t.back() == '_') {
    return std::nullopt;
  }
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  const std::string lower = py_lower(t);
  const std::string unsigned_part = (lower[0] == '+' || lower[0] == '-') ? lower.substr(1) : lower;
  if (unsigned_part == "inf" || unsigned_part == "infinity" || unsigned_part == "nan") {
    const double x = unsigned_part == "nan" ? NAN : INFINITY;
    return lower[0] == '-' ? -x : x;
  }
  if (unsigned_part.find_first_not_of("0123456789.e+-") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return d;
}

std::optional<int64_t> parse_python_int(const std::string& text, int base) {
  std::string t = py_strip(text, std::nullopt, true, true);
  if (t.empty()) return std::nullopt;
  bool negative = false;
  if (t[0] == '+' || t[0] == '-') {
    negative = t[0] == '-';
    t = t.substr(1);
  }
  if (t.size() > 2 && t[0] == '0') {
    const char k = char(std::tolower(t[1]));
    const int prefix_base = k == 'x' ? 16 : k == 'o' ? 8 : k == 'b' ? 2 : 0;
    if (prefix_base && (base == prefix_base || base == 0)) {
      base = prefix_base;
      t = t.substr(2);
      if (!t.empty() && t[0] == '_') t = t.substr(1);
    }
  }
  if (base == 0) base = 10;
  if (t.empty() || t.front() == '_' || t.back() == '_' || t.find("__") != std::string::npos) {
    return std::nullopt;
  }
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(t.c_str(), &end, base);
  if (end != t.c_str() + t.size() || errno == ERANGE ||
      !std::isalnum(static_cast<unsigned char>(t[0]))) {
    return std::nullopt;
  }
  return negative ? -v : v;
}

Value filter_int(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("int", args, {"default", "base"}, 0);
  const Value fallback = b[0] ? *b[0] : Value::integer(0);
  const int64_t base = b[1] ? int_arg(*b[1], "int base") : 10;
  if (base != 0 && (base < 2 || base > 36)) eval_fail("int() base must be >= 2 and <= 36, or 0");
  if (v.is_int()) return Value::integer(v.as_int());
  if (v.is_float()) {
    if (!std::isfinite(v.as_double())) return fallback;
    return Value::integer(float_to_int64(v.as_double()));
  }
  if (v.is_string()) {
    if (auto i = parse_python_int(v.as_string(), int(base))) return Value::integer(*i);
    if (auto d = parse_python_float(v.as_string()); d && std::isfinite(*d)) {
      return Value::integer(float_to_int64(*d));
    }
  }
  return fallback;
}

Value filter_float(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("float", args, {"default"}, 0);
  const Value fallback = b[0] ? *b[0] : Value::number(0.0);
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    if (auto d = parse_python_float(v.as_string())) return Value::number(*d);
  }
  return fallback;
}

Value filter_abs(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  if (v.is_int()) {
    if (v.as_int() == INT64_MIN) eval_fail("integer overflow (the renderer uses 64-bit integers)");
    return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (v.is_undefined()) fail_undefined(v);
  eval_fail("bad operand type for abs(): '", type_name(v), "'");
}

Value filter_round(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("round", args, {"precision", "method"}, 0);
  const int64_t precision = b[0] ? int_arg(*b[0], "round precision") : 0;
  const std::string method = b[1] ? to_str(*b[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    eval_fail("method must be common, ceil or floor");
  }
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_number()) eval_fail("type ", type_name(v), " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_int()) {
      // round(int, -k): to a multiple of 10**k, halves to even, as Python does.
      if (precision >= 0) return Value::integer(v.as_int());
      if (precision < -18) return Value::integer(0);
      int64_t unit = 1;
      for (int64_t i = 0; i < -precision; ++i) unit *= 10;
      const int64_t x = v.as_int();
      int64_t q = x / unit, r = x % unit;
      if (r < 0) {
        r += unit;
        --q;
      }
      if (2 * r > unit || (2 * r == unit && (q & 1))) ++q;
      int64_t rounded = 0;
      if (__builtin_mul_overflow(q, unit, &rounded)) {
        eval_fail("integer overflow (the renderer uses 64-bit integers)");
      }
      return Value::integer(rounded);
    }
    if (precision < 0 || !std::isfinite(v.as_double())) {
      const double scale = std::pow(10.0, double(-precision));
      return Value::number(std::nearbyint(v.as_double() / scale) * scale);
    }
    // printf rounds the exact binary value half-to-even, as Python's round() does.
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", int(std::min<int64_t>(precision, 300)), v.as_double());
    return Value::number(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, double(precision));
  const double scaled = v.as_double() * scale;
  return Value::number((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

Value filter_items(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::generator({});
  if (!v.is_dict()) eval_fail("Can only get item pairs from a mapping.");
  std::vector<Value> items;
  for (const auto& [k, val] : v.dict_data().entries) items.push_back(Value::tuple({k, val}));
  return Value::generator(std::move(items));
}

Value filter_dictsort(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("dictsort", args, {"case_sensitive", "by", "reverse"}, 0);
  if (!v.is_dict()) eval_fail("dictsort expects a mapping");
  const bool case_sensitive = opt_bool(b[0], false);
  const std::string by = b[1] ? to_str(*b[1]) : "key";
  if (by != "key" && by != "value") eval_fail("You can only sort by either \"key\" or \"value\"");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<Value> items;
  for (const auto& [k, val] : v.dict_data().entries) items.push_back(Value::tuple({k, val}));
  auto key = [&](const Value& item) {
    const Value& x = item.list_data().items[pos];
    return case_sensitive ? x : lower_if_string(x);
  };
  const bool reverse = opt_bool(b[2], false);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
  });
  return Value::list(std::move(items));
}

// The sort/unique/min/max key: attribute lookup (comma-separated for sort), then lower-casing.
Value sort_key(const Value& item, const std::optional<Value>& attribute, bool case_sensitive,
               bool multi) {
  std::vector<Value> parts;
  if (attribute && !attribute->is_none()) {
    if (multi && attribute->is_string()) {
      const std::string& s = attribute->as_string();
      size_t start = 0;
      while (true) {
        const size_t comma = s.find(',', start);
        parts.push_back(attribute_path(
            item,
            Value::string(s.substr(start, comma == std::string::npos ? comma : comma - start)),
            nullptr));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else {
      parts.push_back(attribute_path(item, *attribute, nullptr));
    }
  } else {
    parts.push_back(item);
  }
  if (!case_sensitive) {
    for (auto& p : parts) p = lower_if_string(p);
  }
  return multi ? Value::list(std::move(parts)) : parts[0];
}

Value filter_sort(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("sort", args, {"reverse", "case_sensitive", "attribute"}, 0);
  const bool reverse = opt_bool(b[0], false);
  const bool cs = opt_bool(b[1], false);
  std::vector<Value> items = iterate(v);
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) keyed.emplace_back(sort_key(item, b[2], cs, true), item);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? less_than(y.first, x.first) : less_than(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value filter_unique(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("unique", args, {"case_sensitive", "attribute"}, 0);
  std::vector<Value> seen, out;
  for (const Value& item : iterate(v)) {
    const Value key = sort_key(item, b[1], opt_bool(b[0], false), false);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::generator(std::move(out));
}

Value min_or_max(const Value& v, const CallArgs& args, bool want_max) {
  const auto b = bind_args(want_max ? "max" : "min", args, {"case_sensitive", "attribute"}, 0);
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(items[0], b[1], opt_bool(b[0], false), false);
  for (size_t i = 1; i < items.size(); ++i) {
    const Value key = sort_key(items[i], b[1], opt_bool(b[0], false), false);
    if (want_max ? less_than(best_key, key) : less_than(key, best_key)) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}
Value filter_min(Interpreter&, const Value& v, const CallArgs& a) {
  return min_or_max(v, a, false);
}
Value filter_max(Interpreter&, const Value& v, const CallArgs& a) {
  return min_or_max(v, a, true);
}

Value filter_sum(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("sum", args, {"attribute", "start"}, 0);
  Value total = b[1] ? *b[1] : Value::integer(0);
  for (const Value& item : iterate(v)) {
    total = binary_op("+", total, b[0] ? attribute_path(item, *b[0], nullptr) : item);
  }
  return total;
}

Value filter_reverse(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::u32string s = utf8_decode(v.as_string());
    std::reverse(s.begin(), s.end());
    return Value::string(utf8_encode(s));
  }
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  // reversed() of a list/tuple/dict is an iterator; anything else becomes a reversed list.
  if (v.is_list() || v.is_dict()) return Value::generator(std::move(items));
  return Value::list(std::move(items));
}

Value filter_select(Interpreter& i, const Value& v, const CallArgs& a) {
  return select_or_reject(i, v, a, false, true);
}
Value filter_reject(Interpreter& i, const Value& v, const CallArgs& a) {
  return select_or_reject(i, v, a, false, false);
}
Value filter_selectattr(Interpreter& i, const Value& v, const CallArgs& a) {
  return select_or_reject(i, v, a, true, true);
}
Value filter_rejectattr(Interpreter& i, const Value& v, const CallArgs& a) {
  return select_or_reject(i, v, a, true, false);
}

Value filter_escape(Interpreter&, const Value& v, const CallArgs&) {
  return escape_value(v);
}

Value filter_forceescape(Interpreter&, const Value& v, const CallArgs&) {
  return Value::markup(html_escape(to_str(v)));
}

Value filter_safe(Interpreter&, const Value& v, const CallArgs&) {
  return v.is_markup() ? v : Value::markup(to_str(v));
}

Value filter_attr(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("attr", args, {"name"}, 1);
  const std::string name = to_str(*b[0]);
  if (v.is_namespace() || v.is_loop()) return get_attribute(v, name);
  if (auto m = builtin_method(v, name)) return *m;
  return Value::undefined("'" + type_name(v) + " object' has no attribute '" + name + "'");
}

Value filter_center(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("center", args, {"width"}, 0);
  const std::u32string s = utf8_decode(to_str(v));
  const int64_t width = b[0] ? int_arg(*b[0], "center width") : 80;
  if (width <= int64_t(s.size())) return Value::string(utf8_encode(s));
  check_size(uint64_t(width), "center's result");
  const int64_t marg = width - int64_t(s.size());
  const int64_t left = marg / 2 + (marg & width & 1);
  return Value::string(spaces(left, "center") + utf8_encode(s) + spaces(marg - left, "center"));
}

Value filter_wordcount(Interpreter&, const Value& v, const CallArgs&) {
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(to_str(v))) {
    const bool w = c == '_' || u_isalnum(UChar32(c));
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value::integer(words);
}

Value filter_format(Interpreter&, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    eval_fail("can't handle positional and keyword arguments at the same time");
  }
  if (!args.keyword.empty()) {
    DictData d;
    for (const auto& [k, val] : args.keyword) d.set(Value::string(k), val);
    return Value::string(percent_format(to_str(v), Value::dict(std::move(d))));
  }
  return Value::string(percent_format(to_str(v), Value::tuple(args.positional)));
}

Value filter_batch(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("batch", args, {"linecount", "fill_with"}, 1);
  const int64_t n = int_arg(*b[0], "batch size");
  if (n <= 0) eval_fail("batch size must be positive");
  check_size(uint64_t(n), "a batch");
  charge_steps(uint64_t(n));
  std::vector<Value> out, cur;
  for (const Value& item : iterate(v)) {
    cur.push_back(item);
    if (int64_t(cur.size()) == n) {
      out.push_back(Value::list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (b[1] && !b[1]->is_none()) {
      while (int64_t(cur.size()) < n) cur.push_back(*b[1]);
    }
    out.push_back(Value::list(std::move(cur)));
  }
  return Value::generator(std::move(out));
}

Value filter_truncate(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("truncate", args, {"length", "killwords", "end", "leeway"}, 0);
  const int64_t length = b[0] ? int_arg(*b[0], "truncate length") : 255;
  const std::u32string end = utf8_decode(b[2] ? to_str(*b[2]) : "...");
  const int64_t leeway = b[3] && !b[3]->is_none() ? int_arg(*b[3], "truncate leeway") : 5;
  if (length < int64_t(end.size())) eval_fail("expected length >= ", end.size(), ", got ", length);
  if (leeway < 0) eval_fail("expected leeway >= 0, got ", leeway);
  const std::u32string text = utf8_decode(to_str(v));
  if (int64_t(text.size()) <= length + leeway) return Value::string(to_str(v));
  std::u32string head = text.substr(0, size_t(length) - end.size());
  if (!opt_bool(b[1], false)) {
    const size_t space = head.rfind(U' ');
    if (space != std::u32string::npos) head = head.substr(0, space);
  }
  return Value::string(utf8_encode(head + end));
}

// Markup.striptags: drop comments and tags, collapse whitespace, unescape the basic entities.
Value filter_striptags(Interpreter&, const Value& v, const CallArgs&) {
  std::string text = to_str(v), kept;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "<!--") == 0) {
      const size_t close = text.find("-->", i + 4);
      if (close == std::string::npos) {
        kept += text.substr(i);
        break;
      }
      i = close + 3;
    } else if (text[i] == '<') {
      const size_t close = text.find('>', i + 1);
      if (close == std::string::npos) {
        kept += text.substr(i);
        break;
      }
      i = close + 1;
    } else {
      kept.push_back(text[i++]);
    }
  }
  std::string collapsed;
  for (const std::string& word : py_split_whitespace(kept)) {
    if (!collapsed.empty()) collapsed.push_back(' ');
    collapsed += word;
  }
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&lt;", "<"},  {"&gt;", ">"},   {"&quot;", "\""}, {"&#34;", "\""},
      {"&#39;", "'"}, {"&apos;", "'"}, {"&amp;", "&"}};
  std::string out;
  for (size_t i = 0; i < collapsed.size();) {
    bool replaced = false;
    for (const auto& [entity, ch] : kEntities) {
      if (collapsed.compare(i, std::string_view(entity).size(), entity) == 0) {
        out += ch;
        i += std::string_view(entity).size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(collapsed[i++]);
  }
  return Value::string(std::move(out));
}

Value filter_slice(Interpreter&, const Value& v, const CallArgs& args) {
  const auto b = bind_args("slice", args, {"slices", "fill_with"}, 1);
  const int64_t slices = int_arg(*b[0], "slice count");
  if (slices <= 0) eval_fail("slice count must be positive");
  check_size(uint64_t(slices), "slice's result");
  charge_steps(uint64_t(slices));
  const std::vector<Value> seq = iterate(v);
  const int64_t length = int64_t(seq.size());
  const int64_t per_slice = length / slices, with_extra = length % slices;
  int64_t offset = 0;
  std::vector<Value> out;
  for (int64_t n = 0; n < slices; ++n) {
    const int64_t start = offset + n * per_slice;
    if (n < with_extra) ++offset;
    const int64_t end = offset + (n + 1) * per_slice;
    std::vector<Value> part(seq.begin() + start, seq.begin() + end);
    if (b[1] && !b[1]->is_none() && n >= with_extra) part.push_back(*b[1]);
    out.push_back(Value::list(std::move(part)));
  }
  return Value::generator(std::move(out));
}

const std::unordered_map<std::string, Filter>& filters() {
  static const std::unordered_map<std::string, Filter> kFilters = {
      {"abs", filter_abs},
      {"attr", filter_attr},
      {"batch", filter_batch},
      {"capitalize", filter_capitalize},
      {"center", filter_center},
      {"count", filter_length},
      {"d", filter_default},
      {"default", filter_default},
      {"dictsort", filter_dictsort},
      {"e", filter_escape},
      {"escape", filter_escape},
      {"first", filter_first},
      {"forceescape", filter_forceescape},
      {"float", filter_float},
      {"format", filter_format},
      {"indent", filter_indent},
      {"int", filter_int},
      {"items", filter_items},
      {"join", filter_join},
      {"last", filter_last},
      {"length", filter_length},
      {"list", filter_list},
      {"lower", filter_lower},
      {"map", filter_map},
      {"max", filter_max},
      {"min", filter_min},
      {"reject", filter_reject},
      {"rejectattr", filter_rejectattr},
      {"replace", filter_replace},
      {"reverse", filter_reverse},
      {"round", filter_round},
      {"safe", filter_safe},
      {"slice", filter_slice},
      {"select", filter_select},
      {"selectattr", filter_selectattr},
      {"sort", filter_sort},
      {"string", filter_string},
      {"sum", filter_sum},
      {"striptags", filter_striptags},
      {"title", filter_title},
      {"tojson", filter_tojson},
      {"trim", filter_trim},
      {"truncate", filter_truncate},
      {"unique", filter_unique},
      {"upper", filter_upper},
      {"wordcount", filter_wordcount},
  };
  return kFilters;
}

}  // namespace

Value apply_filter(Interpreter& interp, const std::string& name, const Value& subject,
                   const CallArgs& args) {
  if (name == "map") return filter_map(interp, subject, args);
  const auto& table = filters();
  const auto it = table.find(name);
  if (it == table.end()) eval_fail("No filter named '", name, "'.");
  return it->second(interp, subject, args);
}

bool has_filter(const std::string& name) {
  return filters().count(name) > 0 || name == "map";
}

}  // namespace m2fp4::jinja
