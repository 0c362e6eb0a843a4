// Python semantics of template values: printing (str/repr), equality, ordering, iteration,
// json.dumps, and the UTF-8 helpers behind Python's code-point strings.
#include "text/jinja/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <unicode/uchar.h>

namespace m2fp4::jinja {

NamespaceData::NamespaceData() {
  ++live;
}
NamespaceData::~NamespaceData() {
  --live;
}

// ---- render budget ---------------------------------------------------------------------------

namespace {
thread_local RenderBudget* active_budget = nullptr;
const RenderLimits kDefaultLimits;
}  // namespace

RenderBudget::RenderBudget(const RenderLimits& limits) : limits_(limits), previous_(active_budget) {
  active_budget = this;
}

RenderBudget::~RenderBudget() {
  active_budget = previous_;
}

const RenderLimits& active_limits() {
  return active_budget ? active_budget->limits() : kDefaultLimits;
}

void check_size(uint64_t bytes, const char* what) {
  const size_t limit = active_limits().max_output_bytes;
  if (bytes > limit) {
    eval_fail(what, " would be ", bytes, " bytes long, over the render limit of ", limit,
              " bytes (max_output_bytes)");
  }
}

void charge_steps(uint64_t n) {
  RenderBudget* b = active_budget;
  if (!b) return;
  b->steps_ += n;
  if (b->steps_ > b->limits_.max_steps) {
    eval_fail("the template did more than ", b->limits_.max_steps,
              " steps of work (max_steps): is it looping without end?");
  }
}

// ---- construction ----------------------------------------------------------------------------

namespace {

// How deeply a container nests, from its direct items (each container records its own), so a
// template cannot build values so deep that printing or freeing them overflows the stack.
int nested_depth(const std::vector<Value>& items) {
  int deepest = 0;
  for (const Value& v : items) deepest = std::max(deepest, value_depth(v));
  if (deepest + 1 > kMaxValueDepth) {
    eval_fail("a value is nested more than ", kMaxValueDepth, " levels deep");
  }
  return deepest + 1;
}

}  // namespace

int value_depth(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
      return v.list_data().depth;
    case Value::Kind::kDict:
      return v.dict_data().depth;
    case Value::Kind::kGenerator:
      return v.generator_data().depth;
    default:
      return 0;
  }
}

Value Value::list(std::vector<Value> items) {
  auto data = std::make_shared<ListData>();
  data->depth = nested_depth(items);
  data->items = std::move(items);
  return Value(Kind::kList, std::move(data));
}

Value Value::tuple(std::vector<Value> items) {
  auto data = std::make_shared<ListData>();
  data->depth = nested_depth(items);
  data->items = std::move(items);
  data->is_tuple = true;
  return Value(Kind::kList, std::move(data));
}

Value Value::dict(DictData dict) {
  int deepest = 0;
  for (const auto& [k, v] : dict.entries) {
    deepest = std::max({deepest, value_depth(k), value_depth(v)});
  }
  if (deepest + 1 > kMaxValueDepth) {
    eval_fail("a value is nested more than ", kMaxValueDepth, " levels deep");
  }
  dict.depth = deepest + 1;
  return Value(Kind::kDict, std::make_shared<DictData>(std::move(dict)));
}

Value Value::namespace_object(DictData attrs) {
  auto data = std::make_shared<NamespaceData>();
  data->attrs = std::move(attrs);
  return Value(Kind::kNamespace, std::move(data));
}

Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call,
                      bool is_macro) {
  auto data = std::make_shared<FunctionData>();
  data->name = std::move(name);
  data->call = std::move(call);
  data->is_macro = is_macro;
  return Value(Kind::kFunction, std::move(data));
}

Value Value::generator(std::vector<Value> items) {
  auto data = std::make_shared<GeneratorData>();
  data->depth = nested_depth(items);
  data->items = std::move(items);
  return Value(Kind::kGenerator, std::move(data));
}

