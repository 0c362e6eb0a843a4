// Statement parser mirroring jinja2.parser.Parser (subparse, parse_statement and the parse_<tag>
// functions), including its error messages for unknown and unclosed tags. Expressions are parsed
// by ExpressionParser (jinja_expr_parser.cc).
#include "text/jinja/jinja_parser.h"

#include <algorithm>

#include "base/error.h"
#include "text/jinja/jinja_expr_parser.h"

namespace m2fp4::jinja {
namespace {

class Parser : public ExpressionParser {
 public:
  explicit Parser(std::vector<Token> tokens) : ExpressionParser(std::move(tokens)) {}

  std::shared_ptr<const Template> parse() {
    auto t = std::make_shared<Template>();
    t->body = subparse({});
    return t;
  }

 private:
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
    std::string msg =
        "Unexpected end of template. Jinja was looking for the following tags: " + looking + ".";
    if (!tag_stack_.empty()) {
      msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    }
    fail_here(msg);
  }

  // jinja2's message for a tag that no open block expects (Parser._fail_ut_eof).
  [[noreturn]] void fail_unknown_tag(const std::string& tag) {
    std::string msg = "Encountered unknown tag '" + tag + "'.";
    if (!end_stack_.empty()) {
      bool expected = false;
      for (const auto& names : end_stack_) {
        expected = expected || std::find(names.begin(), names.end(), tag) != names.end();
      }
      std::string looking;
      for (const auto& n : end_stack_.back()) {
        looking += (looking.empty() ? "'" : " or '") + n + "'";
      }
      msg += expected ? " You probably made a nesting mistake. Jinja is expecting this tag, but "
                        "currently looking for " +
                            looking + "."
                      : " Jinja was looking for the following tags: " + looking + ".";
    }
    if (!tag_stack_.empty()) {
      msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    }
    fail_here(msg);
  }

  Body parse_statements(const std::vector<std::string>& end_names, bool drop_needle) {
    const NestingGuard nesting(*this);
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
      tag_stack_.pop_back();
      fail_unknown_tag(tag);
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
    int elifs = 0;
    while (true) {
      const Token& t = next();
      if (t.value == "elif") {
        // elif becomes a nested If in the else branch; all share one endif. The chain is as
        // deep as it is long, so it counts against the nesting limit.
        if (++elifs > kMaxParseNesting) {
          fail_here(str_cat("more than ", kMaxParseNesting, " elif branches in one if"));
        }
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
