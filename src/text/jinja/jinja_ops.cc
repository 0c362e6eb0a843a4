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
  const uint64_t unit = seq.is_string() ? seq.as_string().size() : seq.list_data().items.size();
  if (n > 0 && unit > 0) {
    // Checked before building: "x" * 3000000000 must not allocate gigabytes first.
    const uint64_t total = uint64_t(n) > UINT64_MAX / unit ? UINT64_MAX : uint64_t(n) * unit;
    check_size(total, seq.is_string() ? "a repeated string" : "a repeated list");
    charge_steps(seq.is_string() ? total / 64 : total);
  }
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return seq.is_markup() ? Value::markup(std::move(out)) : Value::string(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& v : seq.list_data().items) out.push_back(v);
  }
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

int64_t floor_div(int64_t a, int64_t b) {
  if (a == INT64_MIN && b == -1) eval_fail("integer overflow (the renderer uses 64-bit integers)");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t py_mod(int64_t a, int64_t b) {
  if (b == -1) return 0;  // INT64_MIN % -1 traps in C++
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
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    out.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;  // a huge step leaves the sequence
  }
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
    if (a.is_markup() || b.is_markup()) {
      // Markup.__add__/__radd__: the other operand is escaped (it must be a str).
      if (a.is_string() && b.is_string()) {
        return Value::markup(escape_value(a).as_string() + escape_value(b).as_string());
      }
      unsupported("+", a, b);
    }
    if (a.is_string() && b.is_string()) {
      check_size(uint64_t(a.as_string().size()) + b.as_string().size(), "a concatenated string");
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      const uint64_t n = a.list_data().items.size() + b.list_data().items.size();
      check_size(n, "a concatenated list");
      charge_steps(n);
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
    if (a.is_markup()) return Value::markup(percent_format(a.as_string(), b, true));
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
      // Square-and-multiply: O(log e) even for 1 ** 10**18; overflow is an error.
      int64_t result = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; e >>= 1) {
        if (e & 1) result = checked(mul_ovf, result, base);
        if (e > 1) {
          if (base == 0 || base == 1) break;
          base = checked(mul_ovf, base, base);
        }
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
    // An unhashable key (list, dict) is a TypeError that the sandbox's getitem turns into
    // undefined, like a missing key.
    const bool hashable = !(key.is_list() && !key.is_tuple()) && !key.is_dict() &&
                          !key.is_namespace() && !key.is_generator() && !key.is_loop();
    if (const Value* v = hashable ? obj.dict_data().find(key) : nullptr) return *v;
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
      return obj.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
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
    return obj.is_markup() ? Value::markup(utf8_encode(out)) : Value::string(utf8_encode(out));
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

std::string percent_format(const std::string& fmt, const Value& args, bool escape) {
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
    // Flags, width and precision; '*' takes them from the arguments.
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
      flags.push_back(fmt[i++]);
    }
    auto read_number = [&](const char* what) -> int64_t {
      if (i < fmt.size() && fmt[i] == '*') {
        ++i;
        if (next_arg >= positional.size()) eval_fail("not enough arguments for format string");
        const Value& n = positional[next_arg++];
        if (!n.is_int()) eval_fail("* wants int");
        return n.as_int();
      }
      int64_t n = 0;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) {
        n = n * 10 + (fmt[i++] - '0');
        if (n > int64_t(INT32_MAX)) eval_fail(what, " too big");
      }
      return n;
    };
    int64_t width = read_number("width");
    if (width < 0) {
      flags.push_back('-');
      width = -width;
    }
    int64_t precision = -1;
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      precision = std::max<int64_t>(0, read_number("precision"));
    }
    // Length modifiers (h, l, L) are accepted and ignored, as in Python.
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
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
    check_size(uint64_t(out.size()) + uint64_t(width) + uint64_t(std::max<int64_t>(precision, 0)),
               "a %-formatted string");
    const bool left = flags.find('-') != std::string::npos;
    // Pads `text` (counted in code points) to the width.
    auto pad = [&](const std::string& text) {
      const int64_t n = int64_t(utf8_decode(text).size());
      const std::string fill(size_t(std::max<int64_t>(0, width - n)), ' ');
      out += left ? text + fill : fill + text;
    };
    // printf of one number with the parsed flags/width/precision, sized to fit.
    auto printf_number = [&](const char* length, char c, auto value) {
      std::string spec = "%" + flags + std::to_string(width);
      if (precision >= 0) spec += "." + std::to_string(precision);
      spec += length;
      spec.push_back(c);
      const int n = std::snprintf(nullptr, 0, spec.c_str(), value);
      if (n < 0) eval_fail("bad format");
      check_size(uint64_t(out.size()) + uint64_t(n), "a %-formatted string");
      std::string buf(size_t(n) + 1, '\0');
      std::snprintf(buf.data(), buf.size(), spec.c_str(), value);
      buf.resize(size_t(n));
      out += buf;
    };
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string arg_text = conv == 's' ? to_str(*arg) : repr(*arg);
        if (escape && !arg->is_markup()) arg_text = html_escape(arg_text);
        if (precision >= 0) {
          const std::u32string chars = utf8_decode(arg_text);
          if (int64_t(chars.size()) > precision) {
            arg_text = utf8_encode(chars.substr(0, size_t(precision)));
          }
        }
        pad(arg_text);
        break;
      }
      case 'c': {
        std::string ch;
        if (arg->is_int()) {
          if (arg->as_int() < 0 || arg->as_int() > 0x10FFFF)
            eval_fail("%c arg not in range(0x110000)");
          utf8_append(ch, char32_t(arg->as_int()));
        } else if (arg->is_string() && utf8_decode(arg->as_string()).size() == 1) {
          ch = arg->as_string();
        } else {
          eval_fail("%c requires an int or a unicode character");
        }
        pad(ch);
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg->is_number()) {
          eval_fail("%", conv, " format: a real number is required, not ", type_name(*arg));
        }
        if (arg->is_float() && (conv == 'd' || conv == 'i' || conv == 'u') &&
            std::fabs(arg->as_double()) >= 9.2e18 && std::isfinite(arg->as_double())) {
          // int(x) of a float this large is exactly the float's value: print it in full.
          precision = 0;
          printf_number("", 'f', std::trunc(arg->as_double()));
          break;
        }
        const int64_t v = arg->is_float() ? float_to_int64(arg->as_double()) : arg->as_int();
        const char c = (conv == 'i' || conv == 'u') ? 'd' : conv;
        if (c != 'd' && v < 0) {
          // Python prints a minus sign and the magnitude, not the two's complement.
          if (v == INT64_MIN) eval_fail("integer overflow (the renderer uses 64-bit integers)");
          std::string body;
          {
            const size_t mark = out.size();
            const int64_t saved_width = width;
            width = 0;
            printf_number("ll", c, static_cast<unsigned long long>(-v));
            body = "-" + out.substr(mark);
            out.resize(mark);
            width = saved_width;
          }
          pad(body);
          break;
        }
        printf_number("ll", c, static_cast<long long>(v));
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg->is_number()) eval_fail("must be real number, not ", type_name(*arg));
        printf_number("", conv, arg->as_double());
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

int64_t float_to_int64(double d) {
  if (!std::isfinite(d)) {
    eval_fail(std::isnan(d) ? "cannot convert float NaN to integer"
                            : "cannot convert float infinity to integer");
  }
  const double t = std::trunc(d);
  // [-2^63, 2^63): the doubles that convert without undefined behaviour.
  if (t < -9223372036854775808.0 || t >= 9223372036854775808.0) {
    eval_fail("integer overflow (the renderer uses 64-bit integers)");
  }
  return int64_t(t);
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
