// Recursive-descent parser mirroring jinja2.parser.Parser, function by function, so that
// precedence and the odd corners (filters bind tighter than unary minus's operand, `is` tests
// taking one bare argument, tuples without parentheses) behave the same.
#include "text/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "base/error.h"

namespace m2fp4::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  std::shared_ptr<const Template> parse() {
    auto t = std::make_shared<Template>();
    t->body = subparse({});
    return t;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op) const {
    return cur().type == Token::Type::kOperator && cur().value == op;
  }
  bool is_name(std::string_view name) const {
    return cur().type == Token::Type::kName && cur().value == name;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kData: return "template data";
      case Token::Type::kVariableBegin: return "begin of print statement";
      case Token::Type::kVariableEnd: return "end of print statement";
      case Token::Type::kBlockBegin: return "begin of statement block";
      case Token::Type::kBlockEnd: return "end of statement block";
      case Token::Type::kEof: return "end of template";
      case Token::Type::kString: return "string";
      default: return t.value;
    }
  }
  [[noreturn]] void fail_here(const std::string& message) const {
    template_fail(cur().line, message);
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) {
      fail_here(str_cat("expected token '", op, "', got '", describe(cur()), "'"));
    }
  }
  void expect_type(Token::Type type, const char* what) {
    if (cur().type != type) fail_here(str_cat("expected ", what, ", got '", describe(cur()), "'"));
    next();
  }
  std::string expect_name() {
    if (cur().type != Token::Type::kName) {
      fail_here(str_cat("expected token 'name', got '", describe(cur()), "'"));
    }
    return next().value;
  }
  void expect_name(std::string_view name) {
    if (!skip_name(name)) {
      fail_here(str_cat("expected token '", name, "', got '", describe(cur()), "'"));
    }
  }

  static ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }
  static StmtPtr make_stmt(Stmt::Kind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  // ---- statements ----
  Body subparse(const std::vector<std::string>& end_names) {
    Body body;
    if (!end_names.empty()) end_stack_.push_back(end_names);
    while (cur().type != Token::Type::kEof) {
      const Token& t = cur();
      if (t.type == Token::Type::kData) {
        auto s = make_stmt(Stmt::Kind::kText, t.line);
        s->text = t.value;
        body.push_back(std::move(s));
        next();
      } else if (t.type == Token::Type::kVariableBegin) {
        next();
        auto s = make_stmt(Stmt::Kind::kPrint, cur().line);
        s->expr = parse_tuple(false, true, {}, false);
        expect_type(Token::Type::kVariableEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.type == Token::Type::kBlockBegin) {
        next();
        if (cur().type == Token::Type::kName &&
            std::find(end_names.begin(), end_names.end(), cur().value) != end_names.end()) {
          end_stack_.pop_back();
          return body;
        }
        body.push_back(parse_statement());
        expect_type(Token::Type::kBlockEnd, "end of statement block");
      } else {
        fail_here("internal parsing error: unexpected " + describe(t));
      }
    }
    if (!end_names.empty()) end_stack_.pop_back();
    return body;
  }

  [[noreturn]] void fail_eof(const std::vector<std::string>& end_names) {
    std::string looking;
    for (const auto& n : end_names) looking += (looking.empty() ? "'" : " or '") + n + "'";
    std::string msg = "Unexpected end of template. Jinja was looking for the following tags: " +
                      looking + ".";
    if (!tag_stack_.empty()) {
      msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    }
    fail_here(msg);
  }

  Body parse_statements(const std::vector<std::string>& end_names, bool drop_needle) {
    skip_op(":");
    expect_type(Token::Type::kBlockEnd, "end of statement block");
    Body body = subparse(end_names);
    if (cur().type == Token::Type::kEof) fail_eof(end_names);
    if (drop_needle) next();
    return body;
  }

  StmtPtr parse_statement() {
    if (cur().type != Token::Type::kName) fail_here("tag name expected");
    const std::string tag = cur().value;
    tag_stack_.push_back(tag);
    StmtPtr s;
    if (tag == "for") {
      s = parse_for();
    } else if (tag == "if") {
      s = parse_if();
    } else if (tag == "set") {
      s = parse_set();
    } else if (tag == "macro") {
      s = parse_macro();
    } else if (tag == "call") {
      s = parse_call_block();
    } else if (tag == "filter") {
      s = parse_filter_block();
    } else if (tag == "with") {
      s = parse_with();
    } else if (tag == "print") {
      s = parse_print();
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail_here("'" + tag + "' outside of a for loop");
      s = make_stmt(tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, next().line);
    } else if (tag == "generation") {
      s = make_stmt(Stmt::Kind::kScope, next().line);
      s->body = parse_statements({"endgeneration"}, true);
    } else if (tag == "block" || tag == "extends" || tag == "include" || tag == "import" ||
               tag == "from" || tag == "autoescape") {
      fail_here("'" + tag + "' tags are not supported in chat templates");
    } else {
      std::string msg = "Encountered unknown tag '" + tag + "'.";
      if (!end_stack_.empty()) {
        std::string looking;
        for (const auto& n : end_stack_.back()) {
          looking += (looking.empty() ? "'" : " or '") + n + "'";
        }
        msg += " Jinja was looking for the following tags: " + looking + ".";
      }
      fail_here(msg);
    }
    tag_stack_.pop_back();
    return s;
  }

  StmtPtr parse_for() {
    auto s = make_stmt(Stmt::Kind::kFor, next().line);
    s->target = parse_assign_target(true, false, {"in"}, false);
    expect_name("in");
    s->expr = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    s->recursive = skip_name("recursive");
    if (s->recursive) fail_here("recursive for loops are not supported");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().value == "else") s->else_body = parse_statements({"endfor"}, true);
    return s;
  }

  StmtPtr parse_if() {
    auto s = make_stmt(Stmt::Kind::kIf, next().line);
    Stmt* node = s.get();
    node->expr = parse_tuple(false, false, {}, false);
    node->body = parse_statements({"elif", "else", "endif"}, false);
    while (true) {
      const Token& t = next();
      if (t.value == "elif") {
        // elif becomes a nested If in the else branch; all share one endif.
        auto nested = make_stmt(Stmt::Kind::kIf, cur().line);
        nested->expr = parse_tuple(false, false, {}, false);
        nested->body = parse_statements({"elif", "else", "endif"}, false);
        Stmt* inner = nested.get();
        node->else_body.push_back(std::move(nested));
        node = inner;
        continue;
      }
      if (t.value == "else") node->else_body = parse_statements({"endif"}, true);
      break;
    }
    return s;
  }

  StmtPtr parse_set() {
    const int line = next().line;
    ExprPtr target = parse_assign_target(true, false, {}, true);
    if (skip_op("=")) {
      auto s = make_stmt(Stmt::Kind::kSet, line);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {}, false);
      return s;
    }
    auto s = make_stmt(Stmt::Kind::kSetBlock, line);
    s->target = std::move(target);
    if (is_op("|")) s->expr = parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true);
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      s.params.push_back(expect_name());
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else if (!s.defaults.empty()) {
        fail_here("non-default argument follows default argument");
      }
    }
    expect_op(")");
  }

  StmtPtr parse_macro() {
    auto s = make_stmt(Stmt::Kind::kMacro, next().line);
    s->name = expect_name();
    parse_signature(*s);
    const int saved_depth = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved_depth;
    mark_special_names(*s);
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = make_stmt(Stmt::Kind::kCallBlock, next().line);
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::kCall) template_fail(s->line, "expected call");
    const int saved_depth = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endcall"}, true);
    loop_depth_ = saved_depth;
    mark_special_names(*s);
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = make_stmt(Stmt::Kind::kFilterBlock, next().line);
    s->expr = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    return s;
  }

  StmtPtr parse_with() {
    auto s = make_stmt(Stmt::Kind::kWith, next().line);
    while (cur().type != Token::Type::kBlockEnd) {
      if (!s->params.empty()) expect_op(",");
      s->params.push_back(expect_name());
      expect_op("=");
      s->defaults.push_back(parse_expression(true));
    }
    s->body = parse_statements({"endwith"}, true);
    return s;
  }

  StmtPtr parse_print() {
    auto s = make_stmt(Stmt::Kind::kPrint, next().line);
    auto tuple = make(Expr::Kind::kTuple, s->line);
    while (cur().type != Token::Type::kBlockEnd) {
      if (!tuple->items.empty()) expect_op(",");
      tuple->items.push_back(parse_expression(true));
    }
    // `{% print a, b %}` prints each expression in turn.
    auto seq = make_stmt(Stmt::Kind::kScope, s->line);
    for (auto& item : tuple->items) {
      auto p = make_stmt(Stmt::Kind::kPrint, item->line);
      p->expr = std::move(item);
      seq->body.push_back(std::move(p));
    }
    seq->name = "print";
    return seq;
  }

  // Records whether a macro body reads caller / varargs / kwargs (jinja2 then accepts them).
  static void scan_expr(const Expr* e, Stmt& m) {
    if (!e) return;
    if (e->kind == Expr::Kind::kName) {
      if (e->name == "caller") m.uses_caller = true;
      if (e->name == "varargs") m.uses_varargs = true;
      if (e->name == "kwargs") m.uses_kwargs = true;
    }
    scan_expr(e->a.get(), m);
    scan_expr(e->b.get(), m);
    scan_expr(e->c.get(), m);
    scan_expr(e->dyn_args.get(), m);
    scan_expr(e->dyn_kwargs.get(), m);
    for (const auto& i : e->items) scan_expr(i.get(), m);
    for (const auto& i : e->values) scan_expr(i.get(), m);
    for (const auto& kw : e->kwargs) scan_expr(kw.second.get(), m);
  }
  static void scan_body(const Body& body, Stmt& m) {
    for (const auto& s : body) {
      scan_expr(s->expr.get(), m);
      scan_expr(s->cond.get(), m);
      for (const auto& d : s->defaults) scan_expr(d.get(), m);
      scan_body(s->body, m);
      scan_body(s->else_body, m);
    }
  }
  static void mark_special_names(Stmt& m) { scan_body(m.body, m); }

  // ---- expressions ----
  bool is_tuple_end(const std::vector<std::string>& extra_end) const {
    const auto t = cur().type;
    if (t == Token::Type::kVariableEnd || t == Token::Type::kBlockEnd || is_op(")")) return true;
    if (t == Token::Type::kEof) return true;
    return t == Token::Type::kName &&
           std::find(extra_end.begin(), extra_end.end(), cur().value) != extra_end.end();
  }

  ExprPtr parse_assign_target(bool with_tuple, bool name_only,
                              const std::vector<std::string>& extra_end, bool with_namespace) {
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

  void check_assignable(const Expr& e) const {
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

  ExprPtr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
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
      expr1 = std::move(node);
      line = cur().line;
    }
    return expr1;
  }

  ExprPtr binary(Expr::Kind kind, ExprPtr l, ExprPtr r, int line, std::string op = "") {
    auto node = make(kind, line);
    node->a = std::move(l);
    node->b = std::move(r);
    node->name = std::move(op);
    return node;
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr left = parse_and();
    while (skip_name("or")) {
      left = binary(Expr::Kind::kOr, std::move(left), parse_and(), line);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr left = parse_not();
    while (skip_name("and")) {
      left = binary(Expr::Kind::kAnd, std::move(left), parse_not(), line);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto node = make(Expr::Kind::kNot, next().line);
      node->a = parse_not();
      return node;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
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
    return node;
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = next().value;
      left = binary(Expr::Kind::kBinary, std::move(left), parse_concat(), line, op);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto node = make(Expr::Kind::kConcat, line);
    node->items.push_back(std::move(first));
    while (skip_op("~")) node->items.push_back(parse_math2());
    return node;
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = next().value;
      left = binary(Expr::Kind::kBinary, std::move(left), parse_pow(), line, op);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) {
      left = binary(Expr::Kind::kBinary, std::move(left), parse_unary(true), line, "**");
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const int line = cur().line;
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const bool neg = next().value == "-";
      node = make(neg ? Expr::Kind::kNeg : Expr::Kind::kPos, line);
      node->a = parse_unary(false);
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary(bool with_namespace) {
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
      next();
      ExprPtr node = parse_tuple(false, true, {}, true);
      expect_op(")");
      return node;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    fail_here("unexpected '" + describe(t) + "'");
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr,
                      const std::vector<std::string>& extra_end, bool explicit_parentheses,
                      bool with_namespace = false) {
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
    return node;
  }

  ExprPtr parse_list() {
    auto node = make(Expr::Kind::kList, next().line);
    while (!is_op("]")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("]")) break;
      node->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return node;
  }

  ExprPtr parse_dict() {
    auto node = make(Expr::Kind::kDict, next().line);
    while (!is_op("}")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("}")) break;
      node->items.push_back(parse_expression(true));
      expect_op(":");
      node->values.push_back(parse_expression(true));
    }
    expect_op("}");
    return node;
  }

  ExprPtr parse_postfix(ExprPtr node) {
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

  ExprPtr parse_filter_expr(ExprPtr node) {
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

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    const int line = t.line;
    if (t.value == ".") {
      const Token& attr = next();
      if (attr.type == Token::Type::kName) {
        auto g = make(Expr::Kind::kGetattr, line);
        g->a = std::move(node);
        g->name = attr.value;
        return g;
      }
      if (attr.type != Token::Type::kInteger) template_fail(attr.line, "expected name or number");
      auto g = make(Expr::Kind::kGetitem, line);
      g->a = std::move(node);
      g->b = make(Expr::Kind::kConst, attr.line);
      g->b->value = Value::integer(attr.int_value);
      return g;
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
    }
    return g;
  }

  ExprPtr parse_subscribed() {
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
    return slice;
  }

  void parse_call_args(Expr& node) {
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

  ExprPtr parse_call(ExprPtr callee) {
    auto node = make(Expr::Kind::kCall, cur().line);
    node->a = std::move(callee);
    parse_call_args(*node);
    return node;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      const int line = cur().line;
      std::string name = expect_name();
      while (skip_op(".")) name += "." + expect_name();
      auto f = make(Expr::Kind::kFilter, line);
      f->a = std::move(node);
      f->name = name;
      if (is_op("(")) parse_call_args(*f);
      node = std::move(f);
      start_inline = false;
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
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
    if (!negated) return t;
    auto n = make(Expr::Kind::kNot, line);
    n->a = std::move(t);
    return n;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  std::vector<std::string> tag_stack_;
  std::vector<std::vector<std::string>> end_stack_;
  int loop_depth_ = 0;
};

}  // namespace

std::shared_ptr<const Template> parse_template(std::string_view source,
                                               const LexerOptions& options) {
  return Parser(tokenize(source, options)).parse();
}

}  // namespace m2fp4::jinja
