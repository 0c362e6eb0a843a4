// Python operators on template values, the sandboxed environment's attribute/item lookup, slicing,
// printf-style formatting, and argument binding for built-in functions.
#include <cmath>
#include <cstdio>

#include "text/jinja/jinja_builtins.h"

namespace m2fp4::jinja {
namespace {

[[noreturn]] void fail_undefined(const Value& v) {
  eval_fail(v.undefined_hint());
}

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  eval_fail("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b),
            "'");
}

// a op b on int64 with Python's result or an error where Python would leave 64 bits.
template <typename Op>
int64_t checked(Op op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op(a, b, &r)) eval_fail("integer overflow (the renderer uses 64-bit integers)");
  return r;
}
bool add_ovf(int64_t a, int64_t b, int64_t* r) {
  return __builtin_add_overflow(a, b, r);
}
bool sub_ovf(int64_t a, int64_t b, int64_t* r) {
  return __builtin_sub_overflow(a, b, r);
}
bool mul_ovf(int64_t a, int64_t b, int64_t* r) {
  return __builtin_mul_overflow(a, b, r);
}

Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value::string(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& v : seq.list_data().items) out.push_back(v);
  }
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t py_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

double py_fmod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  if (r == 0) r = std::copysign(0.0, b);
  return r;
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        eval_fail("'in <string>' requires string as left operand, not ", type_name(item));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kDict:
      return container.dict_data().find(item) != nullptr;
    case Value::Kind::kList:
    case Value::Kind::kUndefined:
    case Value::Kind::kGenerator:
      for (const auto& v : iterate(container)) {
        if (equals(v, item)) return true;
      }
      return false;
    default:
      eval_fail("argument of type '", type_name(container), "' is not iterable");
  }
}

std::string attr_missing(const Value& obj, const std::string& name) {
  if (obj.is_none()) return "'None' has no attribute '" + name + "'";
  return "'" + type_name(obj) + " object' has no attribute '" + name + "'";
}

std::string element_missing(const Value& obj, const Value& key) {
  if (obj.is_none()) return "'None' has no element " + repr(key);
  return "'" + type_name(obj) + " object' has no element " + repr(key);
}

Value loop_attribute(const Value& loop_value, const std::string& name) {
  LoopData& loop = loop_value.loop_data();
  const int64_t n = int64_t(loop.items->size());
  const int64_t i = loop.index0;
  if (name == "index") return Value::integer(i + 1);
  if (name == "index0") return Value::integer(i);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(loop.depth0 + 1);
  if (name == "depth0") return Value::integer(loop.depth0);
  if (name == "previtem") {
    return i > 0 ? (*loop.items)[size_t(i - 1)] : Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < n ? (*loop.items)[size_t(i + 1)] : Value::undefined("there is no next item");
  }
  if (name == "cycle") {
    return Value::function("cycle", [loop_value](Interpreter&, CallArgs& args) {
      if (args.positional.empty()) eval_fail("no items for cycling given");
      const auto& l = loop_value.loop_data();
      return args.positional[size_t(l.index0) % args.positional.size()];
    });
  }
  if (name == "changed") {
    return Value::function("changed", [loop_value](Interpreter&, CallArgs& args) {
      auto& l = loop_value.loop_data();
      bool same = l.has_changed_value && l.changed_value.size() == args.positional.size();
      for (size_t k = 0; same && k < args.positional.size(); ++k) {
        same = equals(l.changed_value[k], args.positional[k]);
      }
      if (same) return Value::boolean(false);
      l.has_changed_value = true;
      l.changed_value = args.positional;
      return Value::boolean(true);
    });
  }
  return Value::undefined("'LoopContext object' has no attribute '" + name + "'");
}

