// Jinja expression parser: the token stream and jinja2's expression grammar
// (jinja2.parser.Parser.parse_expression and below), shared by the statement parser in
// jinja_parser.cc. Internal to the renderer.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/jinja/jinja_ast.h"
#include "text/jinja/jinja_lexer.h"

namespace m2fp4::jinja {

class ExpressionParser {
 public:
  explicit ExpressionParser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

 protected:
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
      case Token::Type::kData:
        return "template data";
      case Token::Type::kVariableBegin:
        return "begin of print statement";
      case Token::Type::kVariableEnd:
        return "end of print statement";
      case Token::Type::kBlockBegin:
        return "begin of statement block";
      case Token::Type::kBlockEnd:
        return "end of statement block";
      case Token::Type::kEof:
        return "end of template";
      case Token::Type::kString:
        return "string";
      default:
        return t.value;
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

  // Counts parser recursion (parentheses, unary operators, nested blocks) against
  // kMaxParseNesting, so deeply nested input is a syntax error instead of a stack overflow.
  class NestingGuard {
   public:
    explicit NestingGuard(ExpressionParser& parser) : parser_(parser) {
      if (++parser_.nesting_ > kMaxParseNesting) {
        parser_.fail_here(str_cat("the template nests more than ", kMaxParseNesting,
                                  " levels deep (blocks, parentheses or operators)"));
      }
    }
    ~NestingGuard() { --parser_.nesting_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;

   private:
    ExpressionParser& parser_;
  };

  // Sets e's tree height from its direct children and checks it against kMaxParseNesting
  // (operator chains like 1+1+...+1 grow the tree without recursing in the parser).
  ExprPtr sealed(ExprPtr e) const;

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

  // ---- expressions (jinja_expr_parser.cc) ----
  bool is_tuple_end(const std::vector<std::string>& extra_end) const;
  ExprPtr parse_assign_target(bool with_tuple, bool name_only,
                              const std::vector<std::string>& extra_end, bool with_namespace);
  ExprPtr parse_tuple(bool simplified, bool with_condexpr,
                      const std::vector<std::string>& extra_end, bool explicit_parentheses,
                      bool with_namespace = false);
  void check_assignable(const Expr& e) const;
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr parse_condexpr();
  ExprPtr binary(Expr::Kind kind, ExprPtr l, ExprPtr r, int line, std::string op = "");
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary(bool with_namespace);
  ExprPtr parse_list();
  ExprPtr parse_dict();
  ExprPtr parse_postfix(ExprPtr node);
  ExprPtr parse_filter_expr(ExprPtr node);
  ExprPtr parse_subscript(ExprPtr node);
  ExprPtr parse_subscribed();
  void parse_call_args(Expr& node);
  ExprPtr parse_call(ExprPtr callee);
  ExprPtr parse_filter(ExprPtr node, bool start_inline);
  ExprPtr parse_test(ExprPtr node);

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace m2fp4::jinja
