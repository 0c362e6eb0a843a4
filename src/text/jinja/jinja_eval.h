// Jinja evaluator: renders a parsed template against a context, with jinja2's scoping rules
// (a for loop iteration, macro call, with/filter/set block gets a fresh scope; if does not;
// macros see their defining scope at call time), jinja2's default Undefined, Python value
// semantics, and the globals transformers adds (raise_exception, strftime_now, namespace, dict).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/jinja_ast.h"
#include "text/jinja/jinja_value.h"

namespace m2fp4::jinja {

// A variable scope. Frames live in the Interpreter's arena for the whole render, so macros can
// keep a plain pointer to the scope they were defined in.
struct Frame {
  Frame* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;
  Value* find_local(const std::string& name);
  void set(const std::string& name, Value value);
};

class Interpreter {
 public:
  explicit Interpreter(std::shared_ptr<const Template> tpl);

  // Renders the template with `context` as its variables (they shadow the globals).
  std::string render(const DictData& context);

  // Calls a function value (macro, global, bound method) with Python call semantics.
  Value call(const Value& callee, CallArgs& args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Frame* new_frame(Frame* parent);
  Value lookup(const std::string& name, Frame* frame);
  Flow exec_body(const Body& body, Frame* frame, std::string& out);
  Flow exec(const Stmt& stmt, Frame* frame, std::string& out);
  Flow exec_for(const Stmt& stmt, Frame* frame, std::string& out);
  Value eval(const Expr& expr, Frame* frame);
  Value eval_inner(const Expr& expr, Frame* frame);
  Value eval_call(const Expr& expr, Frame* frame, const Value* caller);
  CallArgs eval_args(const Expr& expr, Frame* frame);
  void assign(const Expr& target, const Value& value, Frame* frame);
  Value make_macro(const Stmt& stmt, Frame* closure, const std::string& name);
  Value invoke_macro(const Stmt& stmt, Frame* closure, const std::string& name, CallArgs& args);
  Value apply_filter_chain(const Expr& filter, Value subject, Frame* frame);
  void install_globals();

  std::shared_ptr<const Template> template_;
  std::deque<Frame> frames_;
  Frame* globals_ = nullptr;
};

// Parses and renders in one go (tests and one-off uses).
std::string render_template(std::string_view source, const DictData& context);

}  // namespace m2fp4::jinja
