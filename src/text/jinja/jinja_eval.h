// Jinja evaluator: renders a parsed template against a context, with jinja2's scoping rules
// (a for loop iteration, macro call, with/filter/set block gets a fresh scope; if does not;
// macros see their defining scope at call time), jinja2's default Undefined, Python value
// semantics, and the globals transformers adds (raise_exception, strftime_now, namespace, dict).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
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
  explicit Interpreter(std::shared_ptr<const Template> tpl, RenderLimits limits = {});
  // Empties the namespaces the render created, so reference cycles through them
  // (`{% set ns.self = ns %}`) are freed.
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders the template with `context` as its variables (they shadow the globals), within the
  // limits given to the constructor.
  std::string render(const DictData& context);

  // Records a namespace created by the render (freed by the destructor).
  void adopt_namespace(const Value& ns) { namespaces_.push_back(ns); }

  // Calls a function value (macro, global, bound method) with Python call semantics.
  Value call(const Value& callee, CallArgs& args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Frame* new_frame(Frame* parent);
  // out += text, within max_output_bytes.
  static void append_output(std::string& out, std::string_view text);
  Value lookup(const std::string& name, Frame* frame);
  Flow exec_body(const Body& body, Frame* frame, std::string& out);
  Flow exec(const Stmt& stmt, Frame* frame, std::string& out);
  Flow exec_for(const Stmt& stmt, Frame* frame, std::string& out);
  // One run of a for loop over `iterable` (recursive loops run again through loop(...)).
  void run_loop(const Stmt& stmt, Frame* frame, const Value& iterable, int64_t depth0,
                std::string& out);
  Value eval(const Expr& expr, Frame* frame);
  Value eval_inner(const Expr& expr, Frame* frame);
  Value eval_call(const Expr& expr, Frame* frame, const Value* caller);
  CallArgs eval_args(const Expr& expr, Frame* frame);
  void assign(const Expr& target, const Value& value, Frame* frame);
  Value make_macro(const Stmt& stmt, Frame* closure, const std::string& name);
  Value invoke_macro(const Stmt& stmt, Frame* closure, const std::string& name, CallArgs& args);
  Value invoke_macro_in_frame(const Stmt& stmt, Frame* closure, const std::string& name,
                              CallArgs& args);
  // Frames made after a mark are freed at release unless a macro was defined meanwhile (it
  // may hold one of them as its closure).
  struct FrameMark {
    size_t frame_count;
    uint64_t closures_made;
  };
  FrameMark mark_frames() const;
  void release_frames(const FrameMark& mark);
  Value apply_filter_chain(const Expr& filter, Value subject, Frame* frame);
  void install_globals();

  // Counts render-time nesting (statements, expressions, macro calls) against max_depth.
  class DepthGuard {
   public:
    explicit DepthGuard(Interpreter& interp);
    ~DepthGuard() { --interp_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Interpreter& interp_;
  };

  std::shared_ptr<const Template> template_;
  RenderLimits limits_;
  int depth_ = 0;
  uint64_t closures_made_ = 0;
  std::deque<Frame> frames_;
  Frame* globals_ = nullptr;
  std::vector<Value> namespaces_;
};

// Parses and renders in one go (tests and one-off uses).
std::string render_template(std::string_view source, const DictData& context,
                            const RenderLimits& limits = {});

}  // namespace m2fp4::jinja
