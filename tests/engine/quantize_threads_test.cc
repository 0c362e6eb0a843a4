// `m2fp4 quantize` writes the same bytes at any thread count: with one thread every matrix is
// encoded alone (rows in one range), with several the quantized matrices of a layer are spread
// over the threads whole (one matrix per task, claimed in cost order) and written in plan order.
#include <gtest/gtest.h>

#include <map>

#include "base/thread_pool.h"
#include "engine/quantize_model.h"
#include "engine/quantize_test_util.h"
#include "model/random_checkpoint.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {
namespace {

std::map<std::string, std::string> quantize(const std::string& src, const std::string& out,
                                            QuantRecipe recipe, int threads) {
  QuantizeOptions o;
  o.model_dir = src;
  o.out_dir = out;
  o.recipe = recipe;
  o.threads = threads;
  o.max_shard_bytes = 60'000;  // several shards: a window of matrices crosses shard edges
  o.calibration.max_samples = 2;
  o.calibration.max_seq = 16;
  o.progress = nullptr;
  run_quantize(o);
  return test::files_of(out);
}

void expect_same_at_1_2_3_threads(CheckpointDType dtype, QuantRecipe recipe) {
  const std::string tag =
      std::to_string(static_cast<int>(dtype)) + "-" + std::to_string(static_cast<int>(recipe));
  test::ScratchDir src("qthreads-src-" + tag), one("qthreads-one-" + tag),
      two("qthreads-two-" + tag), three("qthreads-three-" + tag);
  write_random_checkpoint(src.str(), preset_config("tiny"), 7, dtype, 0);
  const auto a = quantize(src.str(), one.str(), recipe, 1);
  const auto b = quantize(src.str(), two.str(), recipe, 2);
  const auto c = quantize(src.str(), three.str(), recipe, 3);
  set_default_threads(0);
  ASSERT_GT(a.size(), 3u);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  for (const auto& [name, bytes] : a) {
    ASSERT_TRUE(b.count(name) && c.count(name)) << name;
    EXPECT_TRUE(bytes == b.at(name)) << name << " differs at 2 threads";
    EXPECT_TRUE(bytes == c.at(name)) << name << " differs at 3 threads";
  }
}

TEST(QuantizeThreads, Iq4nl16SameBytesAtAnyThreadCount) {
  expect_same_at_1_2_3_threads(CheckpointDType::kBF16, QuantRecipe::kMxfp4x16);
}

TEST(QuantizeThreads, Nvfp4SameBytesAtAnyThreadCount) {
  expect_same_at_1_2_3_threads(CheckpointDType::kBF16, QuantRecipe::kNvfp4);
}

TEST(QuantizeThreads, Fp8SourceMxfp4SameBytesAtAnyThreadCount) {
  expect_same_at_1_2_3_threads(CheckpointDType::kFp8, QuantRecipe::kMxfp4);
}

TEST(SerialRowsScope, RunsTheWholeRangeInlineWhileAlive) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  {
    const SerialRowsScope serial;
    parallel_rows(1000, 1, [&](int64_t begin, int64_t end) { ranges.emplace_back(begin, end); });
  }
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, int64_t{1000}));
}

}  // namespace
}  // namespace m2fp4
