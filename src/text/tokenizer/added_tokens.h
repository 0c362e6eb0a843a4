// Added tokens of a tokenizer.json (special or not): ids as Hugging Face assigns them, and the
// matcher that cuts them out of text before normalization and pre-tokenization, leftmost-longest
// like its Aho-Corasick, honouring single_word, lstrip and rstrip.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace m2fp4 {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A run of text: an added token (id >= 0) or plain text to encode (id == -1).
struct TextSegment {
  int32_t id;
  size_t start;
  size_t end;
};

// Matches a fixed set of patterns (each an added token's content or normalized content).
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` matches token `tokens[i]`; tokens must outlive the matcher.
  AddedTokenMatcher(const std::vector<std::string>& patterns,
                    const std::vector<const AddedToken*>& tokens);

  bool empty() const { return tokens_.empty(); }

  // Splits `text` as Hugging Face's AddedVocabulary::find_matches does: segments in order,
  // covering the text (a stripped token's segment includes the spaces it strips).
  void split(std::string_view text, std::vector<TextSegment>& segments) const;

 private:
  struct Node {
    int32_t first_child = -1;  // children form a list sorted by byte
    int32_t next_sibling = -1;
    int32_t token = -1;  // index into tokens_ if a pattern ends here
    uint8_t byte = 0;
  };
  int32_t child(int32_t node, uint8_t byte) const;
  // Length of the longest pattern starting at text[pos] (0 if none); sets `token`.
  size_t longest_match(std::string_view text, size_t pos, int32_t& token) const;

  std::vector<Node> nodes_;
  int32_t root_children_[256];
  std::vector<const AddedToken*> tokens_;
};

}  // namespace m2fp4
