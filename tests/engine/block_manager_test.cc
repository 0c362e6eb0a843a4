// Block manager: reference counts, prefix-cache hits, LRU eviction of unreferenced cached blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "engine/block_manager.h"

namespace m2fp4 {
namespace {

// Registers the full blocks of `tokens` held by `table` (as the scheduler does after a step).
void register_full(BlockManager& bm, const std::vector<int32_t>& tokens,
                   const std::vector<int32_t>& table) {
  uint64_t parent = 0;
  const int64_t bs = bm.block_size();
  for (size_t i = 0; (i + 1) * bs <= tokens.size(); ++i) {
    const uint64_t key = BlockManager::block_key(parent, tokens.data() + i * bs, bs);
    bm.register_block(table[i], key, tokens.data() + i * bs);
    parent = key;
  }
}

TEST(BlockManager, AllocateReleaseAndRefCounts) {
  BlockManager bm(4, 2, true);
  std::vector<int32_t> a, b;
  EXPECT_TRUE(bm.allocate(3, a));
  EXPECT_EQ(bm.available(), 1);
  EXPECT_FALSE(bm.allocate(2, b));  // all or nothing
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(bm.available(), 1);
  for (int32_t id : a) EXPECT_EQ(bm.ref_count(id), 1);
  bm.release(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(bm.available(), 4);
  EXPECT_EQ(bm.cached(), 0);  // nothing registered: all free
  EXPECT_TRUE(bm.consistent());
}

TEST(BlockManager, PrefixHitSharesBlocksAndEvictsLeastRecentlyFreed) {
  BlockManager bm(4, 2, true);
  const std::vector<int32_t> ta = {1, 2, 3, 4, 5};
  std::vector<int32_t> a;
  std::vector<uint64_t> keys;
  ASSERT_TRUE(bm.allocate(3, a));
  register_full(bm, ta, a);
  // While A runs, B shares its two full blocks.
  std::vector<int32_t> b;
  const std::vector<int32_t> tb = {1, 2, 3, 4, 9, 9};
  EXPECT_EQ(bm.match_prefix(tb, (6 - 1) / 2, b, keys), 2);
  EXPECT_EQ(b, (std::vector<int32_t>{a[0], a[1]}));
  EXPECT_EQ(bm.ref_count(a[0]), 2);
  EXPECT_EQ(bm.ref_count(a[1]), 2);
  // A different second block: only the first matches.
  std::vector<int32_t> c;
  std::vector<uint64_t> ckeys;
  EXPECT_EQ(bm.match_prefix({1, 2, 3, 7, 7}, 2, c, ckeys), 1);
  bm.release(c);
  const int32_t a0 = a[0], a1 = a[1];
  bm.release(a);
  EXPECT_EQ(bm.ref_count(a0), 1);  // B still holds them
  EXPECT_EQ(bm.cached(), 0);
  bm.release(b);  // last block first: a1 becomes evictable before a0
  EXPECT_EQ(bm.cached(), 2);
  EXPECT_EQ(bm.available(), 4);
  EXPECT_TRUE(bm.consistent());
  // Three fresh blocks: the two free ones, then the least recently freed cached one (a1).
  std::vector<int32_t> d;
  ASSERT_TRUE(bm.allocate(3, d));
  EXPECT_NE(std::find(d.begin(), d.end(), a1), d.end());
  EXPECT_EQ(std::find(d.begin(), d.end(), a0), d.end());
  EXPECT_EQ(bm.cached(), 1);
  // a0 is still a hit (and comes off the evictable list); a1's key is gone.
  std::vector<int32_t> e;
  keys.clear();
  EXPECT_EQ(bm.match_prefix(ta, 2, e, keys), 1);
  EXPECT_EQ(e, (std::vector<int32_t>{a0}));
  EXPECT_EQ(bm.cached(), 0);
  EXPECT_EQ(bm.available(), 0);
  EXPECT_TRUE(bm.consistent());
  bm.release(d);
  bm.release(e);
  EXPECT_EQ(bm.available(), 4);
  EXPECT_TRUE(bm.consistent());
}

TEST(BlockManager, KeysChainThePrefix) {
  // The same block tokens after a different prefix are a different key.
  const int32_t x[2] = {3, 4};
  const uint64_t p1 = BlockManager::block_key(0, x, 2);
  EXPECT_NE(BlockManager::block_key(p1, x, 2), BlockManager::block_key(0, x, 2));
  BlockManager bm(4, 2, true);
  std::vector<int32_t> a;
  std::vector<uint64_t> keys;
  ASSERT_TRUE(bm.allocate(2, a));
  register_full(bm, {1, 2, 3, 4}, a);
  std::vector<int32_t> b;
  EXPECT_EQ(bm.match_prefix({9, 9, 3, 4, 1}, 2, b, keys), 0);
  bm.release(a);
}

TEST(BlockManager, PrefixCachingOffNeverMatches) {
  BlockManager bm(4, 2, false);
  std::vector<int32_t> a, b;
  std::vector<uint64_t> keys;
  ASSERT_TRUE(bm.allocate(2, a));
  register_full(bm, {1, 2, 3, 4}, a);
  bm.release(a);
  EXPECT_EQ(bm.cached(), 0);
  EXPECT_EQ(bm.match_prefix({1, 2, 3, 4, 5}, 2, b, keys), 0);
  EXPECT_TRUE(bm.consistent());
}

}  // namespace
}  // namespace m2fp4
