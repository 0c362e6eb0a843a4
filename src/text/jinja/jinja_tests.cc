// jinja2's tests (jinja2/tests.py): `x is defined`, `x is string`, `x is divisibleby 3`, ...
#include <unicode/uchar.h>

#include <algorithm>

#include "text/jinja/jinja_builtins.h"

namespace m2fp4::jinja {
namespace {

[[noreturn]] void fail_undefined(const Value& v) {
  eval_fail(v.undefined_hint());
}

// ---- tests ----

bool python_is(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return a.is_none() || a.identity() == b.identity();
    case Value::Kind::kBool:
      return a.as_bool() == b.as_bool();
    case Value::Kind::kInt:
      return a.as_int() == b.as_int() && a.as_int() >= -5 && a.as_int() <= 256;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    default:
      return a.identity() != nullptr && a.identity() == b.identity();
  }
}

bool test_compare(const char* op, const Value& v, const CallArgs& args) {
  const auto b = bind_args("compare", args, {"other"}, 1);
  return compare_op(op, v, *b[0]);
}

const Value& number_arg(const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_number())
    eval_fail("unsupported operand type(s) for %: '", type_name(v), "' and 'int'");
  return v;
}

}  // namespace

bool apply_test(Interpreter&, const std::string& name, const Value& v, const CallArgs& args) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.kind() == Value::Kind::kInt;
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") {
    return v.is_string() || v.is_list() || v.is_dict() || v.is_generator() || v.is_undefined() ||
           v.is_loop();
  }
  if (name == "sequence") {
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  }
  if (name == "callable") return v.is_function() || v.is_loop();
  if (name == "escaped") return v.is_markup();
  if (name == "sameas") return python_is(v, *bind_args("sameas", args, {"other"}, 1)[0]);
  if (name == "in") return compare_op("in", v, *bind_args("in", args, {"seq"}, 1)[0]);
  if (name == "==" || name == "eq" || name == "equalto") return test_compare("eq", v, args);
  if (name == "!=" || name == "ne") return test_compare("ne", v, args);
  if (name == ">" || name == "gt" || name == "greaterthan") return test_compare("gt", v, args);
  if (name == ">=" || name == "ge") return test_compare("gteq", v, args);
  if (name == "<" || name == "lt" || name == "lessthan") return test_compare("lt", v, args);
  if (name == "<=" || name == "le") return test_compare("lteq", v, args);
  if (name == "even" || name == "odd") {
    const Value r = binary_op("%", number_arg(v), Value::integer(2));
    return equals(r, Value::integer(name == "even" ? 0 : 1));
  }
  if (name == "divisibleby") {
    const auto b = bind_args("divisibleby", args, {"num"}, 1);
    return equals(binary_op("%", number_arg(v), *b[0]), Value::integer(0));
  }
  if (name == "lower" || name == "upper") {
    const std::string s = to_str(v);
    bool any_cased = false;
    for (char32_t c : utf8_decode(s)) {
      if (name == "lower" ? u_isupper(UChar32(c)) || u_istitle(UChar32(c))
                          : u_islower(UChar32(c))) {
        return false;
      }
      if (u_hasBinaryProperty(UChar32(c), UCHAR_CASED)) any_cased = true;
    }
    return any_cased;
  }
  if (name == "filter") {
    // `'upper' is filter`: the subject names a filter.
    return v.is_string() && has_filter(v.as_string());
  }
  if (name == "test") {
    static const char* kTests[] = {"defined", "undefined", "none",     "boolean",  "true",
                                   "false",   "integer",   "float",    "number",   "string",
                                   "mapping", "iterable",  "sequence", "callable", "escaped",
                                   "sameas",  "in",        "==",       "eq",       "equalto",
                                   "!=",      "ne",        ">",        "gt",       "greaterthan",
                                   ">=",      "ge",        "<",        "lt",       "lessthan",
                                   "<=",      "le",        "even",     "odd",      "divisibleby",
                                   "lower",   "upper",     "filter",   "test"};
    return v.is_string() && std::any_of(std::begin(kTests), std::end(kTests),
                                        [&](const char* k) { return v.as_string() == k; });
  }
  eval_fail("No test named '", name, "'.");
}

}  // namespace m2fp4::jinja
