// KV blocks of the paged cache: allocation with reference counts, and the prefix cache.
//
// A full block is keyed by a hash of (the previous block's hash, its tokens), so a key names the
// block's tokens and everything before them. Full blocks of running sequences are registered
// under their key; a new sequence whose leading full blocks match takes references on them
// instead of computing them. A block whose last reference goes stays in the cache as
// "evictable" (LRU order) and is reused by a later match, or recycled, least recently freed
// first, when free blocks run out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace m2fp4 {

class BlockManager {
 public:
  BlockManager(int64_t n_blocks, int64_t block_size, bool prefix_caching);

  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  // Blocks an allocation can take now: free plus evictable.
  int64_t available() const { return static_cast<int64_t>(free_.size() + evictable_.size()); }
  int64_t used() const { return n_blocks() - available(); }  // referenced by a sequence
  int64_t cached() const { return static_cast<int64_t>(evictable_.size()); }
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // The key of a full block following `parent` (0 for the first block).
  static uint64_t block_key(uint64_t parent, const int32_t* tokens, int64_t block_size);

  // Longest run of cached blocks matching the leading full blocks of `tokens`, at most
  // max_blocks: takes a reference on each and appends them to `table`; `keys` gets their keys.
  // Returns the number of blocks matched.
  int64_t match_prefix(const std::vector<int32_t>& tokens, int64_t max_blocks,
                       std::vector<int32_t>& table, std::vector<uint64_t>& keys);
  // Appends `count` fresh blocks (one reference each) to `table`; false (and nothing taken) if
  // fewer are available.
  bool allocate(int64_t count, std::vector<int32_t>& table);
  // Drops the table's references, last block first (so a sequence's earlier blocks, which more
  // requests share, are evicted last); clears the table.
  void release(std::vector<int32_t>& table);
  // Drops the references of the table's blocks past the first `keep`.
  void truncate(std::vector<int32_t>& table, size_t keep);
  // Registers a sequence's full block `block` (which holds `tokens`) under `key`. If the key is
  // already cached under another block, nothing changes (the sequence keeps its private copy).
  void register_block(int32_t block, uint64_t key, const int32_t* tokens);

  // Prefix-cache statistics, in tokens: a lookup of `queried` tokens that found `hit`.
  void count_lookup(int64_t queried, int64_t hit) {
    queries_ += queried;
    hits_ += hit;
  }
  int64_t queries() const { return queries_; }
  int64_t hits() const { return hits_; }
  int32_t ref_count(int32_t block) const { return blocks_[static_cast<size_t>(block)].refs; }
  // Checks the internal invariants (tests): every block is exactly one of free, evictable,
  // referenced; the key map points at blocks holding those keys.
  bool consistent() const;

 private:
  struct Block {
    int32_t refs = 0;
    bool keyed = false;
    uint64_t key = 0;
    std::vector<int32_t> tokens;       // keyed blocks: their tokens (a key collision is not a hit)
    std::list<int32_t>::iterator lru;  // evictable blocks: position in evictable_
    bool in_lru = false;
  };
  void unkey(int32_t block);
  int32_t take_one();

  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;     // unreferenced and unkeyed
  std::list<int32_t> evictable_;  // unreferenced and keyed, least recently freed first
  std::unordered_map<uint64_t, int32_t> by_key_;
  int64_t queries_ = 0;
  int64_t hits_ = 0;
};

}  // namespace m2fp4
