// The `pre_tokenizer` of a tokenizer.json: splits normalized text into the pieces ("words") the
// model encodes one by one, with Hugging Face tokenizers' semantics. Supported: Split (regex or
// string pattern; behaviours Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous;
// invert), ByteLevel (add_prefix_space, use_regex with the GPT-2 regex; trim_offsets only
// concerns offsets), Digits and Sequence of these. Anything else is refused by name at load.
//
// When ByteLevel is the last step (the usual layout), its byte -> character mapping is left to
// the model (see `ends_with_byte_level`): pieces come out as raw UTF-8 and the BPE model maps
// them on a cache miss only.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/tokenizer/unicode_regex.h"

namespace m2fp4 {

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Receives the pieces; a piece's bytes are only valid during the call.
class PieceSink {
 public:
  virtual ~PieceSink() = default;
  virtual void piece(std::string_view text) = 0;
};

// Scratch buffers for one pre-tokenization at a time (one per thread); reused across calls.
struct PreTokenizerScratch {
  std::vector<std::vector<RegexMatch>> matches;  // per step
  std::vector<std::vector<RegexMatch>> splits;   // per step
  std::vector<std::string> text;                 // per step
};

class PreTokenizer {
 public:
  enum class Kind { kSplit, kByteLevel, kDigits };

  struct Step {
    Kind kind = Kind::kSplit;
    std::shared_ptr<UnicodeRegex> regex;  // Split, and ByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;   // ByteLevel
    bool individual_digits = false;  // Digits
  };

  PreTokenizer() = default;

  // From the tokenizer.json `pre_tokenizer` value (null: the text is one piece). Throws
  // m2fp4::Error naming any unsupported pre-tokenizer type or behaviour.
  static PreTokenizer from_json(const nlohmann::json& spec);

  // True if the last step is ByteLevel: pieces are emitted before its byte mapping.
  bool ends_with_byte_level() const { return ends_with_byte_level_; }
  const std::vector<Step>& steps() const { return steps_; }

  // Splits `text` (valid UTF-8) and hands each non-empty piece to `sink`, in order.
  void run(std::string_view text, PreTokenizerScratch& scratch, PieceSink& sink) const;

  // The regex ByteLevel uses when use_regex is true (GPT-2's).
  static const char* gpt2_regex();

 private:
  void add_from_json(const nlohmann::json& spec);
  void run_step(size_t index, std::string_view text, PreTokenizerScratch& scratch,
                PieceSink& sink) const;

  std::vector<Step> steps_;
  bool ends_with_byte_level_ = false;
};

// Applies `behavior` (and `invert`) to the matches of a pattern over a text of `length` bytes,
// as Hugging Face's NormalizedString::split does: writes the pieces to keep, empty ones included.
void split_by_matches(const std::vector<RegexMatch>& matches, size_t length, SplitBehavior behavior,
                      bool invert, std::vector<RegexMatch>& pieces);

}  // namespace m2fp4
