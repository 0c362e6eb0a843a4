// Batching invariants of the forward pass: prefill then decode equals one long prefill, and a
// batch of two sequences equals each run alone.
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

class BatchingTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    // One folder per test and process: ctest runs the tests of this fixture in parallel.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/m2fp4_batching_" + info->name() + "_" + GetParam() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    write_random_checkpoint(dir_, preset_config("tiny"), 7, parse_checkpoint_dtype(GetParam()), 0);
    model_ = LoadedModel::open(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<float> run(const Batch& batch, KvCache& cache, int threads = 2) {
    ThreadPool pool(threads);
    MiniMaxM2 net(model_->config, model_->weights, pool);
    std::vector<float> logits;
    net.forward(batch, cache, logits);
    return logits;
  }
  KvCache new_cache() { return KvCache(model_->config, 256); }
  int64_t vocab() const { return model_->config.vocab_size; }

  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
};

const std::vector<int32_t> kPrompt = {5, 77, 300, 12, 480, 9, 9, 41, 256, 100, 3, 511, 0, 64};

TEST_P(BatchingTest, PrefillThenDecodeEqualsOneLongPrefill) {
  KvCache full_cache = new_cache();
  Batch full;
  for (size_t i = 0; i < kPrompt.size(); ++i) full.add(kPrompt[i], int32_t(i), 0, true);
  const std::vector<float> expected = run(full, full_cache);

  // Prefill the first 9 tokens (two chunks), then decode one token at a time.
  KvCache cache = new_cache();
  std::vector<float> got;
  Batch b;
  for (int i = 0; i < 5; ++i) b.add(kPrompt[i], i, 0, true);
  std::vector<float> part = run(b, cache);
  got.insert(got.end(), part.begin(), part.end());
  b.clear();
  for (int i = 5; i < 9; ++i) b.add(kPrompt[i], i, 0, true);
  part = run(b, cache);
  got.insert(got.end(), part.begin(), part.end());
  for (size_t i = 9; i < kPrompt.size(); ++i) {
    b.clear();
    b.add(kPrompt[i], int32_t(i), 0, true);
    part = run(b, cache, 1);
    got.insert(got.end(), part.begin(), part.end());
  }
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_LT(relative_error(got, expected), 1e-5);
}

TEST_P(BatchingTest, TwoSequencesInOneBatchEqualEachAlone) {
  const std::vector<int32_t> other = {400, 2, 2, 19, 88, 301, 7};
  KvCache c1 = new_cache(), c2 = new_cache();
  Batch a, b;
  for (size_t i = 0; i < kPrompt.size(); ++i) a.add(kPrompt[i], int32_t(i), 0, true);
  for (size_t i = 0; i < other.size(); ++i) b.add(other[i], int32_t(i), 0, true);
  const std::vector<float> alone_a = run(a, c1), alone_b = run(b, c2);

  // Interleave the two sequences' tokens in one batch (seq ids 3 and 8).
  KvCache shared = new_cache();
  Batch mixed;
  std::vector<std::pair<int, size_t>> order;  // (sequence, index)
  for (size_t i = 0; i < std::max(kPrompt.size(), other.size()); ++i) {
    if (i < other.size()) {
      mixed.add(other[i], int32_t(i), 8, true);
      order.emplace_back(8, i);
    }
    if (i < kPrompt.size()) {
      mixed.add(kPrompt[i], int32_t(i), 3, true);
      order.emplace_back(3, i);
    }
  }
  const std::vector<float> together = run(mixed, shared);
  std::vector<float> got_a(alone_a.size()), got_b(alone_b.size());
  for (size_t r = 0; r < order.size(); ++r) {
    auto& dst = order[r].first == 3 ? got_a : got_b;
    std::copy_n(together.begin() + r * vocab(), vocab(), dst.begin() + order[r].second * vocab());
  }
  EXPECT_LT(relative_error(got_a, alone_a), 1e-5);
  EXPECT_LT(relative_error(got_b, alone_b), 1e-5);

  // Then a decode step with one token per sequence in the same batch.
  Batch step, sa, sb;
  step.add(33, int32_t(kPrompt.size()), 3, true);
  step.add(44, int32_t(other.size()), 8, true);
  sa.add(33, int32_t(kPrompt.size()), 0, true);
  sb.add(44, int32_t(other.size()), 0, true);
  const std::vector<float> both = run(step, shared);
  const std::vector<float> da = run(sa, c1), db = run(sb, c2);
  EXPECT_LT(relative_error(std::vector<float>(both.begin(), both.begin() + vocab()), da), 1e-5);
  EXPECT_LT(relative_error(std::vector<float>(both.begin() + vocab(), both.end()), db), 1e-5);
}

TEST_P(BatchingTest, RejectsBadBatches) {
  KvCache cache = new_cache();
  Batch gap;
  gap.add(1, 3, 0, true);  // position 3 of an empty sequence
  EXPECT_THROW(run(gap, cache), Error);
  Batch bad_token;
  bad_token.add(int32_t(vocab()), 0, 0, true);
  EXPECT_THROW(run(bad_token, cache), Error);
  KvCache small(model_->config, 4);
  Batch too_long;
  for (int i = 0; i < 5; ++i) too_long.add(1, i, 0, true);
  EXPECT_THROW(run(too_long, small), Error);
}

INSTANTIATE_TEST_SUITE_P(DTypes, BatchingTest, ::testing::Values("bf16", "fp8", "f32"));

}  // namespace
}  // namespace m2fp4
