// Values of the Jinja renderer. They model the Python objects a chat template sees when
// transformers renders it with jinja2: None, bool, int, float, str, list, tuple, dict (insertion
// ordered), plus the template-only objects (Undefined, namespace, macros and built-in functions,
// generators returned by filters such as `map`, and the `loop` object of a for loop).
// Printing, comparing and converting follow Python's rules so that output matches jinja2 byte for
// byte (see jinja_value.cc).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/jinja/jinja_limits.h"

namespace m2fp4::jinja {

// An error raised while evaluating a template, before the line of the failing node is known;
// the evaluator turns it into m2fp4::Error("template line N: ...").
class EvalError : public std::runtime_error {
 public:
  explicit EvalError(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void eval_fail(Args&&... args) {
  throw EvalError(str_cat(std::forward<Args>(args)...));
}

class Value;
class Interpreter;

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;  // nesting of lists/dicts in it, this one included (see value_depth)
};

// A Python dict: keys compared with Python equality, iteration in insertion order.
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;  // set by Value::dict
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);
};

// jinja2's namespace(): a mutable attribute bag shared by reference.
struct NamespaceData {
  // Out of line: DictData's members need Value complete (clang checks them at this point).
  NamespaceData();
  ~NamespaceData();
  NamespaceData(const NamespaceData&) = delete;
  NamespaceData& operator=(const NamespaceData&) = delete;
  DictData attrs;
  // Namespaces alive in this process (tests check that renders free theirs, cycles included).
  static inline std::atomic<int64_t> live{0};
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Macros, `caller`, globals (range, namespace, ...) and bound methods ("abc".upper).
struct FunctionData {
  std::string name;
  bool is_macro = false;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// A one-shot iterator (the result of map/select/items/reverse/unique): iterating it a second
// time yields nothing, as in Python.
struct GeneratorData {
  std::vector<Value> items;
  bool consumed = false;
  int depth = 1;
};

// The `loop` variable of a for loop.
struct LoopData {
  std::shared_ptr<const std::vector<Value>> items;
  int64_t index0 = 0;
  int64_t depth0 = 0;
  bool has_changed_value = false;
  std::vector<Value> changed_value;
  // For a `recursive` loop: loop(iterable) renders the loop again one level deeper.
  std::function<Value(Interpreter&, CallArgs&)> recurse;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // list or tuple (ListData::is_tuple)
    kDict,
    kNamespace,
    kFunction,
    kGenerator,
    kLoop,
  };

  // Undefined, with no hint.
  Value() = default;

  static Value undefined(std::string hint) { return Value(Kind::kUndefined, std::move(hint)); }
  static Value none() { return Value(Kind::kNone, std::monostate{}); }
  static Value boolean(bool b) { return Value(Kind::kBool, b); }
  static Value integer(int64_t i) { return Value(Kind::kInt, i); }
  static Value number(double d) { return Value(Kind::kFloat, d); }
  static Value string(std::string s) { return Value(Kind::kString, std::move(s)); }
  // markupsafe.Markup (what `|safe` and `|escape` return): a str that escapes what is
  // concatenated onto it with `+`, formatted into it with `%`, or joined by it.
  static Value markup(std::string s) {
    Value v(Kind::kString, std::move(s));
    v.markup_ = true;
    return v;
  }
  static Value list(std::vector<Value> items);
  static Value tuple(std::vector<Value> items);
  static Value dict(DictData dict);
  static Value namespace_object(DictData attrs);
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call,
                        bool is_macro = false);
  static Value generator(std::vector<Value> items);
  static Value loop(std::shared_ptr<LoopData> loop) { return Value(Kind::kLoop, std::move(loop)); }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  // Python int, which includes bool.
  bool is_int() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_markup() const { return kind_ == Kind::kString && markup_; }
  bool is_list() const { return kind_ == Kind::kList; }  // list or tuple
  bool is_tuple() const { return kind_ == Kind::kList && list_data().is_tuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }
  bool is_generator() const { return kind_ == Kind::kGenerator; }
  bool is_loop() const { return kind_ == Kind::kLoop; }

