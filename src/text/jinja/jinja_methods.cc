// Methods of Python str, dict and list that templates call ("a,b".split(","), d.items(), ...),
// with Python's code-point semantics. Methods that would mutate a list or dict are unsafe in
// transformers' ImmutableSandboxedEnvironment and come back as an undefined that fails when
// called, as there.
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>

#include "text/jinja/jinja_builtins.h"

namespace m2fp4::jinja {

namespace {

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::string icu_case(const std::string& s, bool upper) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  if (upper) {
    u.toUpper(icu::Locale::getRoot());
  } else {
    u.toLower(icu::Locale::getRoot());
  }
  std::string out;
  u.toUTF8String(out);
  return out;
}

bool is_cased(char32_t c) {
  return u_hasBinaryProperty(UChar32(c), UCHAR_CASED);
}

}  // namespace

std::string py_upper(const std::string& s) {
  if (!is_ascii(s)) return icu_case(s, true);
  std::string out = s;
  for (char& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string py_lower(const std::string& s) {
  if (!is_ascii(s)) return icu_case(s, false);
  std::string out = s;
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Python's full titlecase mapping of one code point (ß -> Ss, ﬁ -> Fi).
static std::string title_char(char32_t c) {
  icu::UnicodeString u{UChar32(c)};
  u.toTitle(nullptr, icu::Locale::getRoot(),
            U_TITLECASE_NO_LOWERCASE | U_TITLECASE_NO_BREAK_ADJUSTMENT);
  std::string out;
  u.toUTF8String(out);
  return out;
}

std::string py_title(const std::string& s) {
  std::string text;
  bool previous_cased = false;
  for (char32_t c : utf8_decode(s)) {
    const std::string one = utf8_encode(std::u32string(1, c));
    text += previous_cased ? py_lower(one) : title_char(c);
    previous_cased = is_cased(c);
  }
  return text;
}

std::string py_capitalize(const std::string& s) {
  std::u32string chars = utf8_decode(s);
  if (chars.empty()) return "";
  std::string out;
  utf8_append(out, char32_t(u_totitle(UChar32(chars[0]))));
  return out + py_lower(utf8_encode(chars.substr(1)));
}

std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                     bool right) {
  const std::u32string text = utf8_decode(s);
  const std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_python_space(c);
  };
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end && strip_it(text[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip_it(text[end - 1])) --end;
  }
  return utf8_encode(text.substr(begin, end - begin));
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& repl,
                       int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement around every code point.
    int64_t done = 0;
    const std::u32string chars = utf8_decode(s);
    for (size_t i = 0; i <= chars.size(); ++i) {
      if (count < 0 || done < count) {
        check_size(uint64_t(out.size()) + repl.size(), "replace's result");
        out += repl;
        ++done;
      }
      if (i < chars.size()) utf8_append(out, chars[i]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    check_size(uint64_t(out.size()) + (hit - pos) + repl.size(), "replace's result");
    out.append(s, pos, hit - pos);
    out += repl;
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

namespace {

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

std::vector<std::string> splitlines_impl(const std::string& s, bool keepends) {
  const std::u32string text = utf8_decode(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!is_line_break(text[i])) continue;
    size_t end = i + 1;
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') end = i + 2;
    lines.push_back(utf8_encode(text.substr(start, (keepends ? end : i) - start)));
    start = end;
    i = end - 1;
  }
  if (start < text.size()) lines.push_back(utf8_encode(text.substr(start)));
  return lines;
}

}  // namespace

std::vector<std::string> py_splitlines(const std::string& s) {
  return splitlines_impl(s, false);
}

std::vector<std::string> py_split_whitespace(const std::string& s) {
  std::vector<std::string> out;
  std::u32string word;
  for (char32_t c : utf8_decode(s)) {
    if (is_python_space(c)) {
      if (!word.empty()) out.push_back(utf8_encode(word));
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) out.push_back(utf8_encode(word));
  return out;
}

namespace {

using Method = std::function<Value(Interpreter&, CallArgs&)>;

std::string arg_str(const Value& v, const char* what) {
  if (!v.is_string()) eval_fail(what, " arg must be None or str, not ", type_name(v));
  return v.as_string();
}

std::optional<std::string> opt_str(const std::optional<Value>& v, const char* what) {
  if (!v || v->is_none()) return std::nullopt;
  return arg_str(*v, what);
}

int64_t opt_int(const std::optional<Value>& v, int64_t fallback) {
  if (!v || v->is_none()) return fallback;
  if (!v->is_int()) eval_fail("'", type_name(*v), "' object cannot be interpreted as an integer");
  return v->as_int();
}

Value str_list(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  for (const auto& p : parts) items.push_back(Value::string(p));
  return Value::list(std::move(items));
}

std::vector<std::string> split_impl(const std::string& s, const std::optional<std::string>& sep,
                                    int64_t maxsplit, bool from_right) {
  const std::u32string text = utf8_decode(s);
  std::vector<std::u32string> parts;
  if (!sep) {
    // Runs of whitespace separate; leading/trailing whitespace yields no empty parts.
    if (!from_right) {
      size_t i = 0;
      while (true) {
        while (i < text.size() && is_python_space(text[i])) ++i;
        if (i >= text.size()) break;
        if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
          size_t end = text.size();
          while (end > i && is_python_space(text[end - 1])) --end;
          parts.push_back(text.substr(i, end - i));
          break;
        }
        size_t j = i;
        while (j < text.size() && !is_python_space(text[j])) ++j;
        parts.push_back(text.substr(i, j - i));
        i = j;
      }
    } else {
      size_t i = text.size();
      while (true) {
        while (i > 0 && is_python_space(text[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
          size_t begin = 0;
          while (begin < i && is_python_space(text[begin])) ++begin;
          parts.push_back(text.substr(begin, i - begin));
          break;
        }
        size_t j = i;
        while (j > 0 && !is_python_space(text[j - 1])) --j;
        parts.push_back(text.substr(j, i - j));
        i = j;
      }
      std::reverse(parts.begin(), parts.end());
    }
  } else {
    const std::u32string d = utf8_decode(*sep);
    if (d.empty()) eval_fail("empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
        const size_t hit = text.find(d, pos);
        if (hit == std::u32string::npos) break;
        parts.push_back(text.substr(pos, hit - pos));
        pos = hit + d.size();
      }
      parts.push_back(text.substr(pos));
    } else {
      size_t end = text.size();
      while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
        if (end < d.size()) break;
        const size_t hit = text.rfind(d, end - d.size());
        if (hit == std::u32string::npos) break;
        parts.push_back(text.substr(hit + d.size(), end - hit - d.size()));
        end = hit;
      }
      parts.push_back(text.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
  }
  std::vector<std::string> out;
  for (const auto& p : parts) out.push_back(utf8_encode(p));
  return out;
}

// Python slice-style clamping of optional start/end arguments of find/startswith/count.
std::pair<size_t, size_t> clamp_range(size_t n, const std::optional<Value>& start,
                                      const std::optional<Value>& end) {
  auto adjust = [n](int64_t v) {
    if (v < 0) v += int64_t(n);
    return size_t(std::clamp<int64_t>(v, 0, int64_t(n)));
  };
  const size_t b = adjust(opt_int(start, 0));
  const size_t e = adjust(opt_int(end, int64_t(n)));
  return {b, std::max(b, e)};
}

bool all_chars(const std::string& s, bool (*pred)(char32_t)) {
  const std::u32string t = utf8_decode(s);
  return !t.empty() && std::all_of(t.begin(), t.end(), pred);
}

Value unsafe(const Value& obj, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) +
                          "' object is unsafe.");
}

std::optional<Value> string_method(const std::string& s, const std::string& name) {
  auto method = [&](Method m) { return std::optional<Value>(Value::function(name, std::move(m))); };
  auto no_args = [&](std::string (*fn)(const std::string&)) {
    const std::string n = name;
    return method([s, fn, n](Interpreter&, CallArgs& a) {
      bind_args(n, a, {}, 0);
      return Value::string(fn(s));
    });
  };
  if (name == "center" || name == "ljust" || name == "rjust") {
    const std::string n = name;
    return method([s, n](Interpreter&, CallArgs& a) {
      const auto b = bind_args(n, a, {"width", "fillchar"}, 1);
      if (!b[0]->is_int())
        eval_fail("'", type_name(*b[0]), "' object cannot be interpreted as an integer");
      std::u32string fill = U" ";
      if (b[1]) {
        fill = utf8_decode(arg_str(*b[1], "fillchar"));
        if (fill.size() != 1) eval_fail("The fill character must be exactly one character long");
      }
      const std::u32string text = utf8_decode(s);
      const int64_t width = b[0]->as_int();
      if (width <= int64_t(text.size())) return Value::string(s);
      check_size(uint64_t(width) * 4, n == "center" ? "center's result" : "a padded string");
      const int64_t marg = width - int64_t(text.size());
      int64_t left = n == "ljust" ? 0 : n == "rjust" ? marg : marg / 2 + (marg & width & 1);
      return Value::string(utf8_encode(std::u32string(size_t(left), fill[0]) + text +
                                       std::u32string(size_t(marg - left), fill[0])));
    });
  }
  if (name == "zfill") {
    return method([s](Interpreter&, CallArgs& a) {
      const auto b = bind_args("zfill", a, {"width"}, 1);
      if (!b[0]->is_int())
        eval_fail("'", type_name(*b[0]), "' object cannot be interpreted as an integer");
      const std::u32string text = utf8_decode(s);
      const int64_t width = b[0]->as_int();
      if (width <= int64_t(text.size())) return Value::string(s);
      check_size(uint64_t(width), "zfill's result");
      const size_t sign = !text.empty() && (text[0] == '+' || text[0] == '-') ? 1 : 0;
      return Value::string(utf8_encode(text.substr(0, sign) +
                                       std::u32string(size_t(width) - text.size(), U'0') +
                                       text.substr(sign)));
    });
  }
  if (name == "swapcase") {
    return method([s](Interpreter&, CallArgs& a) {
      bind_args("swapcase", a, {}, 0);
      std::string out;
      for (char32_t c : utf8_decode(s)) {
        const std::string one = utf8_encode(std::u32string(1, c));
        out += u_isupper(UChar32(c)) ? py_lower(one) : u_islower(UChar32(c)) ? py_upper(one) : one;
      }
      return Value::string(std::move(out));
    });
  }
  if (name == "istitle") {
    return method([s](Interpreter&, CallArgs& a) {
      bind_args("istitle", a, {}, 0);
      bool cased = false, previous_cased = false;
      for (char32_t c : utf8_decode(s)) {
        const bool upper = u_isupper(UChar32(c)) || u_istitle(UChar32(c));
        if (upper) {
          if (previous_cased) return Value::boolean(false);
          previous_cased = cased = true;
        } else if (u_islower(UChar32(c))) {
          if (!previous_cased) return Value::boolean(false);
          previous_cased = cased = true;
        } else {
          previous_cased = false;
        }
      }
      return Value::boolean(cased);
    });
  }
  if (name == "upper") return no_args(py_upper);
  if (name == "lower") return no_args(py_lower);
  if (name == "casefold") {
    return no_args([](const std::string& text) {
      icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
      u.foldCase();
      std::string out;
      u.toUTF8String(out);
      return out;
    });
  }
  if (name == "title") return no_args(py_title);
  if (name == "capitalize") return no_args(py_capitalize);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip", right = name != "lstrip";
    const std::string n = name;
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(n, a, {"chars"}, 0);
      return Value::string(py_strip(s, opt_str(b[0], n.c_str()), left, right));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    const std::string n = name;
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(n, a, {"sep", "maxsplit"}, 0);
      return str_list(split_impl(s, opt_str(b[0], n.c_str()), opt_int(b[1], -1), right));
    });
  }
  if (name == "splitlines") {
    return method([s](Interpreter&, CallArgs& a) {
      const auto b = bind_args("splitlines", a, {"keepends"}, 0);
      return str_list(splitlines_impl(s, b[0] && truthy(*b[0])));
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool starts = name == "startswith";
    const std::string n = name;
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(n, a, {"prefix", "start", "end"}, 1);
      const std::u32string text = utf8_decode(s);
      const auto [from, to] = clamp_range(text.size(), b[1], b[2]);
      const std::u32string window = text.substr(from, to - from);
      std::vector<Value> candidates =
          b[0]->is_tuple() ? b[0]->list_data().items : std::vector<Value>{*b[0]};
      for (const Value& c : candidates) {
        if (!c.is_string()) {
          eval_fail(n, " first arg must be str or a tuple of str, not ", type_name(c));
        }
        const std::u32string p = utf8_decode(c.as_string());
        if (p.size() > window.size()) continue;
        if (starts ? window.compare(0, p.size(), p) == 0
                   : window.compare(window.size() - p.size(), p.size(), p) == 0) {
          return Value::boolean(true);
        }
      }
      return Value::boolean(false);
    });
  }
  if (name == "replace") {
    return method([s](Interpreter&, CallArgs& a) {
      const auto b = bind_args("replace", a, {"old", "new", "count"}, 2);
      return Value::string(py_replace(s, arg_str(*b[0], "replace() argument 1"),
                                      arg_str(*b[1], "replace() argument 2"), opt_int(b[2], -1)));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    const std::string n = name;
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(n, a, {"sub", "start", "end"}, 1);
      const std::u32string text = utf8_decode(s);
      const std::u32string sub = utf8_decode(arg_str(*b[0], n.c_str()));
      const auto [from, to] = clamp_range(text.size(), b[1], b[2]);
      const std::u32string window = text.substr(from, to - from);
      if (n == "count") {
        if (sub.empty()) return Value::integer(int64_t(window.size()) + 1);
        int64_t count = 0;
        for (size_t p = window.find(sub); p != std::u32string::npos;
             p = window.find(sub, p + sub.size())) {
          ++count;
        }
        return Value::integer(count);
      }
      const size_t hit = n[0] == 'r' ? window.rfind(sub) : window.find(sub);
      if (hit == std::u32string::npos) {
        if (n == "index" || n == "rindex") eval_fail("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(int64_t(hit + from));
    });
  }
  if (name == "join") {
    return method([s](Interpreter&, CallArgs& a) {
      const auto b = bind_args("join", a, {"iterable"}, 1);
      std::string out;
      size_t i = 0;
      for (const Value& v : iterate(*b[0])) {
        if (!v.is_string()) {
          eval_fail("sequence item ", i, ": expected str instance, ", type_name(v), " found");
        }
        if (i++) out += s;
        out += v.as_string();
      }
      return Value::string(std::move(out));
    });
  }
  if (name == "format") {
    return method([s](Interpreter&, CallArgs& a) { return Value::string(py_format(s, a)); });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const bool prefix = name == "removeprefix";
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(prefix ? "removeprefix" : "removesuffix", a, {"affix"}, 1);
      const std::string affix = arg_str(*b[0], "argument");
      if (prefix && s.compare(0, affix.size(), affix) == 0)
        return Value::string(s.substr(affix.size()));
      if (!prefix && s.size() >= affix.size() &&
          s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
        return Value::string(s.substr(0, s.size() - affix.size()));
      }
      return Value::string(s);
    });
  }
  if (name == "partition" || name == "rpartition") {
    const bool right = name == "rpartition";
    return method([=](Interpreter&, CallArgs& a) {
      const auto b = bind_args(right ? "rpartition" : "partition", a, {"sep"}, 1);
      const std::string sep = arg_str(*b[0], "argument");
      if (sep.empty()) eval_fail("empty separator");
      const size_t hit = right ? s.rfind(sep) : s.find(sep);
      if (hit == std::string::npos) {
        return right ? Value::tuple({Value::string(""), Value::string(""), Value::string(s)})
                     : Value::tuple({Value::string(s), Value::string(""), Value::string("")});
      }
      return Value::tuple({Value::string(s.substr(0, hit)), Value::string(sep),
                           Value::string(s.substr(hit + sep.size()))});
    });
  }
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") {
    return method([s](Interpreter&, CallArgs&) {
      return Value::boolean(all_chars(s, [](char32_t c) { return bool(u_isdigit(UChar32(c))); }));
    });
  }
  if (name == "isalpha") {
    return method([s](Interpreter&, CallArgs&) {
      return Value::boolean(all_chars(s, [](char32_t c) { return bool(u_isalpha(UChar32(c))); }));
    });
  }
  if (name == "isalnum") {
    return method([s](Interpreter&, CallArgs&) {
      return Value::boolean(all_chars(s, [](char32_t c) { return bool(u_isalnum(UChar32(c))); }));
    });
  }
  if (name == "isspace") {
    return method(
        [s](Interpreter&, CallArgs&) { return Value::boolean(all_chars(s, is_python_space)); });
  }
  if (name == "isupper" || name == "islower") {
    const bool upper = name == "isupper";
    return method([=](Interpreter&, CallArgs&) {
      bool any_cased = false;
      for (char32_t c : utf8_decode(s)) {
        if (upper ? u_islower(UChar32(c)) : u_isupper(UChar32(c))) return Value::boolean(false);
        if (is_cased(c)) any_cased = true;
      }
      return Value::boolean(any_cased);
    });
  }
  return std::nullopt;
}

