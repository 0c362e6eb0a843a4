// Syntax tree of a parsed Jinja template (the node kinds of jinja2.nodes that chat templates use).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/jinja_value.h"

namespace m2fp4::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kConst,     // value
    kName,      // name
    kNSRef,     // name.attr as an assignment target (`set ns.attr = ...`)
    kGetattr,   // a.name
    kGetitem,   // a[b]
    kSlice,     // a:b:c inside [] (any part may be null)
    kCall,      // a(args, kwargs, *dyn_args, **dyn_kwargs)
    kFilter,    // a | name(args) ; a is null in `{% filter %}` and `{% set x | f %}` blocks
    kTest,      // a is name(args)
    kNot,       // not a
    kNeg,       // -a
    kPos,       // +a
    kBinary,    // a op b, op in + - * / // % **
    kConcat,    // items joined with ~
    kCompare,   // a ops[i] items[i] ... (chained like Python)
    kAnd,       // a and b
    kOr,        // a or b
    kCondExpr,  // b if a else c (c may be null)
    kList,      // [items]
    kTuple,     // (items)
    kDict,      // {items[i]: values[i]}
  };
  Kind kind = Kind::kConst;
  int line = 1;
  int depth = 1;  // height of this expression tree (bounded by kMaxParseNesting)
  Value value;
  std::string name;  // Name, NSRef, Getattr attribute, Filter/Test name, Binary operator
  std::string attr;  // NSRef attribute
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<ExprPtr> values;
  std::vector<std::string> ops;  // Compare operators: eq ne lt lteq gt gteq in notin
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args, dyn_kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kPrint,        // {{ expr }}
    kIf,           // if expr: body else else_body (elif becomes a nested If in else_body)
    kFor,          // for target in expr [if cond]: body else else_body
    kSet,          // set target = expr
    kSetBlock,     // set target [| filter]: body endset
    kMacro,        // macro name(params=defaults): body
    kCallBlock,    // call(params) expr: body
    kFilterBlock,  // filter expr: body
    kWith,         // with params = values: body
    kBreak,
    kContinue,
    kScope,  // a body with its own scope (transformers' {% generation %})
  };
  Kind kind = Kind::kText;
  int line = 1;
  std::string text;
  std::string name;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr cond;
  Body body;
  Body else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // defaults of the last params (macro) or with-values
  bool recursive = false;
  // Macros: whether the body reads the special names (the macro then accepts them).
  bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
};

struct Template {
  Body body;
};

}  // namespace m2fp4::jinja
