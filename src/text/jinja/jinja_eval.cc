// Statement execution and expression evaluation. Errors raised as EvalError by value helpers are
// turned into m2fp4::Error("template line N: ...") at the innermost expression or statement.
#include "text/jinja/jinja_eval.h"

#include <ctime>

#include "text/jinja/jinja_builtins.h"
#include "text/jinja/jinja_lexer.h"
#include "text/jinja/jinja_parser.h"

namespace m2fp4::jinja {

Value* Frame::find_local(const std::string& name) {
  for (auto& [k, v] : vars) {
    if (k == name) return &v;
  }
  return nullptr;
}

void Frame::set(const std::string& name, Value value) {
  if (Value* v = find_local(name)) {
    *v = std::move(value);
  } else {
    vars.emplace_back(name, std::move(value));
  }
}

namespace {

// jinja2 sandbox limit on range().
constexpr int64_t kMaxRange = 100000;

Value global_range(Interpreter&, CallArgs& args) {
  if (!args.keyword.empty()) eval_fail("range() takes no keyword arguments");
  const size_t n = args.positional.size();
  if (n < 1 || n > 3) eval_fail("range expected 1 to 3 arguments, got ", n);
  for (const auto& a : args.positional) {
    if (!a.is_int()) {
      if (a.is_undefined()) eval_fail(a.undefined_hint());
      eval_fail("'", type_name(a), "' object cannot be interpreted as an integer");
    }
  }
  int64_t start = 0, stop = 0, step = 1;
  if (n == 1) {
    stop = args.positional[0].as_int();
  } else {
    start = args.positional[0].as_int();
    stop = args.positional[1].as_int();
    if (n == 3) step = args.positional[2].as_int();
  }
  if (step == 0) eval_fail("range() arg 3 must not be zero");
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    if (int64_t(items.size()) >= kMaxRange) {
      eval_fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    }
    items.push_back(Value::integer(i));
    if (__builtin_add_overflow(i, step, &i)) break;  // past INT64 range: past stop too
  }
  charge_steps(items.size());
  return Value::list(std::move(items));
}

void check_namespace_name(const std::string& name) {
  if (!name.empty() && name[0] == '_') {
    eval_fail("Chat templates cannot store underscore-prefixed attributes on a namespace, but got ",
              string_repr(name), ". Please rename the attribute.");
  }
}

// dict(...) semantics shared by namespace() and dict().
DictData dict_from_args(const CallArgs& args, const char* fname) {
  DictData d;
  if (args.positional.size() > 1) {
    eval_fail(fname, " expected at most 1 argument, got ", args.positional.size());
  }
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      d = src.dict_data();
    } else if (src.is_namespace()) {
      d = src.namespace_data().attrs;
    } else {
      for (const Value& item : iterate(src)) {
        const std::vector<Value> pair = iterate(item);
        if (pair.size() != 2) {
          eval_fail("dictionary update sequence element has length ", pair.size(),
                    "; 2 is required");
        }
        d.set(pair[0], pair[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keyword) d.set(Value::string(k), v);
  return d;
}

Value global_namespace(Interpreter& interp, CallArgs& args) {
  DictData d = dict_from_args(args, "namespace");
  for (const auto& [k, v] : d.entries) {
    if (k.is_string()) check_namespace_name(k.as_string());
  }
  Value ns = Value::namespace_object(std::move(d));
  interp.adopt_namespace(ns);
  return ns;
}

Value global_dict(Interpreter&, CallArgs& args) {
  return Value::dict(dict_from_args(args, "dict"));
}

Value global_raise_exception(Interpreter&, CallArgs& args) {
  const auto bound = bind_args("raise_exception", args, {"message"}, 1);
  eval_fail(to_str(*bound[0]));
}

Value global_strftime_now(Interpreter&, CallArgs& args) {
  const auto bound = bind_args("strftime_now", args, {"format"}, 1);
  if (!bound[0]->is_string()) eval_fail("strftime() argument 1 must be str");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  const std::string& fmt = bound[0]->as_string();
  if (fmt.empty()) return Value::string("");
  std::string buf(256 + fmt.size() * 8, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &local);
  buf.resize(n);
  return Value::string(buf);
}

[[noreturn]] void fail_undefined(const Value& v) {
  eval_fail(v.undefined_hint());
}

}  // namespace

Interpreter::Interpreter(std::shared_ptr<const Template> tpl, RenderLimits limits)
    : template_(std::move(tpl)), limits_(limits) {
  install_globals();
}

Interpreter::~Interpreter() {
  // The namespaces stay alive (held here) while each is emptied, so freeing what they held
  // never recurses through another namespace.
  for (Value& ns : namespaces_) ns.namespace_data().attrs.entries.clear();
}

Interpreter::DepthGuard::DepthGuard(Interpreter& interp) : interp_(interp) {
  if (++interp_.depth_ > interp_.limits_.max_depth) {
    --interp_.depth_;
    eval_fail("the template nests more than ", interp_.limits_.max_depth,
              " levels deep at render time (max_depth): unbounded macro recursion?");
  }
}

void Interpreter::install_globals() {
  globals_ = new_frame(nullptr);
  globals_->set("range", Value::function("range", global_range));
  globals_->set("namespace", Value::function("namespace", global_namespace));
  globals_->set("dict", Value::function("dict", global_dict));
  globals_->set("raise_exception", Value::function("raise_exception", global_raise_exception));
  globals_->set("strftime_now", Value::function("strftime_now", global_strftime_now));
}

Frame* Interpreter::new_frame(Frame* parent) {
  frames_.emplace_back();
  frames_.back().parent = parent;
  return &frames_.back();
}

Value Interpreter::lookup(const std::string& name, Frame* frame) {
  for (Frame* f = frame; f; f = f->parent) {
    if (Value* v = f->find_local(name)) return *v;
  }
  return Value::undefined("'" + name + "' is undefined");
}

std::string Interpreter::render(const DictData& context) {
  const RenderBudget budget(limits_);
  Frame* ctx = new_frame(globals_);
  for (const auto& [k, v] : context.entries) {
    M2_CHECK(k.is_string(), "template context keys must be strings");
    ctx->set(k.as_string(), v);
  }
  Frame* root = new_frame(ctx);
  std::string out;
  exec_body(template_->body, root, out);
  return out;
}

Interpreter::Flow Interpreter::exec_body(const Body& body, Frame* frame, std::string& out) {
  for (const auto& stmt : body) {
    const Flow flow = exec(*stmt, frame, out);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

// Any exception other than the project's own that a value helper lets out (std::bad_alloc,
// std::length_error, ...) becomes a template error naming the line, like an EvalError.
#define M2FP4_TEMPLATE_CATCH(line)                                                   \
  catch (const EvalError& caught) {                                                  \
    template_fail(line, caught.what());                                              \
  }                                                                                  \
  catch (const Error&) {                                                             \
    throw;                                                                           \
  }                                                                                  \
  catch (const std::bad_alloc&) {                                                    \
    template_fail(line, "out of memory while rendering");                            \
  }                                                                                  \
  catch (const std::exception& caught) {                                             \
    template_fail(line, str_cat("internal error while rendering: ", caught.what())); \
  }

void Interpreter::append_output(std::string& out, std::string_view text) {
  check_size(uint64_t(out.size()) + text.size(), "the rendered text");
  out += text;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, Frame* frame, std::string& out) {
  try {
    const DepthGuard depth(*this);
    charge_steps(1);
    switch (s.kind) {
      case Stmt::Kind::kText:
        append_output(out, s.text);
        return Flow::kNormal;
      case Stmt::Kind::kPrint:
        append_output(out, to_str(eval(*s.expr, frame)));
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        return exec_body(truthy(eval(*s.expr, frame)) ? s.body : s.else_body, frame, out);
      case Stmt::Kind::kFor:
        return exec_for(s, frame, out);
      case Stmt::Kind::kSet:
        assign(*s.target, eval(*s.expr, frame), frame);
        return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec_body(s.body, new_frame(frame), captured);
        Value v = Value::string(std::move(captured));
        if (s.expr) v = apply_filter_chain(*s.expr, std::move(v), frame);
        assign(*s.target, v, frame);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        frame->set(s.name, make_macro(s, frame, s.name));
        return Flow::kNormal;
      case Stmt::Kind::kCallBlock: {
        const Value caller = make_macro(s, frame, "caller");
        append_output(out, to_str(eval_call(*s.expr, frame, &caller)));
        return Flow::kNormal;
      }
      case Stmt::Kind::kFilterBlock: {
        std::string captured;
        exec_body(s.body, new_frame(frame), captured);
        append_output(
            out, to_str(apply_filter_chain(*s.expr, Value::string(std::move(captured)), frame)));
        return Flow::kNormal;
      }
      case Stmt::Kind::kWith: {
        Frame* inner = new_frame(frame);
        std::vector<Value> values;
        for (const auto& v : s.defaults) values.push_back(eval(*v, frame));
        for (size_t i = 0; i < s.params.size(); ++i) inner->set(s.params[i], values[i]);
        return exec_body(s.body, inner, out);
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kScope:
        return exec_body(s.body, new_frame(frame), out);
    }
  }
  M2FP4_TEMPLATE_CATCH(s.line)
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, Frame* frame, std::string& out) {
  run_loop(s, frame, eval(*s.expr, frame), 0, out);
  return Flow::kNormal;
}

void Interpreter::run_loop(const Stmt& s, Frame* frame, const Value& iterable, int64_t depth0,
                           std::string& out) {
  std::vector<Value> items = iterate(iterable);
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      charge_steps(1);
      const FrameMark mark = mark_frames();
      Frame* test_frame = new_frame(frame);
      assign(*s.target, item, test_frame);
      const bool keep = truthy(eval(*s.cond, test_frame));
      release_frames(mark);
      if (keep) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_body(s.else_body, new_frame(frame), out);
    return;
  }
  auto loop = std::make_shared<LoopData>();
  loop->items = std::make_shared<const std::vector<Value>>(std::move(items));
  loop->depth0 = depth0;
  if (s.recursive) {
    // `loop(children)` renders this loop again over `children`, one level deeper, in the scope
    // the for statement runs in (which must outlive the loop object: count it as a closure).
    ++closures_made_;
    const Stmt* stmt = &s;
    loop->recurse = [this, stmt, frame, depth0](Interpreter&, CallArgs& args) {
      const auto bound = bind_args("loop", args, {"iterable"}, 1);
      std::string nested;
      run_loop(*stmt, frame, *bound[0], depth0 + 1, nested);
      return Value::string(std::move(nested));
    };
  }
  const Value loop_value = Value::loop(loop);
  for (size_t i = 0; i < loop->items->size(); ++i) {
    charge_steps(1);
    loop->index0 = int64_t(i);
    const FrameMark mark = mark_frames();
    Frame* iter_frame = new_frame(frame);
    assign(*s.target, (*loop->items)[i], iter_frame);
    iter_frame->set("loop", loop_value);
    const Flow flow = exec_body(s.body, iter_frame, out);
    release_frames(mark);
    if (flow == Flow::kBreak) break;
  }
}

void Interpreter::assign(const Expr& target, const Value& value, Frame* frame) {
  switch (target.kind) {
    case Expr::Kind::kName:
      frame->set(target.name, value);
      return;
    case Expr::Kind::kNSRef: {
      const Value ns = lookup(target.name, frame);
      if (!ns.is_namespace()) {
        template_fail(target.line, "cannot assign attribute on non-namespace object");
      }
      try {
        check_namespace_name(target.attr);
      } catch (const EvalError& e) {
        template_fail(target.line, e.what());
      }
      ns.namespace_data().attrs.set(Value::string(target.attr), value);
      return;
    }
    case Expr::Kind::kTuple:
    case Expr::Kind::kList: {
      std::vector<Value> parts;
      try {
        parts = iterate(value);
      } catch (const EvalError& e) {
        template_fail(target.line,
                      str_cat("cannot unpack non-iterable ", type_name(value), " object"));
      }
      if (parts.size() != target.items.size()) {
        template_fail(target.line, parts.size() > target.items.size()
                                       ? str_cat("too many values to unpack (expected ",
                                                 target.items.size(), ")")
                                       : str_cat("not enough values to unpack (expected ",
                                                 target.items.size(), ", got ", parts.size(), ")"));
      }
      for (size_t i = 0; i < parts.size(); ++i) assign(*target.items[i], parts[i], frame);
      return;
    }
    default:
      template_fail(target.line, "can't assign to this expression");
  }
}

// ---- macros ----------------------------------------------------------------------------------

Interpreter::FrameMark Interpreter::mark_frames() const {
  return {frames_.size(), closures_made_};
}

void Interpreter::release_frames(const FrameMark& mark) {
  // Frames are kept for the whole render only because macros may point at them; when no macro
  // was defined since the mark, the frames made since are garbage (a loop iteration's scope).
  if (closures_made_ != mark.closures_made) return;
  while (frames_.size() > mark.frame_count) frames_.pop_back();
}

Value Interpreter::make_macro(const Stmt& stmt, Frame* closure, const std::string& name) {
  ++closures_made_;
  const Stmt* def = &stmt;
  return Value::function(
      name,
      [this, def, closure, name](Interpreter&, CallArgs& args) {
        return invoke_macro(*def, closure, name, args);
      },
      true);
}

Value Interpreter::invoke_macro(const Stmt& def, Frame* closure, const std::string& name,
                                CallArgs& args) {
  const FrameMark mark = mark_frames();
  Value result = invoke_macro_in_frame(def, closure, name, args);
  release_frames(mark);
  return result;
}

Value Interpreter::invoke_macro_in_frame(const Stmt& def, Frame* closure, const std::string& name,
                                         CallArgs& args) {
  Frame* f = new_frame(closure);
  const size_t n = def.params.size();
  if (args.positional.size() > n && !def.uses_varargs) {
    eval_fail("macro '", name, "' takes not more than ", n, " argument(s)");
  }
  std::vector<bool> given(n, false);
  for (size_t i = 0; i < n && i < args.positional.size(); ++i) {
    f->set(def.params[i], args.positional[i]);
    given[i] = true;
  }
  DictData extra_kwargs;
  for (auto& [k, v] : args.keyword) {
    size_t idx = n;
    for (size_t i = 0; i < n; ++i) {
      if (def.params[i] == k) idx = i;
    }
    if (idx < n) {
      if (given[idx]) eval_fail("macro '", name, "' got multiple values for argument '", k, "'");
      f->set(k, v);
      given[idx] = true;
    } else if (k == "caller" && def.uses_caller) {
      f->set("caller", v);
    } else if (def.uses_kwargs) {
      extra_kwargs.set(Value::string(k), v);
    } else {
      eval_fail("macro '", name, "' takes no keyword argument '", k, "'");
    }
  }
  const size_t first_default = n - def.defaults.size();
  for (size_t i = 0; i < n; ++i) {
    if (given[i]) continue;
    if (i >= first_default) {
      f->set(def.params[i], eval(*def.defaults[i - first_default], f));
    } else {
      f->set(def.params[i], Value::undefined("parameter '" + def.params[i] + "' was not provided"));
    }
  }
  if (def.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = n; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    f->set("varargs", Value::tuple(std::move(rest)));
  }
  if (def.uses_kwargs) f->set("kwargs", Value::dict(std::move(extra_kwargs)));
  if (def.uses_caller && !f->find_local("caller")) {
    f->set("caller", Value::undefined("No caller defined"));
  }
  std::string out;
  exec_body(def.body, f, out);
  return Value::string(std::move(out));
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (callee.is_loop()) {
    if (!callee.loop_data().recurse) eval_fail("'LoopContext' object is not callable");
    return callee.loop_data().recurse(*this, args);
  }
  if (!callee.is_function()) eval_fail("'", type_name(callee), "' object is not callable");
  return callee.function_data().call(*this, args);
}

// ---- expressions -----------------------------------------------------------------------------

Value Interpreter::eval(const Expr& e, Frame* frame) {
  try {
    const DepthGuard depth(*this);
    charge_steps(1);
    return eval_inner(e, frame);
  }
  M2FP4_TEMPLATE_CATCH(e.line)
}

CallArgs Interpreter::eval_args(const Expr& e, Frame* frame) {
  CallArgs args;
  for (const auto& a : e.items) args.positional.push_back(eval(*a, frame));
  for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v, frame));
  if (e.dyn_args) {
    for (auto& v : iterate(eval(*e.dyn_args, frame))) args.positional.push_back(std::move(v));
  }
  if (e.dyn_kwargs) {
    const Value kw = eval(*e.dyn_kwargs, frame);
    if (!kw.is_dict()) eval_fail("argument after ** must be a mapping, not ", type_name(kw));
    for (const auto& [k, v] : kw.dict_data().entries) {
      if (!k.is_string()) eval_fail("keywords must be strings");
      args.keyword.emplace_back(k.as_string(), v);
    }
  }
  return args;
}

Value Interpreter::eval_call(const Expr& e, Frame* frame, const Value* caller) {
  try {
    const Value callee = eval(*e.a, frame);
    CallArgs args = eval_args(e, frame);
    if (caller) args.keyword.emplace_back("caller", *caller);
    return call(callee, args);
  }
  M2FP4_TEMPLATE_CATCH(e.line)
}

Value Interpreter::apply_filter_chain(const Expr& filter, Value subject, Frame* frame) {
  // A filter block's expression is a chain of Filter nodes whose innermost subject is null.
  if (filter.kind != Expr::Kind::kFilter) return subject;
  Value input = filter.a ? apply_filter_chain(*filter.a, std::move(subject), frame) : subject;
  try {
    const CallArgs args = eval_args(filter, frame);
    return apply_filter(*this, filter.name, input, args);
  }
  M2FP4_TEMPLATE_CATCH(filter.line)
}

Value Interpreter::eval_inner(const Expr& e, Frame* frame) {
  switch (e.kind) {
    case Expr::Kind::kConst:
      return e.value;
    case Expr::Kind::kName:
      return lookup(e.name, frame);
    case Expr::Kind::kNSRef: {
      const Value ns = lookup(e.name, frame);
      return get_attribute(ns, e.attr);
    }
    case Expr::Kind::kGetattr:
      return get_attribute(eval(*e.a, frame), e.name);
    case Expr::Kind::kGetitem: {
      const Value obj = eval(*e.a, frame);
      if (e.b->kind == Expr::Kind::kSlice) {
        const Expr& sl = *e.b;
        const Value start = sl.a ? eval(*sl.a, frame) : Value::none();
        const Value stop = sl.b ? eval(*sl.b, frame) : Value::none();
        const Value step = sl.c ? eval(*sl.c, frame) : Value::none();
        return get_slice(obj, start, stop, step);
      }
      return get_item(obj, eval(*e.b, frame));
    }
    case Expr::Kind::kSlice:
      eval_fail("slice outside of a subscript");
    case Expr::Kind::kCall:
      return eval_call(e, frame, nullptr);
    case Expr::Kind::kFilter: {
      Value subject = e.a ? eval(*e.a, frame) : Value();
      const CallArgs args = eval_args(e, frame);
      return apply_filter(*this, e.name, subject, args);
    }
    case Expr::Kind::kTest: {
      const Value subject = eval(*e.a, frame);
      const CallArgs args = eval_args(e, frame);
      return Value::boolean(apply_test(*this, e.name, subject, args));
    }
    case Expr::Kind::kNot:
      return Value::boolean(!truthy(eval(*e.a, frame)));
    case Expr::Kind::kNeg:
      return unary_op('-', eval(*e.a, frame));
    case Expr::Kind::kPos:
      return unary_op('+', eval(*e.a, frame));
    case Expr::Kind::kBinary: {
      const Value a = eval(*e.a, frame);
      const Value b = eval(*e.b, frame);
      return binary_op(e.name, a, b);
    }
    case Expr::Kind::kConcat: {
      std::string s;
      for (const auto& item : e.items) {
        const std::string part = to_str(eval(*item, frame));
        check_size(uint64_t(s.size()) + part.size(), "a ~ concatenation");
        s += part;
      }
      return Value::string(std::move(s));
    }
    case Expr::Kind::kCompare: {
      Value left = eval(*e.a, frame);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.items[i], frame);
        if (!compare_op(e.ops[i], left, right)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case Expr::Kind::kAnd: {
      Value left = eval(*e.a, frame);
      return truthy(left) ? eval(*e.b, frame) : left;
    }
    case Expr::Kind::kOr: {
      Value left = eval(*e.a, frame);
      return truthy(left) ? left : eval(*e.b, frame);
    }
    case Expr::Kind::kCondExpr:
      if (truthy(eval(*e.a, frame))) return eval(*e.b, frame);
      if (e.c) return eval(*e.c, frame);
      return Value::undefined(str_cat("the inline if-expression on line ", e.line,
                                      " evaluated to false and no else section was defined."));
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const auto& item : e.items) items.push_back(eval(*item, frame));
      return e.kind == Expr::Kind::kList ? Value::list(std::move(items))
                                         : Value::tuple(std::move(items));
    }
    case Expr::Kind::kDict: {
      DictData d;
      for (size_t i = 0; i < e.items.size(); ++i) {
        Value k = eval(*e.items[i], frame);
        if (k.is_list() && !k.is_tuple()) eval_fail("unhashable type: 'list'");
        if (k.is_dict()) eval_fail("unhashable type: 'dict'");
        if (k.is_undefined()) fail_undefined(k);
        d.set(std::move(k), eval(*e.values[i], frame));
      }
      return Value::dict(std::move(d));
    }
  }
  eval_fail("unknown expression");
}

std::string render_template(std::string_view source, const DictData& context,
                            const RenderLimits& limits) {
  Interpreter interp(parse_template(source), limits);
  return interp.render(context);
}

}  // namespace m2fp4::jinja
