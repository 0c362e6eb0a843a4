// The paged KV cache behind the forward pass: two sequences whose blocks are scattered (and
// interleaved) through the pool give the same logits as the contiguous cache, in f32 and FP8;
// a shared prefix block serves two sequences; resize() never grows past a sequence's blocks.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/error.h"
#include "model/minimax_m2.h"
#include "model/random_checkpoint.h"
#include "model_test_util.h"

namespace m2fp4 {
namespace {

using testing::relative_error;

class PagedKvCacheTest : public ::testing::TestWithParam<KvCacheDtype> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/m2fp4_paged_" + std::to_string(::getpid()) + "_" +
           std::to_string(reinterpret_cast<uintptr_t>(info));
    std::filesystem::remove_all(dir_);
    write_random_checkpoint(dir_, preset_config("tiny"), 5, CheckpointDType::kF32, 0);
    model_ = LoadedModel::open(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Prefill in two chunks (both sequences in each batch), then three decode steps.
  std::vector<float> generate(KvCache& cache, int32_t s0, int32_t s1) {
    ThreadPool pool(2);
    MiniMaxM2 net(model_->config, model_->weights, pool);
    std::vector<float> all, logits;
    const std::vector<int32_t> a = {5, 77, 300, 12, 480, 9, 9, 41, 256, 100, 3};
    const std::vector<int32_t> b = {400, 2, 2, 19, 88, 301, 7, 7, 7};
    auto chunk = [&](size_t from, size_t to) {
      Batch batch;
      for (size_t i = from; i < to && i < a.size(); ++i) batch.add(a[i], int32_t(i), s0, true);
      for (size_t i = from; i < to && i < b.size(); ++i) batch.add(b[i], int32_t(i), s1, true);
      net.forward(batch, cache, logits);
      all.insert(all.end(), logits.begin(), logits.end());
    };
    chunk(0, 6);
    chunk(6, 11);
    for (int step = 0; step < 3; ++step) {
      Batch batch;
      batch.add(10 + step, int32_t(a.size()) + step, s0, true);
      batch.add(20 + step, int32_t(b.size()) + step, s1, true);
      net.forward(batch, cache, logits);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
};

TEST_P(PagedKvCacheTest, ScatteredBlocksGiveTheContiguousLogits) {
  KvCache contiguous(model_->config, 64, 0, GetParam());
  const std::vector<float> expected = generate(contiguous, 0, 1);

  // Blocks of 4 positions; 14 and 12 positions: 4 and 3 blocks, scattered and interleaved.
  KvCache paged = KvCache::paged(model_->config, 16, 4, 64, GetParam());
  paged.assign(3, {9, 2, 14, 5}, 0);
  paged.assign(7, {0, 11, 6}, 0);
  const std::vector<float> got = generate(paged, 3, 7);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_LT(relative_error(got, expected), 1e-6);
}

TEST_P(PagedKvCacheTest, ASharedPrefixBlockServesTwoSequences) {
  ThreadPool pool(2);
  MiniMaxM2 net(model_->config, model_->weights, pool);
  const std::vector<int32_t> prefix = {8, 9, 10, 11};
  KvCache paged = KvCache::paged(model_->config, 8, 4, 32, GetParam());
  // Sequence 1 computes the prefix in block 3.
  paged.assign(1, {3, 4}, 0);
  Batch first;
  for (int i = 0; i < 4; ++i) first.add(prefix[i], i, 1, false);
  first.add(50, 4, 1, true);
  std::vector<float> from_first, from_second, logits;
  net.forward(first, paged, from_first);
  // Sequence 2 reuses block 3 and only computes its own token.
  paged.assign(2, {3, 6}, 4);
  Batch second;
  second.add(50, 4, 2, true);
  net.forward(second, paged, from_second);
  EXPECT_LT(relative_error(from_second, from_first), 1e-6);
}

TEST_P(PagedKvCacheTest, GrowsOnlyWithinItsBlocks) {
  KvCache paged = KvCache::paged(model_->config, 8, 4, 32, GetParam());
  paged.assign(1, {0, 1}, 0);
  paged.resize(1, 8);
  EXPECT_EQ(paged.length(1), 8);
  EXPECT_THROW(paged.resize(1, 9), Error);
  EXPECT_THROW(paged.assign(2, {8}, 0), Error);  // outside the pool
  EXPECT_THROW(paged.assign(2, {1}, 5), Error);  // length past its blocks
  EXPECT_THROW(KvCache::paged(model_->config, 0, 4, 32, GetParam()), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PagedKvCacheTest,
                         ::testing::Values(KvCacheDtype::kF32, KvCacheDtype::kFp8E4M3));

}  // namespace
}  // namespace m2fp4