std::optional<Value> dict_method(const Value& obj, const std::string& name) {
  auto method = [&](Method m) { return std::optional<Value>(Value::function(name, std::move(m))); };
  if (name == "items") {
    return method([obj](Interpreter&, CallArgs& a) {
      bind_args("items", a, {}, 0);
      std::vector<Value> items;
      for (const auto& [k, v] : obj.dict_data().entries) items.push_back(Value::tuple({k, v}));
      return Value::list(std::move(items));
    });
  }
  if (name == "keys" || name == "values") {
    const bool keys = name == "keys";
    return method([obj, keys](Interpreter&, CallArgs& a) {
      bind_args(keys ? "keys" : "values", a, {}, 0);
      std::vector<Value> items;
      for (const auto& [k, v] : obj.dict_data().entries) items.push_back(keys ? k : v);
      return Value::list(std::move(items));
    });
  }
  if (name == "get") {
    return method([obj](Interpreter&, CallArgs& a) {
      const auto b = bind_args("get", a, {"key", "default"}, 1);
      if (const Value* v = obj.dict_data().find(*b[0])) return *v;
      return b[1] ? *b[1] : Value::none();
    });
  }
  if (name == "copy") {
    return method([obj](Interpreter&, CallArgs&) { return Value::dict(obj.dict_data()); });
  }
  if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" ||
      name == "clear") {
    return unsafe(obj, name);
  }
  return std::nullopt;
}