// Python's slice index adjustment (PySlice_AdjustIndices).
std::vector<int64_t> slice_indices(int64_t len, const Value& start_v, const Value& stop_v,
                                   const Value& step_v) {
  auto as_index = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_none()) return std::nullopt;
    if (v.is_undefined()) fail_undefined(v);
    if (!v.is_int()) {
      eval_fail("slice indices must be integers or None or have an __index__ method");
    }
    return v.as_int();
  };
  const int64_t step = as_index(step_v).value_or(1);
  if (step == 0) eval_fail("slice step cannot be zero");
  auto adjust = [&](std::optional<int64_t> v, bool is_start) {
    if (!v) return is_start ? (step < 0 ? len - 1 : 0) : (step < 0 ? -1 : len);
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= len) {
      x = step < 0 ? len - 1 : len;
    }
    return x;
  };
  const int64_t start = adjust(as_index(start_v), true);
  const int64_t stop = adjust(as_index(stop_v), false);
  std::vector<int64_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(i);
  return out;
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  const bool floats = nums && (a.is_float() || b.is_float());
  if (op == "+") {
    if (floats) return Value::number(a.as_double() + b.as_double());
    if (nums) return Value::integer(checked(add_ovf, a.as_int(), b.as_int()));
    if (a.is_string() && b.is_string()) return Value::string(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      std::vector<Value> items = a.list_data().items;
      for (const auto& v : b.list_data().items) items.push_back(v);
      return a.is_tuple() ? Value::tuple(std::move(items)) : Value::list(std::move(items));
    }
    if (a.is_string() || a.is_list()) {
      eval_fail("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ",
                type_name(a));
    }
    unsupported("+", a, b);
  }
  if (op == "-") {
    if (floats) return Value::number(a.as_double() - b.as_double());
    if (nums) return Value::integer(checked(sub_ovf, a.as_int(), b.as_int()));
    unsupported("-", a, b);
  }
  if (op == "*") {
    if (floats) return Value::number(a.as_double() * b.as_double());
    if (nums) return Value::integer(checked(mul_ovf, a.as_int(), b.as_int()));
    if ((a.is_string() || a.is_list()) && b.is_int()) return repeat(a, b.as_int());
    if (a.is_int() && (b.is_string() || b.is_list())) return repeat(b, a.as_int());
    unsupported("*", a, b);
  }
  if (op == "/") {
    if (!nums) unsupported("/", a, b);
    if (b.as_double() == 0) eval_fail(floats ? "float division by zero" : "division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (!nums) unsupported("//", a, b);
    if (floats) {
      if (b.as_double() == 0) eval_fail("float floor division by zero");
      return Value::number(std::floor(a.as_double() / b.as_double()));
    }
    if (b.as_int() == 0) eval_fail("integer division or modulo by zero");
    return Value::integer(floor_div(a.as_int(), b.as_int()));
  }
  if (op == "%") {
    if (a.is_string()) return Value::string(percent_format(a.as_string(), b));
    if (!nums) unsupported("%", a, b);
    if (floats) {
      if (b.as_double() == 0) eval_fail("float modulo");
      return Value::number(py_fmod(a.as_double(), b.as_double()));
    }
    if (b.as_int() == 0) eval_fail("integer division or modulo by zero");
    return Value::integer(py_mod(a.as_int(), b.as_int()));
  }
  if (op == "**") {
    if (!nums) unsupported("** or pow()", a, b);
    if (!floats && b.as_int() >= 0) {
      int64_t result = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; --e) {
        result = checked(mul_ovf, result, base);
      }
      return Value::integer(result);
    }
    if (a.as_double() == 0 && b.as_double() < 0) {
      eval_fail("0.0 cannot be raised to a negative power");
    }
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  eval_fail("unknown operator ", op);
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "eq") return equals(a, b);
  if (op == "ne") return !equals(a, b);
  if (op == "in") return contains(b, a);
  if (op == "notin") return !contains(b, a);
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (op == "lt") return less_than(a, b);
  if (op == "gt") return less_than(b, a);
  if (op == "lteq") return less_than(a, b) || equals(a, b);
  if (op == "gteq") return less_than(b, a) || equals(a, b);
  eval_fail("unknown comparison ", op);
}

Value unary_op(char op, const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_float()) return Value::number(op == '-' ? -v.as_double() : v.as_double());
  if (v.is_int()) {
    if (op == '+') return Value::integer(v.as_int());
    return Value::integer(checked(sub_ovf, 0, v.as_int()));
  }
  eval_fail("bad operand type for unary ", op, ": '", type_name(v), "'");
}

Value get_attribute(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      fail_undefined(obj);
    case Value::Kind::kDict: {
      if (auto m = builtin_method(obj, name)) return *m;
      if (const Value* v = obj.dict_data().find(std::string_view(name))) return *v;
      return Value::undefined(attr_missing(obj, name));
    }
    case Value::Kind::kNamespace: {
      if (const Value* v = obj.namespace_data().attrs.find(std::string_view(name))) return *v;
      return Value::undefined(attr_missing(obj, name));
    }
    case Value::Kind::kLoop:
      return loop_attribute(obj, name);
    default:
      if (auto m = builtin_method(obj, name)) return *m;
      return Value::undefined(attr_missing(obj, name));
  }
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_dict()) {
    if (key.is_list() && !key.is_tuple()) eval_fail("unhashable type: 'list'");
    if (const Value* v = obj.dict_data().find(key)) return *v;
  } else if ((obj.is_list() || obj.is_string()) && key.is_int()) {
    const bool is_str = obj.is_string();
    const std::u32string chars = is_str ? utf8_decode(obj.as_string()) : std::u32string();
    const int64_t n = is_str ? int64_t(chars.size()) : int64_t(obj.list_data().items.size());
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i >= 0 && i < n) {
      if (!is_str) return obj.list_data().items[size_t(i)];
      std::string s;
      utf8_append(s, chars[size_t(i)]);
      return Value::string(std::move(s));
    }
    return Value::undefined(element_missing(obj, key));
  }
  if (key.is_string()) {
    if (obj.is_namespace() || obj.is_loop()) return get_attribute(obj, key.as_string());
    if (auto m = builtin_method(obj, key.as_string())) return *m;
    return Value::undefined(attr_missing(obj, key.as_string()));
  }
  return Value::undefined(element_missing(obj, key));
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_string()) {
    const std::u32string chars = utf8_decode(obj.as_string());
    std::u32string out;
    for (int64_t i : slice_indices(int64_t(chars.size()), start, stop, step)) {
      out.push_back(chars[size_t(i)]);
    }
    return Value::string(utf8_encode(out));
  }
  if (obj.is_list()) {
    const auto& items = obj.list_data().items;
    std::vector<Value> out;
    for (int64_t i : slice_indices(int64_t(items.size()), start, stop, step)) {
      out.push_back(items[size_t(i)]);
    }
    return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  return Value::undefined("'" + type_name(obj) + " object' has no element slice");
}

