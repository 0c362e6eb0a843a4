// The `normalizer` of a tokenizer.json: a flat list of text rewrites applied in order, with the
// semantics of Hugging Face tokenizers. Supported: NFC, NFD, NFKC, NFKD (ICU Normalizer2),
// Lowercase, Replace (string or regex pattern), Prepend, Strip, StripAccents and Sequence of
// these. Anything else is refused by name when loading.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/tokenizer/unicode_regex.h"

namespace m2fp4 {

class Normalizer {
 public:
  enum class Kind {
    kNfc,
    kNfd,
    kNfkc,
    kNfkd,
    kLowercase,
    kReplace,
    kPrepend,
    kStrip,
    kStripAccents
  };

  struct Step {
    Kind kind;
    std::string content;                  // Replace: replacement; Prepend: prefix
    std::shared_ptr<UnicodeRegex> regex;  // Replace: what to replace
    bool strip_left = false;              // Strip
    bool strip_right = false;
  };

  Normalizer() = default;

  // From the tokenizer.json `normalizer` value (null gives the identity). Throws m2fp4::Error
  // naming any unsupported normalizer type.
  static Normalizer from_json(const nlohmann::json& spec);

  bool empty() const { return steps_.empty(); }
  const std::vector<Step>& steps() const { return steps_; }

  // Returns the normalized form of `text` (valid UTF-8).
  std::string normalize(std::string_view text) const;

 private:
  void add_from_json(const nlohmann::json& spec);

  std::vector<Step> steps_;
};

}  // namespace m2fp4