std::optional<Value> list_method(const Value& obj, const std::string& name) {
  auto method = [&](Method m) { return std::optional<Value>(Value::function(name, std::move(m))); };
  if (name == "index" || name == "count") {
    const bool count = name == "count";
    return method([obj, count](Interpreter&, CallArgs& a) {
      const auto b = bind_args(count ? "count" : "index", a, {"value"}, 1);
      int64_t n = 0;
      const auto& items = obj.list_data().items;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!equals(items[i], *b[0])) continue;
        if (!count) return Value::integer(int64_t(i));
        ++n;
      }
      if (!count) eval_fail(repr(*b[0]), " is not in list");
      return Value::integer(n);
    });
  }
  if (name == "copy" && !obj.is_tuple()) {
    return method([obj](Interpreter&, CallArgs&) { return Value::list(obj.list_data().items); });
  }
  if (!obj.is_tuple() &&
      (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
       name == "remove" || name == "reverse" || name == "sort" || name == "clear")) {
    return unsafe(obj, name);
  }
  return std::nullopt;
}

// markupsafe.Markup's methods (markupsafe 3): the str method, with Markup results (or lists and
// tuples of them); `join` escapes the joined items, `format` its arguments, `replace` its
// replacement and `center`/`ljust`/`rjust` their fill character.
Value as_markup_result(const Value& v) {
  if (v.is_string()) return Value::markup(v.as_string());
  if (!v.is_list()) return v;
  std::vector<Value> items;
  for (const Value& item : v.list_data().items) items.push_back(as_markup_result(item));
  return v.is_tuple() ? Value::tuple(std::move(items)) : Value::list(std::move(items));
}

