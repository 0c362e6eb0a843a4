// Expression grammar of jinja2.parser.Parser, function by function, so that precedence and the
// odd corners (filters bind tighter than unary minus's operand, `is` tests taking one bare
// argument, tuples without parentheses) behave the same.
#include <algorithm>

#include "base/error.h"
#include "text/jinja/jinja_expr_parser.h"

namespace m2fp4::jinja {

bool ExpressionParser::is_tuple_end(const std::vector<std::string>& extra_end) const {
  const auto t = cur().type;
  if (t == Token::Type::kVariableEnd || t == Token::Type::kBlockEnd || is_op(")")) return true;
  if (t == Token::Type::kEof) return true;
  return t == Token::Type::kName &&
         std::find(extra_end.begin(), extra_end.end(), cur().value) != extra_end.end();
}

ExprPtr ExpressionParser::parse_assign_target(bool with_tuple, bool name_only,
                                              const std::vector<std::string>& extra_end,
                                              bool with_namespace) {
  ExprPtr target;
  if (name_only) {
    const int line = cur().line;
    target = make(Expr::Kind::kName, line);
    target->name = expect_name();
  } else if (with_tuple) {
    target = parse_tuple(true, true, extra_end, false, with_namespace);
  } else {
    target = parse_primary(with_namespace);
  }
  check_assignable(*target);
  return target;
}

ExprPtr ExpressionParser::parse_tuple(bool simplified, bool with_condexpr,
                                      const std::vector<std::string>& extra_end,
                                      bool explicit_parentheses, bool with_namespace) {
  int line = cur().line;
  std::vector<ExprPtr> args;
  bool is_tuple = false;
  while (true) {
    if (!args.empty()) expect_op(",");
    if (is_tuple_end(extra_end)) break;
    args.push_back(simplified ? parse_primary(with_namespace) : parse_expression(with_condexpr));
    if (is_op(",")) {
      is_tuple = true;
    } else {
      break;
    }
    line = cur().line;
  }
  if (!is_tuple) {
    if (!args.empty()) return std::move(args[0]);
    if (!explicit_parentheses) {
      fail_here("Expected an expression, got '" + describe(cur()) + "'");
    }
  }
  auto node = make(Expr::Kind::kTuple, line);
  node->items = std::move(args);
  return sealed(std::move(node));
}

void ExpressionParser::check_assignable(const Expr& e) const {
  if (e.kind == Expr::Kind::kName || e.kind == Expr::Kind::kNSRef) {
    if (e.kind == Expr::Kind::kName &&
        (e.name == "true" || e.name == "false" || e.name == "none" || e.name == "True" ||
         e.name == "False" || e.name == "None")) {
      template_fail(e.line, "can't assign to keyword '" + e.name + "'");
    }
    return;
  }
  if (e.kind == Expr::Kind::kTuple || e.kind == Expr::Kind::kList) {
    for (const auto& i : e.items) check_assignable(*i);
    return;
  }
  template_fail(e.line, "can't assign to this expression");
}

ExprPtr ExpressionParser::parse_expression(bool with_condexpr) {
  return with_condexpr ? parse_condexpr() : parse_or();
}

ExprPtr ExpressionParser::parse_condexpr() {
  const NestingGuard nesting(*this);
  int line = cur().line;
  ExprPtr expr1 = parse_or();
  while (skip_name("if")) {
    ExprPtr expr2 = parse_or();
    ExprPtr expr3;
    if (skip_name("else")) expr3 = parse_condexpr();
    auto node = make(Expr::Kind::kCondExpr, line);
    node->a = std::move(expr2);
    node->b = std::move(expr1);
    node->c = std::move(expr3);
    expr1 = sealed(std::move(node));
    line = cur().line;
  }
  return expr1;
}

ExprPtr ExpressionParser::sealed(ExprPtr e) const {
  int deepest = 0;
  auto see = [&](const ExprPtr& child) {
    if (child) deepest = std::max(deepest, child->depth);
  };
  see(e->a);
  see(e->b);
  see(e->c);
  see(e->dyn_args);
  see(e->dyn_kwargs);
  for (const auto& child : e->items) see(child);
  for (const auto& child : e->values) see(child);
  for (const auto& [k, child] : e->kwargs) see(child);
  e->depth = deepest + 1;
  if (e->depth > kMaxParseNesting) {
    template_fail(e->line, str_cat("an expression nests more than ", kMaxParseNesting,
                                   " levels deep (operators, filters or parentheses)"));
  }
  return e;
}

ExprPtr ExpressionParser::binary(Expr::Kind kind, ExprPtr l, ExprPtr r, int line, std::string op) {
  auto node = make(kind, line);
  node->a = std::move(l);
  node->b = std::move(r);
  node->name = std::move(op);
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_or() {
  int line = cur().line;
  ExprPtr left = parse_and();
  while (skip_name("or")) {
    left = binary(Expr::Kind::kOr, std::move(left), parse_and(), line);
    line = cur().line;
  }
  return left;
}

ExprPtr ExpressionParser::parse_and() {
  int line = cur().line;
  ExprPtr left = parse_not();
  while (skip_name("and")) {
    left = binary(Expr::Kind::kAnd, std::move(left), parse_not(), line);
    line = cur().line;
  }
  return left;
}

ExprPtr ExpressionParser::parse_not() {
  if (is_name("not")) {
    const NestingGuard nesting(*this);
    auto node = make(Expr::Kind::kNot, next().line);
    node->a = parse_not();
    return sealed(std::move(node));
  }
  return parse_compare();
}

ExprPtr ExpressionParser::parse_compare() {
  int line = cur().line;
  ExprPtr expr = parse_math1();
  auto node = make(Expr::Kind::kCompare, line);
  while (true) {
    static const std::pair<const char*, const char*> kOps[] = {
        {"==", "eq"}, {"!=", "ne"}, {"<", "lt"}, {"<=", "lteq"}, {">", "gt"}, {">=", "gteq"}};
    std::string op;
    for (const auto& [text, name] : kOps) {
      if (is_op(text)) op = name;
    }
    if (!op.empty()) {
      next();
    } else if (skip_name("in")) {
      op = "in";
    } else if (is_name("not") && look().type == Token::Type::kName && look().value == "in") {
      next();
      next();
      op = "notin";
    } else {
      break;
    }
    node->ops.push_back(op);
    node->items.push_back(parse_math1());
    line = cur().line;
  }
  if (node->ops.empty()) return expr;
  node->a = std::move(expr);
  node->line = line;
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_math1() {
  int line = cur().line;
  ExprPtr left = parse_concat();
  while (is_op("+") || is_op("-")) {
    const std::string op = next().value;
    left = binary(Expr::Kind::kBinary, std::move(left), parse_concat(), line, op);
    line = cur().line;
  }
  return left;
}

ExprPtr ExpressionParser::parse_concat() {
  const int line = cur().line;
  ExprPtr first = parse_math2();
  if (!is_op("~")) return first;
  auto node = make(Expr::Kind::kConcat, line);
  node->items.push_back(std::move(first));
  while (skip_op("~")) node->items.push_back(parse_math2());
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_math2() {
  int line = cur().line;
  ExprPtr left = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const std::string op = next().value;
    left = binary(Expr::Kind::kBinary, std::move(left), parse_pow(), line, op);
    line = cur().line;
  }
  return left;
}

ExprPtr ExpressionParser::parse_pow() {
  int line = cur().line;
  ExprPtr left = parse_unary(true);
  while (skip_op("**")) {
    left = binary(Expr::Kind::kBinary, std::move(left), parse_unary(true), line, "**");
    line = cur().line;
  }
  return left;
}

ExprPtr ExpressionParser::parse_unary(bool with_filter) {
  const NestingGuard nesting(*this);
  const int line = cur().line;
  ExprPtr node;
  if (is_op("-") || is_op("+")) {
    const bool neg = next().value == "-";
    node = make(neg ? Expr::Kind::kNeg : Expr::Kind::kPos, line);
    node->a = parse_unary(false);
    node = sealed(std::move(node));
  } else {
    node = parse_primary(false);
  }
  node = parse_postfix(std::move(node));
  if (with_filter) node = parse_filter_expr(std::move(node));
  return node;
}

ExprPtr ExpressionParser::parse_primary(bool with_namespace) {
  const Token& t = cur();
  const int line = t.line;
  if (t.type == Token::Type::kName) {
    const std::string v = next().value;
    if (v == "true" || v == "false" || v == "True" || v == "False") {
      auto node = make(Expr::Kind::kConst, line);
      node->value = Value::boolean(v == "true" || v == "True");
      return node;
    }
    if (v == "none" || v == "None") {
      auto node = make(Expr::Kind::kConst, line);
      node->value = Value::none();
      return node;
    }
    if (with_namespace && is_op(".")) {
      next();
      auto node = make(Expr::Kind::kNSRef, line);
      node->name = v;
      node->attr = expect_name();
      return node;
    }
    auto node = make(Expr::Kind::kName, line);
    node->name = v;
    return node;
  }
  if (t.type == Token::Type::kString) {
    std::string s;
    while (cur().type == Token::Type::kString) s += next().value;
    auto node = make(Expr::Kind::kConst, line);
    node->value = Value::string(std::move(s));
    return node;
  }
  if (t.type == Token::Type::kInteger || t.type == Token::Type::kFloat) {
    const Token& n = next();
    auto node = make(Expr::Kind::kConst, line);
    node->value = n.type == Token::Type::kInteger ? Value::integer(n.int_value)
                                                  : Value::number(n.float_value);
    return node;
  }
  if (is_op("(")) {
    const NestingGuard nesting(*this);
    next();
    ExprPtr node = parse_tuple(false, true, {}, true);
    expect_op(")");
    return node;
  }
  if (is_op("[")) return parse_list();
  if (is_op("{")) return parse_dict();
  fail_here("unexpected '" + describe(t) + "'");
}

ExprPtr ExpressionParser::parse_list() {
  const NestingGuard nesting(*this);
  auto node = make(Expr::Kind::kList, next().line);
  while (!is_op("]")) {
    if (!node->items.empty()) expect_op(",");
    if (is_op("]")) break;
    node->items.push_back(parse_expression(true));
  }
  expect_op("]");
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_dict() {
  const NestingGuard nesting(*this);
  auto node = make(Expr::Kind::kDict, next().line);
  while (!is_op("}")) {
    if (!node->items.empty()) expect_op(",");
    if (is_op("}")) break;
    node->items.push_back(parse_expression(true));
    expect_op(":");
    node->values.push_back(parse_expression(true));
  }
  expect_op("}");
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_postfix(ExprPtr node) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      node = parse_subscript(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr ExpressionParser::parse_filter_expr(ExprPtr node) {
  while (true) {
    if (is_op("|")) {
      node = parse_filter(std::move(node), false);
    } else if (is_name("is")) {
      node = parse_test(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr ExpressionParser::parse_subscript(ExprPtr node) {
  const Token& t = next();
  const int line = t.line;
  if (t.value == ".") {
    const Token& attr = next();
    if (attr.type == Token::Type::kName) {
      auto g = make(Expr::Kind::kGetattr, line);
      g->a = std::move(node);
      g->name = attr.value;
      return sealed(std::move(g));
    }
    if (attr.type != Token::Type::kInteger) template_fail(attr.line, "expected name or number");
    auto g = make(Expr::Kind::kGetitem, line);
    g->a = std::move(node);
    g->b = make(Expr::Kind::kConst, attr.line);
    g->b->value = Value::integer(attr.int_value);
    return sealed(std::move(g));
  }
  std::vector<ExprPtr> args;
  while (!is_op("]")) {
    if (!args.empty()) expect_op(",");
    args.push_back(parse_subscribed());
  }
  expect_op("]");
  auto g = make(Expr::Kind::kGetitem, line);
  g->a = std::move(node);
  if (args.size() == 1) {
    g->b = std::move(args[0]);
  } else {
    g->b = make(Expr::Kind::kTuple, line);
    g->b->items = std::move(args);
    g->b = sealed(std::move(g->b));
  }
  return sealed(std::move(g));
}

ExprPtr ExpressionParser::parse_subscribed() {
  const int line = cur().line;
  auto slice = make(Expr::Kind::kSlice, line);
  if (is_op(":")) {
    next();
  } else {
    ExprPtr node = parse_expression(true);
    if (!is_op(":")) return node;
    next();
    slice->a = std::move(node);
  }
  if (!is_op(":") && !is_op("]") && !is_op(",")) slice->b = parse_expression(true);
  if (is_op(":")) {
    next();
    if (!is_op("]") && !is_op(",")) slice->c = parse_expression(true);
  }
  return sealed(std::move(slice));
}

void ExpressionParser::parse_call_args(Expr& node) {
  const int line = cur().line;
  expect_op("(");
  bool require_comma = false;
  auto ensure = [&](bool ok) {
    if (!ok) template_fail(line, "invalid syntax for function call expression");
  };
  while (!is_op(")")) {
    if (require_comma) {
      expect_op(",");
      if (is_op(")")) break;
    }
    if (is_op("*")) {
      ensure(!node.dyn_args && !node.dyn_kwargs);
      next();
      node.dyn_args = parse_expression(true);
    } else if (is_op("**")) {
      ensure(!node.dyn_kwargs);
      next();
      node.dyn_kwargs = parse_expression(true);
    } else if (cur().type == Token::Type::kName && look().type == Token::Type::kOperator &&
               look().value == "=") {
      ensure(!node.dyn_kwargs);
      const std::string key = next().value;
      next();
      node.kwargs.emplace_back(key, parse_expression(true));
    } else {
      ensure(!node.dyn_args && !node.dyn_kwargs && node.kwargs.empty());
      node.items.push_back(parse_expression(true));
    }
    require_comma = true;
  }
  expect_op(")");
}

ExprPtr ExpressionParser::parse_call(ExprPtr callee) {
  auto node = make(Expr::Kind::kCall, cur().line);
  node->a = std::move(callee);
  parse_call_args(*node);
  return sealed(std::move(node));
}

ExprPtr ExpressionParser::parse_filter(ExprPtr node, bool start_inline) {
  while (is_op("|") || start_inline) {
    if (!start_inline) next();
    const int line = cur().line;
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    auto f = make(Expr::Kind::kFilter, line);
    f->a = std::move(node);
    f->name = name;
    if (is_op("(")) parse_call_args(*f);
    node = sealed(std::move(f));
    start_inline = false;
  }
  return node;
}

ExprPtr ExpressionParser::parse_test(ExprPtr node) {
  const int line = next().line;
  const bool negated = skip_name("not");
  std::string name = expect_name();
  while (skip_op(".")) name += "." + expect_name();
  auto t = make(Expr::Kind::kTest, line);
  t->a = std::move(node);
  t->name = name;
  const auto type = cur().type;
  if (is_op("(")) {
    parse_call_args(*t);
  } else if ((type == Token::Type::kName || type == Token::Type::kString ||
              type == Token::Type::kInteger || type == Token::Type::kFloat || is_op("[") ||
              is_op("{")) &&
             !is_name("else") && !is_name("or") && !is_name("and")) {
    if (is_name("is")) fail_here("You cannot chain multiple tests with is");
    t->items.push_back(parse_postfix(parse_primary(false)));
  }
  t = sealed(std::move(t));
  if (!negated) return t;
  auto n = make(Expr::Kind::kNot, line);
  n->a = std::move(t);
  return sealed(std::move(n));
}

}  // namespace m2fp4::jinja
