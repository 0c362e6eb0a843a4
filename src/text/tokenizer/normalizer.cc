#include "text/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uniset.h>

#include <mutex>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/unicode.h"
#include "text/tokenizer/unicode_tables.h"

namespace m2fp4 {
namespace {

// Hugging Face normalizes with the Rust crate unicode-normalization-alignments, whose tables are
// Unicode 9.0: characters assigned later have no decomposition and combining class 0. ICU
// reproduces that with a normalizer filtered to the characters of Unicode 9.0.
constexpr const char* kNormalizationUnicodeSet = "[:age=9.0:]";

const icu::UnicodeSet& normalization_characters() {
  static const icu::UnicodeSet* set = [] {
    UErrorCode status = U_ZERO_ERROR;
    auto* s = new icu::UnicodeSet(icu::UnicodeString(kNormalizationUnicodeSet, -1, US_INV), status);
    M2_CHECK(U_SUCCESS(status), "ICU: cannot build the Unicode 9.0 set: ", u_errorName(status));
    s->freeze();
    return s;
  }();
  return *set;
}

const icu::Normalizer2& icu_normalizer(Normalizer::Kind kind) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* base = nullptr;
  switch (kind) {
    case Normalizer::Kind::kNfc:
      base = icu::Normalizer2::getNFCInstance(status);
      break;
    case Normalizer::Kind::kNfd:
      base = icu::Normalizer2::getNFDInstance(status);
      break;
    case Normalizer::Kind::kNfkc:
      base = icu::Normalizer2::getNFKCInstance(status);
      break;
    case Normalizer::Kind::kNfkd:
      base = icu::Normalizer2::getNFKDInstance(status);
      break;
    default:
      break;
  }
  M2_CHECK(base != nullptr && U_SUCCESS(status),
           "ICU normalizer unavailable: ", u_errorName(status));
  // One filtered instance per form, built once (the base instances are ICU singletons).
  static const icu::FilteredNormalizer2* filtered[4] = {};
  static std::once_flag once[4];
  const int index = static_cast<int>(kind);
  std::call_once(once[index], [&] {
    filtered[index] = new icu::FilteredNormalizer2(*base, normalization_characters());
  });
  return *filtered[index];
}

std::string unicode_normalize(Normalizer::Kind kind, std::string_view text) {
  const icu::Normalizer2& normalizer = icu_normalizer(kind);
  UErrorCode status = U_ZERO_ERROR;
  const icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
  if (normalizer.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  icu::StringByteSink<std::string> sink(&out);
  normalizer.normalizeUTF8(0, piece, sink, nullptr, status);
  M2_CHECK(U_SUCCESS(status), "Unicode normalization failed: ", u_errorName(status));
  return out;
}

// Rust's char::to_lowercase, character by character (no context such as final sigma): the
// simple lowercase mapping, except U+0130 whose full mapping is two characters, and with the
// mappings of Unicode versions newer than ICU's from the generated table.
std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      const char c = text[pos++];
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
      continue;
    }
    size_t length = 0;
    const char32_t cp = decode_utf8(text, pos, length);
    pos += length;
    if (cp == 0x130) {
      out += "i\xCC\x87";
    } else if (const char32_t newer = hf_lowercase_extra(cp); newer != 0) {
      append_utf8(out, newer);
    } else {
      append_utf8(out, static_cast<char32_t>(u_tolower(static_cast<UChar32>(cp))));
    }
  }
  return out;
}

bool is_white_space(char32_t cp) {
  return u_isUWhiteSpace(static_cast<UChar32>(cp)) != 0;
}

std::string strip(std::string_view text, bool left, bool right) {
  size_t begin = 0;
  size_t end = text.size();
  if (left) {
    while (begin < end) {
      size_t length = 0;
      if (!is_white_space(decode_utf8(text, begin, length))) break;
      begin += length;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      size_t length = 0;
      if (!is_white_space(decode_utf8(text, start, length))) break;
      end = start;
    }
  }
  return std::string(text.substr(begin, end - begin));
}

std::string strip_accents(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    const char32_t cp = decode_utf8(text, pos, length);
    if (!is_hf_combining_mark(cp)) {
      out.append(text.substr(pos, length));
    }
    pos += length;
  }
  return out;
}

std::string replace_all(const UnicodeRegex& regex, const std::string& content,
                        std::string_view text) {
  std::vector<RegexMatch> matches;
  regex.find_all(text, matches);
  if (matches.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for (const RegexMatch& m : matches) {
    out.append(text.substr(last, m.start - last));
    out += content;
    last = m.end;
  }
  out.append(text.substr(last));
  return out;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& spec) {
  Normalizer normalizer;
  if (!spec.is_null()) normalizer.add_from_json(spec);
  return normalizer;
}

void Normalizer::add_from_json(const nlohmann::json& spec) {
  M2_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
           "tokenizer.json: a normalizer has no type: ", spec.dump().substr(0, 200));
  const std::string type = spec["type"].get<std::string>();
  Step step;
  if (type == "Sequence") {
    M2_CHECK(spec.contains("normalizers") && spec["normalizers"].is_array(),
             "tokenizer.json: Sequence normalizer without a normalizers list");
    for (const auto& child : spec["normalizers"]) add_from_json(child);
    return;
  } else if (type == "NFC") {
    step.kind = Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = Kind::kLowercase;
  } else if (type == "StripAccents") {
    step.kind = Kind::kStripAccents;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.strip_left = spec.value("strip_left", false);
    step.strip_right = spec.value("strip_right", false);
  } else if (type == "Prepend") {
    step.kind = Kind::kPrepend;
    M2_CHECK(spec.contains("prepend") && spec["prepend"].is_string(),
             "tokenizer.json: Prepend normalizer without a prepend string");
    step.content = spec["prepend"].get<std::string>();
  } else if (type == "Replace") {
    step.kind = Kind::kReplace;
    M2_CHECK(spec.contains("pattern") && spec["pattern"].is_object() && spec.contains("content"),
             "tokenizer.json: Replace normalizer needs pattern and content");
    const auto& pattern = spec["pattern"];
    if (pattern.contains("String")) {
      step.regex = std::make_shared<UnicodeRegex>(
          UnicodeRegex::escape(pattern["String"].get<std::string>()));
    } else if (pattern.contains("Regex")) {
      step.regex = std::make_shared<UnicodeRegex>(pattern["Regex"].get<std::string>());
    } else {
      fail("tokenizer.json: Replace normalizer pattern must be String or Regex");
    }
    step.content = spec["content"].get<std::string>();
  } else {
    fail("tokenizer.json: unsupported normalizer type '", type, "'");
  }
  steps_.push_back(std::move(step));
}

std::string Normalizer::normalize(std::string_view text) const {
  std::string current(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kNfc:
      case Kind::kNfd:
      case Kind::kNfkc:
      case Kind::kNfkd:
        current = unicode_normalize(step.kind, current);
        break;
      case Kind::kLowercase:
        current = lowercase(current);
        break;
      case Kind::kReplace:
        current = replace_all(*step.regex, step.content, current);
        break;
      case Kind::kPrepend:
        if (!current.empty()) current = step.content + current;
        break;
      case Kind::kStrip:
        current = strip(current, step.strip_left, step.strip_right);
        break;
      case Kind::kStripAccents:
        current = strip_accents(current);
        break;
    }
  }
  return current;
}

}  // namespace m2fp4