const void* Value::identity() const {
  return std::visit(
      [](const auto& d) -> const void* {
        using T = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<T, std::shared_ptr<ListData>> ||
                      std::is_same_v<T, std::shared_ptr<DictData>> ||
                      std::is_same_v<T, std::shared_ptr<NamespaceData>> ||
                      std::is_same_v<T, std::shared_ptr<FunctionData>> ||
                      std::is_same_v<T, std::shared_ptr<GeneratorData>> ||
                      std::is_same_v<T, std::shared_ptr<LoopData>>) {
          return d.get();
        } else {
          return nullptr;
        }
      },
      data_);
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.as_string()));
  for (const auto& [k, v] : entries) {
    if (equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

// ---- UTF-8 ----------------------------------------------------------------------------------

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t c = 0;
    if (b0 < 0x80) {
      c = b0;
    } else if ((b0 & 0xE0) == 0xC0 && b0 >= 0xC2) {
      extra = 1;
      c = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2;
      c = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0 && b0 <= 0xF4) {
      extra = 3;
      c = b0 & 0x07;
    } else {
      fail("invalid UTF-8 byte 0x", std::hex, int(b0), " at offset ", std::dec, i);
    }
    for (int k = 1; k <= extra; ++k) {
      M2_CHECK(i + k < s.size(), "truncated UTF-8 sequence at offset ", i);
      const auto b = static_cast<unsigned char>(s[i + k]);
      M2_CHECK((b & 0xC0) == 0x80, "invalid UTF-8 continuation byte at offset ", i + k);
      c = (c << 6) | (b & 0x3F);
    }
    M2_CHECK(!(extra == 2 && c < 0x800) && !(extra == 3 && (c < 0x10000 || c > 0x10FFFF)),
             "overlong or out-of-range UTF-8 sequence at offset ", i);
    out.push_back(c);
    i += extra + 1;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(char(c));
  } else if (c < 0x800) {
    out.push_back(char(0xC0 | (c >> 6)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(char(0xE0 | (c >> 12)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (c >> 18)));
    out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

bool is_python_space(char32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:  // clang-format off
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:  // clang-format on
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

namespace {

// Python str.isprintable() for one code point.
bool is_python_printable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x7F) return c > 0x20;
  switch (u_charType(UChar32(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

void append_hex(std::string& out, const char* prefix, uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%0*x", digits, unsigned(v));
  out += prefix;
  out += buf;
}

}  // namespace

std::string string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : utf8_decode(s)) {
    if (c == char32_t(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(char(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      append_hex(out, "\\x", c, 2);
    } else if (c < 0x7F || is_python_printable(c)) {
      utf8_append(out, c);
    } else if (c <= 0xFF) {
      append_hex(out, "\\x", c, 2);
    } else if (c <= 0xFFFF) {
      append_hex(out, "\\u", c, 4);
    } else {
      append_hex(out, "\\U", c, 8);
    }
  }
  out.push_back(quote);
  return out;
}

// ---- printing --------------------------------------------------------------------------------

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout rule: exponent form when the decimal
  // point position is <= -4 or > 16.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  const std::string sci(buf, result.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string sign;
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  const int ndigits = int(digits.size());
  const int decpt = exponent + 1;
  std::string out = sign;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(size_t(-decpt), '0') + digits;
    } else if (decpt >= ndigits) {
      out += digits + std::string(size_t(decpt - ndigits), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
    }
  } else {
    out += digits.substr(0, 1);
    if (ndigits > 1) out += "." + digits.substr(1);
    const int exp10 = decpt - 1;
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += ebuf;
  }
  return out;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return v.is_markup() ? "Markup" : "str";
    case Value::Kind::kList:
      return v.is_tuple() ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kFunction:
      return v.function_data().is_macro ? "Macro" : "function";
    case Value::Kind::kGenerator:
      return "generator";
    case Value::Kind::kLoop:
      return "LoopContext";
  }
  return "object";
}

namespace {

void append_repr(std::string& out, const Value& v, int depth = 0);

void append_dict_repr(std::string& out, const DictData& d, int depth) {
  out.push_back('{');
  bool first = true;
  for (const auto& [k, val] : d.entries) {
    if (!first) out += ", ";
    first = false;
    append_repr(out, k, depth + 1);
    out += ": ";
    append_repr(out, val, depth + 1);
  }
  out.push_back('}');
}

void append_repr(std::string& out, const Value& v, int depth) {
  // A namespace can hold itself; Python's repr then fails with RecursionError.
  if (depth > kMaxValueDepth) eval_fail("maximum recursion depth exceeded while printing a value");
  check_size(out.size(), "a printed value");
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      out += "Undefined";
      return;
    case Value::Kind::kNone:
      out += "None";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "True" : "False";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += float_repr(v.as_double());
      return;
    case Value::Kind::kString:
      if (v.is_markup()) {
        out += "Markup(" + string_repr(v.as_string()) + ")";
      } else {
        out += string_repr(v.as_string());
      }
      return;
    case Value::Kind::kList: {
      const auto& l = v.list_data();
      out.push_back(l.is_tuple ? '(' : '[');
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, l.items[i], depth + 1);
      }
      if (l.is_tuple && l.items.size() == 1) out.push_back(',');
      out.push_back(l.is_tuple ? ')' : ']');
      return;
    }
    case Value::Kind::kDict:
      append_dict_repr(out, v.dict_data(), depth);
      return;
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      append_dict_repr(out, v.namespace_data().attrs, depth);
      out += ">";
      return;
    case Value::Kind::kFunction:
      if (v.function_data().is_macro) {
        out += "<Macro " + string_repr(v.function_data().name) + ">";
      } else {
        out += "<built-in function " + v.function_data().name + ">";
      }
      return;
    case Value::Kind::kGenerator:
      out += "<generator object>";
      return;
    case Value::Kind::kLoop: {
      const auto& l = v.loop_data();
      out += "<LoopContext " + std::to_string(l.index0 + 1) + "/" +
             std::to_string(l.items->size()) + ">";
      return;
    }
  }
}

}  // namespace

std::string repr(const Value& v) {
  std::string out;
  append_repr(out, v);
  return out;
}

std::string to_str(const Value& v) {
  if (v.is_string()) return v.as_string();
  if (v.is_undefined()) return "";
  return repr(v);
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_double() != 0;
    case Value::Kind::kString:
      return !v.as_string().empty();
    case Value::Kind::kList:
      return !v.list_data().items.empty();
    case Value::Kind::kDict:
      return !v.dict_data().entries.empty();
    default:
      return true;
  }
}

// ---- comparison ------------------------------------------------------------------------------

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const auto& x = a.list_data();
      const auto& y = b.list_data();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!equals(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const auto& x = a.dict_data();
      const auto& y = b.dict_data();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, v] : x.entries) {
        const Value* other = y.find(k);
        if (!other || !equals(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.list_data().items;
    const auto& y = b.list_data().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  eval_fail("'<' not supported between instances of '", type_name(a), "' and '", type_name(b), "'");
}

// ---- iteration -------------------------------------------------------------------------------

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.list_data().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, val] : v.dict_data().entries) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : utf8_decode(v.as_string())) {
        std::string s;
        utf8_append(s, c);
        chars.push_back(Value::string(std::move(s)));
      }
      return chars;
    }
    case Value::Kind::kGenerator: {
      auto& g = v.generator_data();
      if (g.consumed) return {};
      g.consumed = true;
      return g.items;
    }
    default:
      eval_fail("'", type_name(v), "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return int64_t(utf8_decode(v.as_string()).size());
    case Value::Kind::kList:
      return int64_t(v.list_data().items.size());
    case Value::Kind::kDict:
      return int64_t(v.dict_data().entries.size());
    case Value::Kind::kLoop:
      return int64_t(v.loop_data().items->size());
    default:
      eval_fail("object of type '", type_name(v), "' has no len()");
  }
}

