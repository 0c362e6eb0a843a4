// Python's str.format for templates ("{} and {:>5}".format(a, b)): fields, conversions and the
// common part of the format-spec mini-language, within the render's size limit.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "text/jinja/jinja_builtins.h"

namespace m2fp4::jinja {
namespace {

// format(value, spec) for the common part of Python's format-spec mini-language:
// [[fill]align][sign][0][width][,|_][.precision][type] on str, int and float values.
std::string format_field(const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  const std::u32string sp = utf8_decode(spec);
  size_t i = 0;
  char32_t fill = U' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (sp.size() >= 2 && is_align(sp[1])) {
    fill = sp[0];
    align = char(sp[1]);
    i = 2;
  } else if (!sp.empty() && is_align(sp[0])) {
    align = char(sp[0]);
    i = 1;
  }
  char sign = '-';
  if (i < sp.size() && (sp[i] == '+' || sp[i] == '-' || sp[i] == ' ')) sign = char(sp[i++]);
  bool zero = false;
  if (i < sp.size() && sp[i] == '0') {
    zero = true;
    ++i;
  }
  auto read_int = [&]() -> int64_t {
    int64_t n = -1;
    while (i < sp.size() && sp[i] >= '0' && sp[i] <= '9') {
      n = std::max<int64_t>(n, 0) * 10 + (sp[i++] - '0');
      if (n > int64_t(INT32_MAX)) eval_fail("Too many decimal digits in format string");
    }
    return n;
  };
  const int64_t width = read_int();
  char grouping = 0;
  if (i < sp.size() && (sp[i] == ',' || sp[i] == '_')) grouping = char(sp[i++]);
  int64_t precision = -1;
  if (i < sp.size() && sp[i] == '.') {
    ++i;
    precision = read_int();
    if (precision < 0) eval_fail("Format specifier missing precision");
  }
  char type = 0;
  if (i < sp.size()) type = char(sp[i++]);
  if (i != sp.size()) eval_fail("Invalid format specifier '", spec, "'");
  check_size(uint64_t(std::max<int64_t>(width, 0)) + uint64_t(std::max<int64_t>(precision, 0)),
             "a formatted field");

  std::string body, sign_text;
  bool numeric = false;
  if (v.is_string() && !v.is_markup() ? true : (!v.is_number())) {
    if (!v.is_string())
      eval_fail("unsupported format string passed to ", type_name(v), ".__format__");
    if (type != 0 && type != 's') {
      eval_fail("Unknown format code '", type, "' for object of type 'str'");
    }
    if (sign != '-' || grouping) eval_fail("Sign not allowed in string format specifier");
    std::u32string text = utf8_decode(v.as_string());
    if (precision >= 0 && int64_t(text.size()) > precision) text.resize(size_t(precision));
    body = utf8_encode(text);
    if (!align) align = '<';
  } else {
    numeric = true;
    if (!align) align = zero ? '=' : '>';
    if (zero && fill == U' ') fill = U'0';
    const bool as_int = v.is_int() && (type == 0 || type == 'd' || type == 'n' || type == 'x' ||
                                       type == 'X' || type == 'o' || type == 'b' || type == 'c');
    if (as_int) {
      if (precision >= 0) eval_fail("Precision not allowed in integer format specifier");
      const int64_t n = v.as_int();
      if (n == INT64_MIN) eval_fail("integer overflow (the renderer uses 64-bit integers)");
      uint64_t magnitude = uint64_t(n < 0 ? -n : n);
      const int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : type == 'b' ? 2 : 10;
      if (type == 'c') {
        utf8_append(body, char32_t(n));
      } else {
        const char* digits = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
        do {
          body.insert(body.begin(), digits[magnitude % uint64_t(base)]);
          magnitude /= uint64_t(base);
        } while (magnitude);
      }
      if (n < 0) sign_text = "-";
    } else {
      double d = v.as_double();
      char t = type == 0 ? (precision >= 0 ? 'g' : 'r') : type;
      if (t == '%') d *= 100;
      if (t == 'r') {
        body = float_repr(std::fabs(d));
      } else if (std::string_view("fFeEgG%").find(t) != std::string_view::npos) {
        const char c = t == '%' ? 'f' : t;
        const int p = int(precision >= 0 ? precision : 6);
        const int n =
            std::snprintf(nullptr, 0, std::string("%.*").append(1, c).c_str(), p, std::fabs(d));
        body.resize(size_t(n) + 1);
        std::snprintf(body.data(), body.size(), std::string("%.*").append(1, c).c_str(), p,
                      std::fabs(d));
        body.resize(size_t(n));
        if (t == '%') body += "%";
      } else {
        eval_fail("Unknown format code '", t, "' for object of type '", type_name(v), "'");
      }
      if (std::signbit(d) && !std::isnan(d)) sign_text = "-";
    }
    if (sign_text.empty() && sign != '-') sign_text = std::string(1, sign);
    if (grouping) {
      const size_t end = std::min(body.find_first_not_of("0123456789"), body.size());
      for (int64_t k = int64_t(end) - 3; k > 0; k -= 3) body.insert(size_t(k), 1, grouping);
    }
  }
  const int64_t length = int64_t(utf8_decode(sign_text + body).size());
  const int64_t pad = std::max<int64_t>(0, width - length);
  const std::u32string fill_run(size_t(pad), fill);
  std::u32string b = utf8_decode(body), s = utf8_decode(sign_text);
  switch (align) {
    case '<':
      return utf8_encode(s + b + fill_run);
    case '^':
      return utf8_encode(fill_run.substr(0, size_t(pad / 2)) + s + b +
                         fill_run.substr(size_t(pad / 2)));
    case '=':
      if (!numeric) eval_fail("'=' alignment not allowed in string format specifier");
      return utf8_encode(s + fill_run + b);
    default:
      return utf8_encode(fill_run + s + b);
  }
}

}  // namespace

// str.format with automatic/positional/named fields, !s / !r conversions and format specs.
std::string py_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false, used_manual = false;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}')
        ++i;
      else
        eval_fail("Single '}' encountered in format string");
      out.push_back('}');
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) eval_fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    char conversion = 0;
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = bang + 1 < field.size() ? field[bang + 1] : 's';
      field = field.substr(0, bang);
    }
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      if (field.size() > 9) eval_fail("Replacement index ", field, " out of range");
      (field.empty() ? used_auto : used_manual) = true;
      if (used_auto && used_manual) {
        eval_fail("cannot switch from manual field specification to automatic field numbering");
      }
      const size_t idx = field.empty() ? auto_index++ : std::stoul(field);
      if (idx >= args.positional.size()) {
        eval_fail("Replacement index ", idx, " out of range for positional args tuple");
      }
      v = &args.positional[idx];
    } else {
      for (const auto& [k, val] : args.keyword) {
        if (k == field) v = &val;
      }
      if (!v) eval_fail("KeyError: '", field, "'");
    }
    const std::string text = format_field(conversion == 'r'   ? Value::string(repr(*v))
                                          : conversion == 's' ? Value::string(to_str(*v))
                                                              : *v,
                                          spec);
    check_size(uint64_t(out.size()) + text.size(), "str.format's result");
    out += text;
  }
  return out;
}

}  // namespace m2fp4::jinja
