// The vocabulary's byte strings as a trie, laid out in depth-first order, built once per
// tokenizer and shared by every constrained request: a byte-level matcher finds all the tokens it
// allows in one walk that feeds each trie edge once and skips a whole subtree as soon as its
// prefix is refused (most of a 200k vocabulary is pruned after a byte or two).
//
// Special tokens (EOS, role markers) are left out: a structured output never contains them
// (their text would be dropped by detokenization with skip_special_tokens). Tokens whose bytes
// are empty are left out too.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "text/tokenizer/tokenizer.h"

namespace m2fp4 {

class TokenTrie {
 public:
  explicit TokenTrie(const Tokenizer& tokenizer);

  // allowed[id] = 1 for every token id < allowed.size() whose bytes `start` accepts (fed one by
  // one to copies of it); other entries are left as they are. Matcher: copyable, with
  // `bool feed(uint8_t)` (false: refused).
  template <class Matcher>
  void fill_allowed(const Matcher& start, std::vector<uint8_t>& allowed) const;

  // The bytes of `id` and whether it is in the trie (not special, not empty, known).
  bool contains(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < in_trie_.size() && in_trie_[id];
  }
  std::string_view token_bytes(int32_t id) const { return tokenizer_->token_bytes(id); }
  size_t nodes() const { return byte_.size(); }

 private:
  const Tokenizer* tokenizer_;
  // Node i (depth-first order): the byte on its incoming edge, its depth (1 = a child of the
  // root), the index just past its subtree, and the ids ending there (ids_[id_begin_[i],
  // id_begin_[i + 1])).
  std::vector<uint8_t> byte_;
  std::vector<uint16_t> depth_;
  std::vector<uint32_t> subtree_end_;
  std::vector<uint32_t> id_begin_;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> in_trie_;
  int max_depth_ = 0;
};

template <class Matcher>
void TokenTrie::fill_allowed(const Matcher& start, std::vector<uint8_t>& allowed) const {
  // states[d]: the matcher after the first d bytes of the current path.
  std::vector<Matcher> states(static_cast<size_t>(max_depth_) + 1, start);
  const size_t n = byte_.size();
  const size_t limit = allowed.size();
  size_t i = 0;
  while (i < n) {
    const uint16_t d = depth_[i];
    states[d] = states[d - 1];
    if (!states[d].feed(byte_[i])) {
      i = subtree_end_[i];
      continue;
    }
    for (uint32_t k = id_begin_[i]; k < id_begin_[i + 1]; ++k) {
      if (static_cast<size_t>(ids_[k]) < limit) allowed[ids_[k]] = 1;
    }
    ++i;
  }
}

}  // namespace m2fp4
