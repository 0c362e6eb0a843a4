#include "text/tokenizer/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <utility>

#include "base/error.h"
#include "text/tokenizer/unicode.h"
#include "text/tokenizer/unicode_tables.h"

namespace m2fp4 {
namespace {

// Oniguruma's \s: category Z, tab to carriage return, and U+0085 (PCRE2's own \s lacks U+0085
// and takes U+180E).
constexpr char kSpaceClassBody[] = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";
constexpr char kHexClassBody[] = "0-9a-fA-F";

// Class body for general category `name` as Oniguruma sees it: PCRE2's \p{name} plus what
// Unicode 15-16 added (unless `with_new` is false). Empty if `name` is not a general category
// (left to PCRE2 as written).
std::string category_class_body(std::string_view name, bool with_new) {
  const char* extra = unicode_category_extra_ranges(name);
  if (extra == nullptr) return {};
  return str_cat("\\p{", name, "}", with_new ? extra : "");
}

// Code points assigned after Unicode 14 (all the category additions), sorted and merged.
std::vector<std::pair<char32_t, char32_t>> parse_new_code_points() {
  std::vector<std::pair<char32_t, char32_t>> ranges;
  for (const char* category : {"L", "M", "N", "P", "S", "Z", "Mc"}) {
    const std::string_view text = unicode_category_extra_ranges(category);
    size_t pos = 0;
    const auto read_code_point = [&]() -> char32_t {
      // "\x{HEX}"
      const size_t open = text.find('{', pos);
      const size_t close = text.find('}', open);
      pos = close + 1;
      return static_cast<char32_t>(
          std::stoul(std::string(text.substr(open + 1, close - open - 1)), nullptr, 16));
    };
    while (pos < text.size()) {
      const char32_t first = read_code_point();
      char32_t last = first;
      if (pos < text.size() && text[pos] == '-') {
        ++pos;
        last = read_code_point();
      }
      ranges.emplace_back(first, last);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<char32_t, char32_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

// Whether `text` (valid UTF-8) has a code point assigned after Unicode 14. All of them are
// at least U+0800, so only 3- and 4-byte sequences (lead byte >= 0xE0) need a look.
bool has_new_code_points(std::string_view text) {
  static const std::vector<std::pair<char32_t, char32_t>> ranges = parse_new_code_points();
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t i = 0; i < text.size(); ++i) {
    if (bytes[i] < 0xE0) continue;
    size_t length = 0;
    const char32_t cp = decode_utf8(text, i, length);
    const auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                                     [](char32_t c, const auto& r) { return c < r.first; });
    if (it != ranges.begin() && cp <= (it - 1)->second) return true;
    i += length - 1;
  }
  return false;
}

// Compiles a translated pattern (UTF, UCP, multiline, LF newlines) and JIT-compiles it when the
// platform can (else pcre2_match interprets).
pcre2_code* compile(const std::string& translated, std::string_view original) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_compile_context* ccontext = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(ccontext, PCRE2_NEWLINE_LF);
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    // \C matches one byte even in UTF mode: a match could end inside a character
                    // and a lookbehind read before the subject. Oniguruma has no \C anyway.
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C, &error_code,
                    &error_offset, ccontext);
  pcre2_compile_context_free(ccontext);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    fail("regex does not compile (", reinterpret_cast<const char*>(message), " at offset ",
         error_offset, "): ", original);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return code;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Per-thread PCRE2 match state: whole-match ovector, and a JIT stack large enough for long
// whitespace runs under `\s+(?!\S)`.
struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  ThreadMatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (data == nullptr || context == nullptr || jit_stack == nullptr) {
      fail("PCRE2: out of memory creating match state");
    }
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;
};

ThreadMatchState& thread_match_state() {
  thread_local ThreadMatchState state;
  return state;
}

}  // namespace

