// The BPE `model` of a tokenizer.json (Hugging Face semantics, dropout unsupported):
// vocabulary, merge ranks keyed by the pair of ids, and the priority-queue merge of one word
// that Hugging Face runs (lowest rank first, leftmost among equals; linked symbols).
// Options: unk_token / fuse_unk, byte_fallback (<0xXX> tokens), continuing_subword_prefix,
// end_of_word_suffix, ignore_merges (a word that is a vocabulary entry is taken whole).
//
// Encoding goes through a per-workspace cache from a pre-token's bytes to its ids, so text with
// repeated words costs a regex match and a hash lookup per word.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace m2fp4 {

// Open-addressing map from a pre-token's bytes to its token ids; cleared when full.
class PieceCache {
 public:
  // Returns the cached ids of `key` (count in `count`), or nullptr.
  const int32_t* find(std::string_view key, uint64_t hash, uint32_t& count) const;
  void insert(std::string_view key, uint64_t hash, const int32_t* ids, uint32_t count);
  size_t size() const { return size_; }
  void clear();

  static constexpr size_t kMaxEntries = size_t{1} << 17;
  static constexpr size_t kMaxKeyBytes = 256;  // longer pieces are not cached

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t key_offset = 0;
    uint32_t key_length = 0;
    uint32_t ids_offset = 0;
    uint32_t ids_count = 0;
  };
  void grow();

  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

uint64_t hash_bytes(std::string_view bytes);

// One past the largest id a vocabulary of `entries` tokens may use: twice its size plus 65536
// leaves room for holes and added tokens, and bounds the id tables by the file's size.
int64_t max_vocab_id(size_t entries);

// Scratch state for encoding words, one per concurrent encode.
struct BpeWorkspace {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t length;  // bytes covered; 0 once merged into its left neighbour
  };
  struct Merge {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
  };
  PieceCache cache;
  std::vector<Symbol> symbols;
  std::vector<Merge> queue;
  std::vector<int32_t> word_ids;
  std::string text;
};

class BpeModel {
 public:
  // From the tokenizer.json `model` value; its type must be BPE. Throws m2fp4::Error for an
  // unsupported type or option, or merges that name tokens missing from the vocabulary.
  static BpeModel from_json(const nlohmann::json& spec);

  // -1 if `token` is not in the vocabulary.
  int32_t token_to_id(std::string_view token) const;
  // nullptr if no vocabulary entry has this id.
  const std::string* id_to_token(int32_t id) const;
  size_t vocab_entries() const { return vocab_.size(); }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  size_t merge_count() const { return merges_.size(); }

  // Appends the ids of one pre-token (non-empty). With `byte_level`, `piece` is raw UTF-8 that
  // is mapped through the byte-level alphabet first (the last ByteLevel pre-tokenizer step).
  void tokenize(std::string_view piece, bool byte_level, BpeWorkspace& workspace,
                std::vector<int32_t>& ids) const;

 private:
  // Pair -> (rank, merged id), open addressing on the packed pair.
  class MergeMap {
   public:
    void reserve(size_t count);
    void insert_or_assign(int32_t left, int32_t right, uint32_t rank, int32_t new_id);
    // Returns false if the pair has no merge.
    bool find(int32_t left, int32_t right, uint32_t& rank, int32_t& new_id) const {
      if (slots_.empty()) return false;
      const uint64_t key = pack(left, right);
      size_t i = index_of(key);
      for (;;) {
        const Slot& s = slots_[i];
        if (s.key == key) {
          rank = s.rank;
          new_id = s.new_id;
          return true;
        }
        if (s.key == kEmpty) return false;
        i = (i + 1) & mask_;
      }
    }
    size_t size() const { return size_; }

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    struct Slot {
      uint64_t key = kEmpty;
      uint32_t rank = 0;
      int32_t new_id = 0;
    };
    static uint64_t pack(int32_t left, int32_t right) {
      return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
    }
    size_t index_of(uint64_t key) const {
      return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
    }
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    int shift_ = 0;
    size_t size_ = 0;
  };

  // Computes the ids of one word (uncached) into workspace.word_ids.
  void encode_word(std::string_view piece, bool byte_level, BpeWorkspace& workspace) const;
  // Builds the initial symbols of `word` (model form) the way Hugging Face's merge_word does.
  void initial_symbols(std::string_view word, BpeWorkspace& workspace) const;
  void merge_symbols(BpeWorkspace& workspace) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> id_present_;
  MergeMap merges_;
  std::optional<std::string> unk_token_;
  std::optional<std::string> continuing_subword_prefix_;
  std::optional<std::string> end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // Byte-level fast path: the id of each byte's alphabet character, when all 256 exist and no
  // prefix/suffix decorates the symbols.
  bool byte_ids_usable_ = false;
  int32_t byte_ids_[256] = {};
};

}  // namespace m2fp4