// ---- JSON ------------------------------------------------------------------------------------

namespace {

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c > 0x7E)) {
          if (c > 0xFFFF) {
            const char32_t v = c - 0x10000;
            append_hex(out, "\\u", 0xD800 | (v >> 10), 4);
            append_hex(out, "\\u", 0xDC00 | (v & 0x3FF), 4);
          } else {
            append_hex(out, "\\u", c, 4);
          }
        } else {
          utf8_append(out, c);
        }
    }
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::kString:
      return k.as_string();
    case Value::Kind::kBool:
      return k.as_bool() ? "true" : "false";
    case Value::Kind::kInt:
      return std::to_string(k.as_int());
    case Value::Kind::kFloat:
      return json_float(k.as_double());
    case Value::Kind::kNone:
      return "null";
    default:
      eval_fail("keys must be str, int, float, bool or None, not ", type_name(k));
  }
}

void append_json(std::string& out, const Value& v, const JsonOptions& o, int level) {
  const std::string item_sep = o.separators ? o.separators->first : (o.indent ? "," : ", ");
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  auto newline = [&](int lvl) {
    if (!o.indent) return;
    check_size(out.size() + 1 + uint64_t(lvl) * o.indent->size(), "tojson's text");
    out.push_back('\n');
    for (int i = 0; i < lvl; ++i) out += *o.indent;
  };
  if (level > kMaxValueDepth) eval_fail("tojson: value nested too deeply (or contains itself)");
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += json_float(v.as_double());
      return;
    case Value::Kind::kString:
      append_json_string(out, v.as_string(), o.ensure_ascii);
      return;
    case Value::Kind::kList: {
      const auto& items = v.list_data().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        append_json(out, items[i], o, level + 1);
      }
      newline(level);
      out.push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> sorted;
      for (const auto& entry : v.dict_data().entries) sorted.push_back(&entry);
      if (sorted.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys) {
        // json.dumps sorts the original keys (ints numerically; mixed types raise TypeError).
        std::stable_sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
          return less_than(a->first, b->first);
        });
      }
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto* entry : sorted) entries.emplace_back(json_key(entry->first), &entry->second);
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        append_json_string(out, entries[i].first, o.ensure_ascii);
        out += key_sep;
        append_json(out, *entries[i].second, o, level + 1);
      }
      newline(level);
      out.push_back('}');
      return;
    }
    default:
      eval_fail("Object of type ", type_name(v), " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  append_json(out, v, options, 0);
  return out;
}

Value from_json(const nlohmann::ordered_json& json, int depth) {
  if (depth >= kMaxValueDepth) {
    fail("JSON value nested more than ", kMaxValueDepth, " levels deep");
  }
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = json.get<uint64_t>();
      M2_CHECK(u <= uint64_t(INT64_MAX), "JSON integer ", u, " is too large");
      return Value::integer(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::string(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      for (const auto& item : json) items.push_back(from_json(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      DictData d;
      for (const auto& [k, item] : json.items()) {
        d.entries.emplace_back(Value::string(k), from_json(item, depth + 1));
      }
      return Value::dict(std::move(d));
    }
    default:
      fail("unsupported JSON value (binary or discarded)");
  }
}

}  // namespace m2fp4::jinja