std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> positional;
  const bool mapping = args.is_dict();
  if (args.is_tuple()) {
    positional = args.list_data().items;
  } else if (!mapping) {
    positional.push_back(args);
  }
  size_t next_arg = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) eval_fail("incomplete format");
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) eval_fail("incomplete format key");
      if (!mapping) eval_fail("format requires a mapping");
      arg = args.dict_data().find(std::string_view(fmt).substr(i + 1, close - i - 1));
      if (!arg) eval_fail("KeyError: ", fmt.substr(i + 1, close - i - 1));
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
      spec.push_back(fmt[i++]);
    }
    while (i < fmt.size() && (std::isdigit(static_cast<unsigned char>(fmt[i])) || fmt[i] == '.')) {
      spec.push_back(fmt[i++]);
    }
    if (i >= fmt.size()) eval_fail("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!arg) {
      if (next_arg >= positional.size()) eval_fail("not enough arguments for format string");
      arg = &positional[next_arg++];
    }
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        // Width and precision count code points, as in Python.
        std::u32string text = utf8_decode(conv == 's' ? to_str(*arg) : repr(*arg));
        const size_t dot = spec.find('.');
        if (dot != std::string::npos) {
          text = text.substr(0, std::stoul("0" + spec.substr(dot + 1)));
        }
        const std::string digits = spec.substr(0, dot).substr(
            spec.find_first_of("123456789") == std::string::npos ? spec.size()
                                                                 : spec.find_first_of("123456789"));
        const size_t width = digits.empty() ? 0 : std::stoul(digits);
        const std::u32string pad(width > text.size() ? width - text.size() : 0, U' ');
        const bool left = spec.find('-') != std::string::npos;
        out += utf8_encode(left ? text + pad : pad + text);
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg->is_number()) {
          eval_fail("%", conv, " format: a real number is required, not ", type_name(*arg));
        }
        const int64_t v = arg->is_float() ? int64_t(arg->as_double()) : arg->as_int();
        spec += "ll";
        spec.push_back(conv == 'i' ? 'd' : conv);
        std::snprintf(buf, sizeof(buf), spec.c_str(), static_cast<long long>(v));
        out += buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg->is_number()) {
          eval_fail("must be real number, not ", type_name(*arg));
        }
        spec.push_back(conv);
        std::snprintf(buf, sizeof(buf), spec.c_str(), arg->as_double());
        out += buf;
        break;
      }
      default:
        eval_fail("unsupported format character '", conv, "'");
    }
  }
  if (!mapping && next_arg < positional.size()) {
    eval_fail("not all arguments converted during string formatting");
  }
  return out;
}

std::vector<std::optional<Value>> bind_args(std::string_view function, const CallArgs& args,
                                            std::initializer_list<std::string_view> params,
                                            size_t required) {
  const std::vector<std::string_view> names(params);
  std::vector<std::optional<Value>> out(names.size());
  if (args.positional.size() > names.size()) {
    eval_fail(function, "() takes at most ", names.size(), " argument(s) (", args.positional.size(),
              " given)");
  }
  for (size_t i = 0; i < args.positional.size(); ++i) out[i] = args.positional[i];
  for (const auto& [k, v] : args.keyword) {
    size_t idx = names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == k) idx = i;
    }
    if (idx == names.size()) eval_fail(function, "() got an unexpected keyword argument '", k, "'");
    if (out[idx]) eval_fail(function, "() got multiple values for argument '", k, "'");
    out[idx] = v;
  }
  for (size_t i = 0; i < required; ++i) {
    if (!out[i]) eval_fail(function, "() missing required argument '", names[i], "'");
  }
  return out;
}

}  // namespace m2fp4::jinja
