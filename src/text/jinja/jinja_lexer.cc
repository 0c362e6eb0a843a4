// The lexer follows jinja2.lexer.Lexer rule by rule: the root rule finds the next `{{`, `{%`,
// `{#` (or a `{% raw %}` block), strips the text before it (`-` sign: all trailing whitespace;
// lstrip_blocks: spaces between the last newline and a block or comment tag), and the tag rules
// match the end tag first (only when brackets are balanced), then whitespace, float, integer,
// name, string and operator tokens.
#include "text/jinja/jinja_lexer.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>

#include "base/error.h"
#include "text/jinja/jinja_value.h"

namespace m2fp4::jinja {

void template_fail(int line, const std::string& message) {
  throw Error(str_cat("template line ", line, ": ", message));
}

namespace {

// Length of the Python `\s*` run at `pos` (Unicode whitespace, decoded from UTF-8).
size_t whitespace_run(std::string_view s, size_t pos) {
  size_t i = pos;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (!is_python_space(b)) break;
      ++i;
      continue;
    }
    const size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (i + len > s.size()) break;
    const std::u32string c = utf8_decode(s.substr(i, len));
    if (c.size() != 1 || !is_python_space(c[0])) break;
    i += len;
  }
  return i - pos;
}

// Python str.rstrip() (Unicode whitespace).
std::string_view rstrip_whitespace(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const std::u32string c = utf8_decode(s.substr(start, end - start));
    if (c.size() != 1 || !is_python_space(c[0])) break;
    end = start;
  }
  return s.substr(0, end);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

// `(\d+_)*\d+` at pos; returns the end or npos.
size_t match_digits(std::string_view s, size_t pos) {
  size_t i = pos;
  if (i >= s.size() || !is_digit(s[i])) return std::string_view::npos;
  while (true) {
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i + 1 < s.size() && s[i] == '_' && is_digit(s[i + 1])) {
      ++i;
      continue;
    }
    return i;
  }
}

// jinja2's float_re; returns the end or npos.
size_t match_float(std::string_view s, size_t pos) {
  if (pos > 0 && s[pos - 1] == '.') return std::string_view::npos;
  const size_t int_end = match_digits(s, pos);
  if (int_end == std::string_view::npos) return std::string_view::npos;
  auto match_exponent = [&](size_t at) -> size_t {
    if (at >= s.size() || (s[at] != 'e' && s[at] != 'E')) return std::string_view::npos;
    size_t i = at + 1;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    return match_digits(s, i);
  };
  size_t frac_end = std::string_view::npos;
  if (int_end < s.size() && s[int_end] == '.') frac_end = match_digits(s, int_end + 1);
  if (frac_end != std::string_view::npos) {
    const size_t exp_end = match_exponent(frac_end);
    return exp_end != std::string_view::npos ? exp_end : frac_end;
  }
  return match_exponent(int_end);
}

// jinja2's integer_re; returns the end or npos.
size_t match_integer(std::string_view s, size_t pos) {
  auto lower = [&](size_t i) { return i < s.size() ? char(std::tolower(s[i])) : '\0'; };
  if (s[pos] == '0' && (lower(pos + 1) == 'b' || lower(pos + 1) == 'o' || lower(pos + 1) == 'x')) {
    const char kind = lower(pos + 1);
    auto ok = [&](char c) {
      c = char(std::tolower(c));
      if (kind == 'b') return c == '0' || c == '1';
      if (kind == 'o') return c >= '0' && c <= '7';
      return is_digit(c) || (c >= 'a' && c <= 'f');
    };
    size_t i = pos + 2;
    size_t end = std::string_view::npos;
    while (true) {
      size_t j = i;
      if (j < s.size() && s[j] == '_') ++j;
      if (j < s.size() && ok(s[j])) {
        i = j + 1;
        end = i;
      } else {
        break;
      }
    }
    if (end != std::string_view::npos) return end;
  }
  if (s[pos] >= '1' && s[pos] <= '9') return match_digits(s, pos);
  if (s[pos] == '0') {
    size_t i = pos + 1;
    while (true) {
      size_t j = i;
      if (j < s.size() && s[j] == '_') ++j;
      if (j < s.size() && s[j] == '0') {
        i = j + 1;
      } else {
        break;
      }
    }
    return i;
  }
  return std::string_view::npos;
}

int64_t parse_integer(std::string text, int line) {
  text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
  int base = 10;
  size_t start = 0;
  if (text.size() > 1 && text[0] == '0') {
    const char k = char(std::tolower(text[1]));
    base = k == 'b' ? 2 : k == 'o' ? 8 : k == 'x' ? 16 : 10;
    if (base != 10) start = 2;
  }
  errno = 0;
  const long long v = std::strtoll(text.c_str() + start, nullptr, base);
  if (errno == ERANGE) template_fail(line, "integer literal " + text + " is too large");
  return v;
}