std::optional<Value> markup_method(const Value& obj, const std::string& name) {
  static const char* kMarkupResult[] = {
      "capitalize", "title",     "lower",      "upper",        "replace",
      "ljust",      "rjust",     "lstrip",     "rstrip",       "center",
      "strip",      "translate", "expandtabs", "swapcase",     "zfill",
      "split",      "rsplit",    "splitlines", "partition",    "rpartition",
      "join",       "format",    "casefold",   "removeprefix", "removesuffix"};
  std::optional<Value> plain = string_method(obj.as_string(), name);
  if (!plain || std::none_of(std::begin(kMarkupResult), std::end(kMarkupResult),
                             [&](const char* w) { return name == w; })) {
    return plain;
  }
  const Value inner = *plain;
  // Which positional argument is escaped: -1 none, -2 all (format), -3 join's items.
  int escaped_arg = -1;
  if (name == "replace" || name == "center" || name == "ljust" || name == "rjust") escaped_arg = 1;
  if (name == "format") escaped_arg = -2;
  if (name == "join") escaped_arg = -3;
  return Value::function(name, [inner, escaped_arg](Interpreter& interp, CallArgs& args) {
    CallArgs escaped = args;
    if (escaped_arg == -3 && !escaped.positional.empty()) {
      std::vector<Value> items;
      for (const Value& item : iterate(escaped.positional[0])) items.push_back(escape_value(item));
      escaped.positional[0] = Value::list(std::move(items));
    } else if (escaped_arg == -2) {
      for (Value& a : escaped.positional) {
        if (a.is_string()) a = escape_value(a);
      }
      for (auto& [k, a] : escaped.keyword) {
        if (a.is_string()) a = escape_value(a);
      }
    } else if (escaped_arg >= 0 && size_t(escaped_arg) < escaped.positional.size()) {
      escaped.positional[size_t(escaped_arg)] =
          escape_value(escaped.positional[size_t(escaped_arg)]);
    }
    return as_markup_result(inner.function_data().call(interp, escaped));
  });
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

Value escape_value(const Value& v) {
  if (v.is_markup()) return v;
  return Value::markup(html_escape(to_str(v)));
}

std::optional<Value> builtin_method(const Value& obj, const std::string& name) {
  if (obj.is_markup()) return markup_method(obj, name);
  if (obj.is_string()) return string_method(obj.as_string(), name);
  if (obj.is_dict()) return dict_method(obj, name);
  if (obj.is_list()) return list_method(obj, name);
  return std::nullopt;
}

}  // namespace m2fp4::jinja
