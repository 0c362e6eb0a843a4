#include "text/constraints/token_trie.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/error.h"

namespace m2fp4 {

TokenTrie::TokenTrie(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {
  const int32_t vocab = tokenizer.vocab_size();
  in_trie_.assign(static_cast<size_t>(vocab), 0);
  std::vector<std::pair<std::string_view, int32_t>> tokens;
  tokens.reserve(static_cast<size_t>(vocab));
  for (int32_t id = 0; id < vocab; ++id) {
    if (!tokenizer.has_id(id) || tokenizer.is_special(id)) continue;
    const std::string_view bytes = tokenizer.token_bytes(id);
    if (bytes.empty()) continue;
    M2_CHECK(bytes.size() <= std::numeric_limits<uint16_t>::max(), "token ", id, " is too long");
    tokens.emplace_back(bytes, id);
    in_trie_[id] = 1;
  }
  std::sort(tokens.begin(), tokens.end());
  // Sorted strings give the nodes in depth-first order: each string adds the nodes past its
  // common prefix with the previous one.
  std::vector<uint32_t> path;  // node index at each depth - 1 of the previous string
  std::string_view prev;
  for (const auto& [bytes, id] : tokens) {
    size_t common = 0;
    while (common < prev.size() && common < bytes.size() && prev[common] == bytes[common]) {
      ++common;
    }
    path.resize(common);
    for (size_t d = common; d < bytes.size(); ++d) {
      path.push_back(static_cast<uint32_t>(byte_.size()));
      byte_.push_back(static_cast<uint8_t>(bytes[d]));
      depth_.push_back(static_cast<uint16_t>(d + 1));
      id_begin_.push_back(static_cast<uint32_t>(ids_.size()));
    }
    // The ids of a node are contiguous: every id ending at it comes before its descendants.
    ids_.push_back(id);
    max_depth_ = std::max(max_depth_, static_cast<int>(bytes.size()));
    prev = bytes;
  }
  M2_CHECK(byte_.size() < std::numeric_limits<uint32_t>::max(), "vocabulary trie too large");
  const size_t n = byte_.size();
  id_begin_.push_back(static_cast<uint32_t>(ids_.size()));
  // Where each subtree ends: the next node at the same or a smaller depth.
  subtree_end_.assign(n, static_cast<uint32_t>(n));
  std::vector<uint32_t> open;
  for (size_t i = 0; i < n; ++i) {
    while (!open.empty() && depth_[open.back()] >= depth_[i]) {
      subtree_end_[open.back()] = static_cast<uint32_t>(i);
      open.pop_back();
    }
    open.push_back(static_cast<uint32_t>(i));
  }
}

}  // namespace m2fp4