  bool as_bool() const { return std::get<bool>(data_); }
  // Python int value (True is 1).
  int64_t as_int() const { return kind_ == Kind::kBool ? as_bool() : std::get<int64_t>(data_); }
  double as_double() const { return is_float() ? std::get<double>(data_) : double(as_int()); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  // The message to report when this undefined value is used.
  const std::string& undefined_hint() const { return std::get<std::string>(data_); }
  const ListData& list_data() const { return *std::get<std::shared_ptr<ListData>>(data_); }
  const DictData& dict_data() const { return *std::get<std::shared_ptr<DictData>>(data_); }
  NamespaceData& namespace_data() const { return *std::get<std::shared_ptr<NamespaceData>>(data_); }
  const FunctionData& function_data() const {
    return *std::get<std::shared_ptr<FunctionData>>(data_);
  }
  GeneratorData& generator_data() const { return *std::get<std::shared_ptr<GeneratorData>>(data_); }
  LoopData& loop_data() const { return *std::get<std::shared_ptr<LoopData>>(data_); }
  // Identity of a heap object (for `is sameas`); null for scalars.
  const void* identity() const;

 private:
  using Data = std::variant<std::monostate, bool, int64_t, double, std::string,
                            std::shared_ptr<ListData>, std::shared_ptr<DictData>,
                            std::shared_ptr<NamespaceData>, std::shared_ptr<FunctionData>,
                            std::shared_ptr<GeneratorData>, std::shared_ptr<LoopData>>;
  template <typename T>
  Value(Kind kind, T&& data) : kind_(kind), data_(std::forward<T>(data)) {}

  Kind kind_ = Kind::kUndefined;
  bool markup_ = false;
  Data data_ = std::string();
};

// ---- Python semantics ----------------------------------------------------------------------

// Python type name as in error messages: 'str', 'int', 'dict', 'NoneType', ...
std::string type_name(const Value& v);
// bool(v).
bool truthy(const Value& v);
// str(v): what `{{ v }}` prints (undefined prints nothing).
std::string to_str(const Value& v);
// repr(v), used inside printed lists and dicts.
std::string repr(const Value& v);
// repr(float): shortest round-trip digits, '1.0', '1e-05', '1e+16', 'inf', 'nan'.
std::string float_repr(double d);
// v1 == v2 (1 == 1.0 == True; lists and dicts element-wise; different types unequal).
bool equals(const Value& a, const Value& b);
// a < b for numbers, strings, lists and tuples; other pairs raise TypeError like Python.
bool less_than(const Value& a, const Value& b);
// Items of `for x in v`: list/tuple items, dict keys, string characters, generator items
// (consuming it), nothing for undefined. Anything else is not iterable.
std::vector<Value> iterate(const Value& v);
// Python len(v) where defined (strings count code points).
int64_t length(const Value& v);
// json.dumps(v, ensure_ascii=False, indent=..., separators=..., sort_keys=...), as transformers'
// tojson filter calls it. `indent` is None (no newlines), an int or a string.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // the indent unit; none = single line
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);
// Converts parsed JSON (objects keep their key order) into template values; JSON nested more
// than kMaxValueDepth levels is an m2fp4::Error.
Value from_json(const nlohmann::ordered_json& json, int depth = 0);
// Nesting depth of a list/tuple/dict/generator value (0 for scalars and other objects).
int value_depth(const Value& v);

// ---- UTF-8 / Python str helpers ------------------------------------------------------------

// Decodes UTF-8; invalid bytes raise m2fp4::Error.
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
// Python str.isspace() for one code point.
bool is_python_space(char32_t c);
// Python repr of a str, with the quote choice and escapes CPython uses.
std::string string_repr(std::string_view s);

}  // namespace m2fp4::jinja
