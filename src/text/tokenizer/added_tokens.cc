#include "text/tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "text/tokenizer/unicode.h"

namespace m2fp4 {
namespace {

// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(char32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  return (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

// Rust regex's Unicode \s: the White_Space property.
bool is_space_char(char32_t cp) {
  return u_isUWhiteSpace(static_cast<UChar32>(cp)) != 0;
}

// Start of the character that ends at `end` (text[..end] is valid UTF-8 and non-empty).
size_t previous_char_start(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

bool ends_with_word(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t length = 0;
  return is_word_char(decode_utf8(text, previous_char_start(text, end), length));
}

bool starts_with_word(std::string_view text, size_t start) {
  if (start >= text.size()) return false;
  size_t length = 0;
  return is_word_char(decode_utf8(text, start, length));
}

// Offset where the run of whitespace ending at `end` begins.
size_t whitespace_run_start(std::string_view text, size_t end) {
  while (end > 0) {
    const size_t start = previous_char_start(text, end);
    size_t length = 0;
    if (!is_space_char(decode_utf8(text, start, length))) break;
    end = start;
  }
  return end;
}

// Offset where the run of whitespace starting at `start` ends.
size_t whitespace_run_end(std::string_view text, size_t start) {
  while (start < text.size()) {
    size_t length = 0;
    if (!is_space_char(decode_utf8(text, start, length))) break;
    start += length;
  }
  return start;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<std::string>& patterns,
                                     const std::vector<const AddedToken*>& tokens)
    : tokens_(tokens) {
  std::fill(std::begin(root_children_), std::end(root_children_), -1);
  for (size_t t = 0; t < patterns.size(); ++t) {
    const std::string& pattern = patterns[t];
    if (pattern.empty()) continue;
    auto first = static_cast<uint8_t>(pattern[0]);
    if (root_children_[first] < 0) {
      root_children_[first] = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{-1, -1, -1, first});
    }
    int32_t node = root_children_[first];
    for (size_t k = 1; k < pattern.size(); ++k) {
      const auto byte = static_cast<uint8_t>(pattern[k]);
      int32_t found = child(node, byte);
      if (found < 0) {
        found = static_cast<int32_t>(nodes_.size());
        nodes_.push_back(Node{-1, nodes_[node].first_child, -1, byte});
        nodes_[node].first_child = found;
      }
      node = found;
    }
    nodes_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (int32_t c = nodes_[node].first_child; c >= 0; c = nodes_[c].next_sibling) {
    if (nodes_[c].byte == byte) return c;
  }
  return -1;
}

size_t AddedTokenMatcher::longest_match(std::string_view text, size_t pos, int32_t& token) const {
  int32_t node = root_children_[static_cast<uint8_t>(text[pos])];
  size_t best = 0;
  size_t k = pos + 1;
  while (node >= 0) {
    if (nodes_[node].token >= 0) {
      best = k - pos;
      token = nodes_[node].token;
    }
    if (k >= text.size()) break;
    node = child(node, static_cast<uint8_t>(text[k]));
    ++k;
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>& segments) const {
  segments.clear();
  const size_t n = text.size();
  if (n == 0) {
    segments.push_back({-1, 0, 0});
    return;
  }
  if (tokens_.empty()) {
    segments.push_back({-1, 0, n});
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < n) {
    size_t length = 0;
    int32_t token_index = -1;
    size_t start = pos;
    for (; start < n; ++start) {
      if (root_children_[static_cast<uint8_t>(text[start])] < 0) continue;
      length = longest_match(text, start, token_index);
      if (length > 0) break;
    }
    if (length == 0) break;
    size_t stop = start + length;
    pos = stop;  // the search resumes after the match, whatever is done with it
    const AddedToken& token = *tokens_[token_index];
    if (token.single_word) {
      const bool start_space = start == 0 || !ends_with_word(text, start);
      const bool stop_space = stop == n || !starts_with_word(text, stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(whitespace_run_start(text, start), start_offset);
    if (token.rstrip) stop = whitespace_run_end(text, stop);
    if (start_offset < start) segments.push_back({-1, start_offset, start});
    segments.push_back({token.id, start, stop});
    start_offset = stop;
  }
  if (start_offset != n) segments.push_back({-1, start_offset, n});
}

}  // namespace m2fp4
