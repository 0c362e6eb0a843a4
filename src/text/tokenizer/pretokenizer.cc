#include "text/tokenizer/pretokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail("tokenizer.json: unsupported Split behavior '", name, "'");
}

// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t cp) {
  return (U_GET_GC_MASK(static_cast<UChar32>(cp)) & (U_GC_ND_MASK | U_GC_NL_MASK | U_GC_NO_MASK)) !=
         0;
}

void find_numeric_chars(std::string_view text, std::vector<RegexMatch>& matches) {
  size_t pos = 0;
  while (pos < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos]);
    if (b < 0x80) {
      if (b >= '0' && b <= '9') matches.push_back({pos, pos + 1});
      ++pos;
      continue;
    }
    size_t length = 0;
    const char32_t cp = decode_utf8(text, pos, length);
    if (is_numeric(cp)) matches.push_back({pos, pos + length});
    pos += length;
  }
}

struct Segment {
  size_t start;
  size_t end;
  bool flag;  // is_match before the behaviour is applied, "remove" after
};

}  // namespace

const char* PreTokenizer::gpt2_regex() {
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}

void split_by_matches(const std::vector<RegexMatch>& matches, size_t length, SplitBehavior behavior,
                      bool invert, std::vector<RegexMatch>& pieces) {
  pieces.clear();
  // The pattern's view of the text: matches and the gaps between them, in order.
  thread_local std::vector<Segment> segments;
  segments.clear();
  if (length == 0) {
    segments.push_back({0, 0, false});
  } else {
    size_t previous = 0;
    for (const RegexMatch& m : matches) {
      if (previous != m.start) segments.push_back({previous, m.start, false});
      segments.push_back({m.start, m.end, true});
      previous = m.end;
    }
    if (previous != length) segments.push_back({previous, length, false});
  }
  if (invert) {
    for (Segment& s : segments) s.flag = !s.flag;
  }
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Segment& s : segments) pieces.push_back({s.start, s.end});
      return;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.flag) pieces.push_back({s.start, s.end});
      }
      return;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : segments) {
        if (s.flag == previous_match && !pieces.empty()) {
          pieces.back().end = s.end;
        } else {
          pieces.push_back({s.start, s.end});
        }
        previous_match = s.flag;
      }
      return;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : segments) {
        if (s.flag && !previous_match && !pieces.empty()) {
          pieces.back().end = s.end;
        } else {
          pieces.push_back({s.start, s.end});
        }
        previous_match = s.flag;
      }
      return;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (size_t k = segments.size(); k-- > 0;) {
        const Segment& s = segments[k];
        if (s.flag && !previous_match && !pieces.empty()) {
          pieces.back().start = s.start;
        } else {
          pieces.push_back({s.start, s.end});
        }
        previous_match = s.flag;
      }
      std::reverse(pieces.begin(), pieces.end());
      return;
    }
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec) {
  PreTokenizer pre;
  if (!spec.is_null()) pre.add_from_json(spec);
  pre.ends_with_byte_level_ = !pre.steps_.empty() && pre.steps_.back().kind == Kind::kByteLevel;
  return pre;
}

void PreTokenizer::add_from_json(const nlohmann::json& spec) {
  M2_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
           "tokenizer.json: a pre_tokenizer has no type: ", spec.dump().substr(0, 200));
  const std::string type = spec["type"].get<std::string>();
  Step step;
  if (type == "Sequence") {
    M2_CHECK(spec.contains("pretokenizers") && spec["pretokenizers"].is_array(),
             "tokenizer.json: Sequence pre_tokenizer without a pretokenizers list");
    for (const auto& child : spec["pretokenizers"]) add_from_json(child);
    return;
  } else if (type == "Split") {
    step.kind = Kind::kSplit;
    M2_CHECK(spec.contains("pattern") && spec["pattern"].is_object(),
             "tokenizer.json: Split pre_tokenizer without a pattern");
    const auto& pattern = spec["pattern"];
    if (pattern.contains("Regex")) {
      step.regex = std::make_shared<UnicodeRegex>(pattern["Regex"].get<std::string>());
    } else if (pattern.contains("String")) {
      step.regex = std::make_shared<UnicodeRegex>(
          UnicodeRegex::escape(pattern["String"].get<std::string>()));
    } else {
      fail("tokenizer.json: Split pattern must be String or Regex");
    }
    M2_CHECK(spec.contains("behavior") && spec["behavior"].is_string(),
             "tokenizer.json: Split pre_tokenizer without a behavior");
    step.behavior = parse_behavior(spec["behavior"].get<std::string>());
    step.invert = spec.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    step.add_prefix_space = spec.value("add_prefix_space", true);
    if (spec.value("use_regex", true)) step.regex = std::make_shared<UnicodeRegex>(gpt2_regex());
  } else if (type == "Digits") {
    step.kind = Kind::kDigits;
    step.individual_digits = spec.value("individual_digits", false);
  } else {
    fail("tokenizer.json: unsupported pre_tokenizer type '", type, "'");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::run(std::string_view text, PreTokenizerScratch& scratch, PieceSink& sink) const {
  if (scratch.matches.size() < steps_.size()) {
    scratch.matches.resize(steps_.size());
    scratch.splits.resize(steps_.size());
  }
  if (scratch.text.size() < 2 * steps_.size()) scratch.text.resize(2 * steps_.size());
  run_step(0, text, scratch, sink);
}

void PreTokenizer::run_step(size_t index, std::string_view text, PreTokenizerScratch& scratch,
                            PieceSink& sink) const {
  if (text.empty()) return;  // Hugging Face drops empty splits
  if (index == steps_.size()) {
    sink.piece(text);
    return;
  }
  const Step& step = steps_[index];
  std::vector<RegexMatch>& matches = scratch.matches[index];
  std::vector<RegexMatch>& pieces = scratch.splits[index];
  matches.clear();
  switch (step.kind) {
    case Kind::kSplit:
      step.regex->find_all(text, matches);
      split_by_matches(matches, text.size(), step.behavior, step.invert, pieces);
      break;
    case Kind::kDigits:
      find_numeric_chars(text, matches);
      split_by_matches(
          matches, text.size(),
          step.individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false,
          pieces);
      break;
    case Kind::kByteLevel: {
      if (step.add_prefix_space && text.front() != ' ') {
        std::string& prefixed = scratch.text[2 * index];
        prefixed.assign(1, ' ');
        prefixed.append(text);
        text = prefixed;
      }
      if (step.regex != nullptr) {
        step.regex->find_all(text, matches);
        split_by_matches(matches, text.size(), SplitBehavior::kIsolated, false, pieces);
      } else {
        pieces.assign(1, RegexMatch{0, text.size()});
      }
      const bool last = index + 1 == steps_.size();
      std::string& mapped = scratch.text[2 * index + 1];
      for (const RegexMatch& p : pieces) {
        if (p.start == p.end) continue;
        const std::string_view piece = text.substr(p.start, p.end - p.start);
        if (last) {
          sink.piece(piece);  // the model applies the byte mapping (ends_with_byte_level)
        } else {
          mapped.clear();
          append_byte_level(piece, mapped);
          run_step(index + 1, mapped, scratch, sink);
        }
      }
      return;
    }
  }
  for (const RegexMatch& p : pieces) {
    if (p.start != p.end) run_step(index + 1, text.substr(p.start, p.end - p.start), scratch, sink);
  }
}

}  // namespace m2fp4
