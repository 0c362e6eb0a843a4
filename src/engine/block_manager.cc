#include "engine/block_manager.h"

#include <algorithm>

#include "base/error.h"

namespace m2fp4 {

BlockManager::BlockManager(int64_t n_blocks, int64_t block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
  M2_CHECK(n_blocks > 0 && block_size > 0, "block manager: need blocks, got ", n_blocks, " of ",
           block_size);
  blocks_.resize(static_cast<size_t>(n_blocks));
  // Lowest ids first out (a stack, so pushed in reverse).
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

uint64_t BlockManager::block_key(uint64_t parent, const int32_t* tokens, int64_t block_size) {
  // FNV-1a over the parent key and the tokens, then a final avalanche (splitmix64).
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int64_t i = 0; i < block_size; ++i) mix(static_cast<uint32_t>(tokens[i]));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;  // 0 is "no parent"
}

int64_t BlockManager::match_prefix(const std::vector<int32_t>& tokens, int64_t max_blocks,
                                   std::vector<int32_t>& table, std::vector<uint64_t>& keys) {
  if (!prefix_caching_) return 0;
  uint64_t parent = 0;
  int64_t matched = 0;
  const int64_t full =
      std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_);
  for (int64_t i = 0; i < full; ++i) {
    const int32_t* t = tokens.data() + i * block_size_;
    const uint64_t key = block_key(parent, t, block_size_);
    auto it = by_key_.find(key);
    if (it == by_key_.end()) break;
    Block& b = blocks_[static_cast<size_t>(it->second)];
    if (!std::equal(b.tokens.begin(), b.tokens.end(), t)) break;
    if (b.refs == 0 && b.in_lru) {
      evictable_.erase(b.lru);
      b.in_lru = false;
    }
    b.refs += 1;
    table.push_back(it->second);
    keys.push_back(key);
    parent = key;
    ++matched;
  }
  return matched;
}

void BlockManager::unkey(int32_t block) {
  Block& b = blocks_[static_cast<size_t>(block)];
  if (!b.keyed) return;
  auto it = by_key_.find(b.key);
  if (it != by_key_.end() && it->second == block) by_key_.erase(it);
  b.keyed = false;
  b.tokens.clear();
}

int32_t BlockManager::take_one() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = evictable_.front();
    evictable_.pop_front();
    Block& b = blocks_[static_cast<size_t>(id)];
    b.in_lru = false;
    unkey(id);
  }
  blocks_[static_cast<size_t>(id)].refs = 1;
  return id;
}

bool BlockManager::allocate(int64_t count, std::vector<int32_t>& table) {
  if (count <= 0) return true;
  if (count > available()) return false;
  for (int64_t i = 0; i < count; ++i) table.push_back(take_one());
  return true;
}

void BlockManager::truncate(std::vector<int32_t>& table, size_t keep) {
  while (table.size() > keep) {
    const int32_t id = table.back();
    table.pop_back();
    Block& b = blocks_[static_cast<size_t>(id)];
    M2_CHECK(b.refs > 0, "block manager: block ", id, " released twice");
    b.refs -= 1;
    if (b.refs > 0) continue;
    if (b.keyed) {
      evictable_.push_back(id);
      b.lru = std::prev(evictable_.end());
      b.in_lru = true;
    } else {
      free_.push_back(id);
    }
  }
}

void BlockManager::release(std::vector<int32_t>& table) {
  truncate(table, 0);
}

void BlockManager::register_block(int32_t block, uint64_t key, const int32_t* tokens) {
  if (!prefix_caching_) return;
  Block& b = blocks_[static_cast<size_t>(block)];
  if (b.keyed) return;  // already registered (a prefix hit, or an earlier step)
  if (by_key_.count(key)) return;
  b.keyed = true;
  b.key = key;
  b.tokens.assign(tokens, tokens + block_size_);
  by_key_[key] = block;
}

bool BlockManager::consistent() const {
  std::vector<int> state(blocks_.size(), 0);
  for (int32_t id : free_) state[static_cast<size_t>(id)] += 1;
  for (int32_t id : evictable_) state[static_cast<size_t>(id)] += 10;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const int expected = b.refs > 0 ? 0 : (b.keyed ? 10 : 1);
    if (state[i] != expected || b.refs < 0) return false;
    if (b.in_lru != (state[i] == 10)) return false;
  }
  for (const auto& [key, id] : by_key_) {
    const Block& b = blocks_[static_cast<size_t>(id)];
    if (!b.keyed || b.key != key) return false;
  }
  return true;
}

}  // namespace m2fp4