// Python's unicode-escape decoding of a string literal's body.
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++i];
    auto hex = [&](int digits) {
      char32_t v = 0;
      for (int k = 1; k <= digits; ++k) {
        const char h = i + k < body.size() ? char(std::tolower(body[i + k])) : '\0';
        if (!(is_digit(h) || (h >= 'a' && h <= 'f'))) {
          template_fail(line, "truncated escape sequence in string literal");
        }
        v = v * 16 + char32_t(is_digit(h) ? h - '0' : h - 'a' + 10);
      }
      i += digits;
      if (v > 0x10FFFF) template_fail(line, "illegal Unicode character in string literal");
      utf8_append(out, v);
    };
    switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      case 'N':
        template_fail(line, "\\N{...} escapes are not supported in string literals");
      default:
        if (e >= '0' && e <= '7') {
          char32_t v = char32_t(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            v = v * 8 + char32_t(body[++i] - '0');
          }
          utf8_append(out, v);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

constexpr std::array<const char*, 25> kOperators = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
    "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ","};

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options) : options_(options) {
    // Normalize newlines like jinja2 (\r\n and \r become \n) and drop one trailing newline.
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!options_.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
    utf8_decode(src_);  // rejects invalid UTF-8 up front
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = find_tag(pos);
      if (tag == std::string_view::npos) {
        emit(Token::Type::kData, pos, src_.substr(pos));
        break;
      }
      const char kind = src_[tag + 1];
      size_t after = tag + 2;
      char sign = '\0';
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      std::string_view text = std::string_view(src_).substr(pos, tag - pos);
      if (sign == '-') {
        text = rstrip_whitespace(text);
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            whitespace_run(text, l_pos) == text.size() - l_pos) {
          text = text.substr(0, l_pos);
        }
      }
      if (!text.empty()) emit(Token::Type::kData, pos, std::string(text));
      if (kind == '%') {
        const size_t raw_end = match_raw_begin(after);
        if (raw_end != std::string_view::npos) {
          line_starting = src_[raw_end - 1] == '\n';
          pos = lex_raw(raw_end, line_starting);
          line_starting = src_[pos - 1] == '\n';
          continue;
        }
      }
      if (kind == '#') {
        pos = lex_comment(tag, after);
      } else {
        pos = lex_tag(tag, after, kind == '%');
      }
      line_starting = src_[pos - 1] == '\n';
    }
    tokens_.push_back(Token{Token::Type::kEof, "", line_at(src_.size()), 0, 0});
    return std::move(tokens_);
  }

 private:
  int line_at(size_t pos) {
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_] == '\n') ++line_;
      ++line_pos_;
    }
    return line_;
  }

  void emit(Token::Type type, size_t pos, std::string value) {
    tokens_.push_back(Token{type, std::move(value), line_at(pos), 0, 0});
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string_view::npos;
  }

  // Matches `\s*<word>\s*` then the block end of a raw tag at `pos`; returns the end or npos.
  size_t match_word_tag(size_t pos, std::string_view word, bool allow_plus_end,
                        bool trim_newline) const {
    size_t i = pos + whitespace_run(src_, pos);
    if (src_.compare(i, word.size(), word) != 0) return std::string_view::npos;
    i += word.size();
    i += whitespace_run(src_, i);
    if (allow_plus_end && src_.compare(i, 3, "+%}") == 0) return i + 3;
    if (src_.compare(i, 3, "-%}") == 0) return i + 3 + whitespace_run(src_, i + 3);
    if (src_.compare(i, 2, "%}") == 0) {
      i += 2;
      if (trim_newline && i < src_.size() && src_[i] == '\n') ++i;
      return i;
    }
    return std::string_view::npos;
  }

  size_t match_raw_begin(size_t pos) const { return match_word_tag(pos, "raw", false, false); }

  size_t lex_raw(size_t pos, bool line_starting) {
    for (size_t i = src_.find("{%", pos); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t after = i + 2;
      char sign = '\0';
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      const size_t end = match_word_tag(after, "endraw", true, options_.trim_blocks);
      if (end == std::string_view::npos) continue;
      std::string_view text = std::string_view(src_).substr(pos, i - pos);
      if (sign == '-') {
        text = rstrip_whitespace(text);
      } else if (sign != '+' && options_.lstrip_blocks) {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            whitespace_run(text, l_pos) == text.size() - l_pos) {
          text = text.substr(0, l_pos);
        }
      }
      if (!text.empty()) emit(Token::Type::kData, pos, std::string(text));
      return end;
    }
    template_fail(line_at(pos), "Missing end of raw directive");
  }

  size_t lex_comment(size_t tag, size_t content_start) {
    for (size_t q = src_.find("#}", content_start); q != std::string::npos;
         q = src_.find("#}", q + 1)) {
      if (q > content_start && src_[q - 1] == '-') return q + 2 + whitespace_run(src_, q + 2);
      if (q > content_start && src_[q - 1] == '+') return q + 2;
      size_t end = q + 2;
      if (options_.trim_blocks && end < src_.size() && src_[end] == '\n') ++end;
      return end;
    }
    template_fail(line_at(tag), "Missing end of comment tag");
  }

  // Returns the end of a matched end tag at pos, or npos.
  size_t match_tag_end(size_t pos, bool block) const {
    if (block) {
      if (src_.compare(pos, 3, "+%}") == 0) return pos + 3;
      if (src_.compare(pos, 3, "-%}") == 0) return pos + 3 + whitespace_run(src_, pos + 3);
      if (src_.compare(pos, 2, "%}") == 0) {
        size_t end = pos + 2;
        if (options_.trim_blocks && end < src_.size() && src_[end] == '\n') ++end;
        return end;
      }
      return std::string_view::npos;
    }
    if (src_.compare(pos, 3, "-}}") == 0) return pos + 3 + whitespace_run(src_, pos + 3);
    if (src_.compare(pos, 2, "}}") == 0) return pos + 2;
    return std::string_view::npos;
  }

  size_t lex_tag(size_t tag, size_t pos, bool block) {
    emit(block ? Token::Type::kBlockBegin : Token::Type::kVariableBegin, tag, "");
    std::vector<char> balance;
    while (pos < src_.size()) {
      if (balance.empty()) {
        const size_t end = match_tag_end(pos, block);
        if (end != std::string_view::npos) {
          emit(block ? Token::Type::kBlockEnd : Token::Type::kVariableEnd, pos, "");
          return end;
        }
      }
      const size_t ws = whitespace_run(src_, pos);
      if (ws) {
        pos += ws;
        continue;
      }
      const char c = src_[pos];
      size_t end = is_digit(c) ? match_float(src_, pos) : std::string_view::npos;
      if (end != std::string_view::npos) {
        std::string text = src_.substr(pos, end - pos);
        text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
        Token t{Token::Type::kFloat, text, line_at(pos), 0, std::strtod(text.c_str(), nullptr)};
        tokens_.push_back(std::move(t));
        pos = end;
        continue;
      }
      end = is_digit(c) ? match_integer(src_, pos) : std::string_view::npos;
      if (end != std::string_view::npos) {
        const std::string text = src_.substr(pos, end - pos);
        const int line = line_at(pos);
        tokens_.push_back(Token{Token::Type::kInteger, text, line, parse_integer(text, line), 0});
        pos = end;
        continue;
      }
      if (is_name_start(c)) {
        end = pos;
        while (end < src_.size() && is_name_char(src_[end])) ++end;
        emit(Token::Type::kName, pos, src_.substr(pos, end - pos));
        pos = end;
        continue;
      }
      if (c == '\'' || c == '"') {
        end = pos + 1;
        while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
        if (end >= src_.size()) {
          template_fail(line_at(pos), str_cat("unexpected char ", string_repr(std::string(1, c)),
                                              " at ", utf8_decode(src_.substr(0, pos)).size()));
        }
        const int line = line_at(pos);
        tokens_.push_back(Token{
            Token::Type::kString,
            unescape(std::string_view(src_).substr(pos + 1, end - pos - 1), line), line, 0, 0});
        pos = end + 1;
        continue;
      }
      const char* op = nullptr;
      for (const char* candidate : kOperators) {
        if (src_.compare(pos, std::char_traits<char>::length(candidate), candidate) == 0) {
          op = candidate;
          break;
        }
      }
      if (!op) {
        const auto lead = static_cast<unsigned char>(c);
        const size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        template_fail(line_at(pos), str_cat("unexpected char ", string_repr(src_.substr(pos, len)),
                                            " at ", utf8_decode(src_.substr(0, pos)).size()));
      }
      const std::string o(op);
      if (o == "(" || o == "[" || o == "{") {
        balance.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
      } else if (o == ")" || o == "]" || o == "}") {
        if (balance.empty()) template_fail(line_at(pos), "unexpected '" + o + "'");
        if (balance.back() != o[0]) {
          template_fail(line_at(pos), "unexpected '" + o + "', expected '" +
                                          std::string(1, balance.back()) + "'");
        }
        balance.pop_back();
      }
      emit(Token::Type::kOperator, pos, o);
      pos += o.size();
    }
    template_fail(line_at(pos), std::string("unexpected end of template, expected '") +
                                    (block ? "%}" : "}}") + "'");
  }

  LexerOptions options_;
  std::string src_;
  std::vector<Token> tokens_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace m2fp4::jinja