std::string UnicodeRegex::translate_oniguruma(std::string_view pattern, bool with_new) {
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;
  size_t class_start = 0;  // offset in `pattern` of the '[' that opened the current class
  // Appends a class body: bare inside a class, else wrapped ([body] or [^body]).
  const auto add_class = [&](const std::string& body, bool negated, char escape) {
    if (in_class) {
      M2_CHECK(!negated, "regex construct \\", escape,
               " inside a character class is not supported: ", pattern);
      out += body;
    } else {
      out += str_cat(negated ? "[^" : "[", body, "]");
    }
  };
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      M2_CHECK(i + 1 < pattern.size(), "regex ends with a lone backslash: ", pattern);
      const char e = pattern[i + 1];
      ++i;
      switch (e) {
        case 's':
        case 'S':
          add_class(kSpaceClassBody, e == 'S', e);
          continue;
        case 'w':
        case 'W':
          add_class(oniguruma_word_class_ranges(), e == 'W', e);
          continue;
        case 'd':
        case 'D':
          add_class(category_class_body("Nd", with_new), e == 'D', e);
          continue;
        case 'h':
        case 'H':
          add_class(kHexClassBody, e == 'H', e);
          continue;
        case 'p':
        case 'P': {
          // \p{X}, \p{^X}, \P{X}: general categories get Oniguruma's newer Unicode data.
          const size_t close = pattern.find('}', i + 1);
          if (i + 1 < pattern.size() && pattern[i + 1] == '{' && close != std::string_view::npos) {
            std::string_view name = pattern.substr(i + 2, close - i - 2);
            bool negated = e == 'P';
            if (!name.empty() && name[0] == '^') {
              negated = !negated;
              name.remove_prefix(1);
            }
            const std::string body = category_class_body(name, with_new);
            if (!body.empty() && !(negated && in_class)) {
              add_class(body, negated, e);
              i = close;
              continue;
            }
          }
          out += '\\';
          out += e;
          continue;
        }
        case 'u': {
          // Oniguruma's \uHHHH; PCRE2 spells it \x{HHHH}.
          bool hex4 = i + 4 < pattern.size();
          for (size_t k = 1; hex4 && k <= 4; ++k) hex4 = is_hex(pattern[i + k]);
          M2_CHECK(hex4, "regex escape \\u must be followed by four hex digits: ", pattern);
          out += str_cat("\\x{", pattern.substr(i + 1, 4), "}");
          i += 4;
          continue;
        }
        default: {
          out += '\\';
          // Copy the escaped character whole (it may be multi-byte UTF-8).
          const size_t length = utf8_sequence_length(static_cast<uint8_t>(e));
          out.append(pattern.substr(i, length));
          i += length - 1;
          continue;
        }
      }
    }
    if (in_class) {
      if (c == ']' && i > class_start + 1 &&
          !(i == class_start + 2 && pattern[class_start + 1] == '^')) {
        in_class = false;
      } else if (c == '[') {
        // Only a POSIX class such as [:alpha:] may open inside a class; copy it whole.
        const size_t close = pattern.find(":]", i + 2);
        M2_CHECK(i + 1 < pattern.size() && pattern[i + 1] == ':' && close != std::string_view::npos,
                 "nested character classes are not supported: ", pattern);
        out.append(pattern.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      } else if (c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&') {
        fail("character class intersection (&&) is not supported: ", pattern);
      }
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      class_start = i;
    }
    out += c;
  }
  M2_CHECK(!in_class, "regex has an unterminated character class: ", pattern);
  return out;
}

std::string UnicodeRegex::escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto b = static_cast<uint8_t>(c);
    const bool plain = b >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                       (c >= 'A' && c <= 'Z') || c == '_';
    if (!plain) out += '\\';
    out += c;
  }
  return out;
}

UnicodeRegex::UnicodeRegex(std::string_view pattern) : pattern_(pattern) {
  const std::string translated = translate_oniguruma(pattern, true);
  code_ = compile(translated, pattern);
  // Classes with the Unicode 15-16 additions match more slowly; text without such code points
  // (nearly all text) gets the same matches from the pattern without them.
  const std::string plain = translate_oniguruma(pattern, false);
  if (plain != translated) plain_code_ = compile(plain, pattern);
}

UnicodeRegex::~UnicodeRegex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
  pcre2_code_free(static_cast<pcre2_code*>(plain_code_));
}

UnicodeRegex::UnicodeRegex(UnicodeRegex&& other) noexcept
    : pattern_(std::move(other.pattern_)), code_(other.code_), plain_code_(other.plain_code_) {
  other.code_ = nullptr;
  other.plain_code_ = nullptr;
}

UnicodeRegex& UnicodeRegex::operator=(UnicodeRegex&& other) noexcept {
  if (this != &other) {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
    pcre2_code_free(static_cast<pcre2_code*>(plain_code_));
    pattern_ = std::move(other.pattern_);
    code_ = other.code_;
    plain_code_ = other.plain_code_;
    other.code_ = nullptr;
    other.plain_code_ = nullptr;
  }
  return *this;
}

void UnicodeRegex::find_all(std::string_view text, std::vector<RegexMatch>& matches) const {
  auto* code = static_cast<pcre2_code*>(
      plain_code_ != nullptr && !has_new_code_points(text) ? plain_code_ : code_);
  ThreadMatchState& state = thread_match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t search_from = 0;
  bool have_previous = false;
  size_t previous_end = 0;
  while (search_from <= n) {
    // pcre2_match uses the JIT code when there is some; input was validated by the caller.
    const int rc =
        pcre2_match(code, subject, n, search_from, PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      fail("regex match failed (", reinterpret_cast<const char*>(message), "): ", pattern_);
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t start = ovector[0];
    const size_t end = ovector[1];
    if (start == end && have_previous && previous_end == end) {
      // Empty match where the last one ended: step over one character and search again.
      search_from += search_from < n ? utf8_sequence_length(subject[search_from]) : 1;
      continue;
    }
    search_from = end;
    have_previous = true;
    previous_end = end;
    matches.push_back({start, end});
  }
}

}  // namespace m2fp4
