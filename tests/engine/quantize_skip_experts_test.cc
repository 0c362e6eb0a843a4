// `m2fp4 quantize` skips the last layer's expert matmuls when no exported scale reads their
// outputs (QuantizeOptions::skip_unread_experts): the output files and the report's calibration
// figures (starved and uncalibrated experts) are the same as with the full forward, for a
// weight-only recipe with KV scales (where it skips) and for NVFP4 W4A4 (whose last w2 input
// scales need the outputs: it must not skip), at one thread and at two (export alongside
// calibration).
#include <gtest/gtest.h>

#include <map>

#include "base/thread_pool.h"
#include "engine/quantize_model.h"
#include "engine/quantize_test_util.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

struct Run {
  std::map<std::string, std::string> files;
  QuantizeReport report;
};

Run quantize(const std::string& src, const std::string& out, QuantRecipe recipe, int threads,
             bool skip) {
  QuantizeOptions o;
  o.model_dir = src;
  o.out_dir = out;
  o.recipe = recipe;
  o.threads = threads;
  o.max_shard_bytes = 60'000;
  o.calibration.max_samples = 2;  // few tokens: some experts starved, some never reached
  o.calibration.max_seq = 12;
  o.progress = nullptr;
  o.skip_unread_experts = skip;
  Run r;
  r.report = run_quantize(o);
  r.files = test::files_of(out);
  return r;
}

void expect_same_with_and_without_skip(QuantRecipe recipe, int threads) {
  const std::string tag = std::to_string(static_cast<int>(recipe)) + "-" + std::to_string(threads);
  test::ScratchDir src("qskip-src-" + tag), skipped("qskip-skip-" + tag), full("qskip-full-" + tag);
  write_random_checkpoint(src.str(), preset_config("tiny"), 9, CheckpointDType::kBF16, 0);
  const Run a = quantize(src.str(), skipped.str(), recipe, threads, true);
  const Run b = quantize(src.str(), full.str(), recipe, threads, false);
  set_default_threads(0);
  ASSERT_GT(a.files.size(), 3u);
  ASSERT_EQ(a.files.size(), b.files.size());
  for (const auto& [name, bytes] : a.files) {
    ASSERT_TRUE(b.files.count(name)) << name;
    EXPECT_TRUE(bytes == b.files.at(name)) << name << " differs with the skip";
  }
  EXPECT_EQ(a.report.calibration_tokens, b.report.calibration_tokens);
  EXPECT_EQ(a.report.starved, b.report.starved);
  EXPECT_EQ(a.report.filled, b.report.filled);
  EXPECT_FALSE(b.report.starved.empty());  // the comparison covers the starved list
}

TEST(QuantizeSkipExperts, Iq4nl16SameOutputAndReport) {
  expect_same_with_and_without_skip(QuantRecipe::kMxfp4x16, 1);
  expect_same_with_and_without_skip(QuantRecipe::kMxfp4x16, 2);
}

TEST(QuantizeSkipExperts, Nvfp4W4a4KeepsTheLastLayersExpertsSameOutput) {
  expect_same_with_and_without_skip(QuantRecipe::kNvfp4, 2);
}

}  // namespace
}  // namespace m2fp4
