// Regular expressions for tokenizer.json patterns, on PCRE2 (UTF + UCP, JIT compiled), matching
// the way Hugging Face tokenizers runs them on Oniguruma (Ruby syntax):
// - escapes whose meaning differs are rewritten before compiling: Oniguruma's \s is category Z
//   plus \t-\r and U+0085, its \w is Alphabetic/marks/digits/connectors, its \h a hex digit;
// - general categories (\p{L}, \p{N}, ...) are Unicode 16 in the Oniguruma that Hugging Face
//   ships but Unicode 14 in Debian 12's PCRE2: the code points added since are appended to the
//   class (unicode_tables.cc; not for a negated category inside a class, which stays as
//   PCRE2 knows it);
// - ^ and $ are line anchors (Ruby), so the pattern is compiled multiline;
// - find_all walks matches like onig's find_iter: an empty match right where the previous match
//   ended is skipped by advancing one character.
// Constructs PCRE2 cannot express the same way (class intersection `&&`, \S \W \D \H inside a
// class) are refused with m2fp4::Error.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2fp4 {

struct RegexMatch {
  size_t start;
  size_t end;
};

class UnicodeRegex {
 public:
  // Compiles `pattern` (Oniguruma syntax as tokenizer.json writes it). Throws m2fp4::Error with
  // PCRE2's message and the offending offset if it does not compile.
  explicit UnicodeRegex(std::string_view pattern);
  ~UnicodeRegex();
  UnicodeRegex(UnicodeRegex&& other) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&& other) noexcept;
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  // Appends every match in `text` (valid UTF-8) to `matches`, in order. Thread-safe.
  void find_all(std::string_view text, std::vector<RegexMatch>& matches) const;

  const std::string& pattern() const { return pattern_; }

  // A regex that matches `literal` exactly (for Split / Replace patterns given as strings).
  static std::string escape(std::string_view literal);

  // The Oniguruma -> PCRE2 rewrite described above (exposed for tests); with_new = false leaves
  // out the Unicode 15-16 additions.
  static std::string translate_oniguruma(std::string_view pattern, bool with_new = true);

 private:
  std::string pattern_;
  void* code_ = nullptr;        // pcre2_code_8*
  void* plain_code_ = nullptr;  // the same without Unicode 15-16 additions, if they matter
};

}  // namespace m2fp4
