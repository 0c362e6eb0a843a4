// The MiniMax-M2 forward on a CUDA device against the CPU path on the tiny preset: logits within
// 1e-3 relative per row, identical greedy tokens, the decode step replayed from one captured
// graph. Skipped (with the reason) without a device; without CUDA in the build the constructor's
// error is checked instead.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <string>

#include "base/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "model/cuda/cuda_model.h"
#include "model/minimax_m2.h"
#include "model/model_test_util.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

using testing::relative_error;
using testing::row_argmax;

struct Case {
  const char* dtype;
  KvCacheDtype kv;
};
// Stable test names in ctest (the default printer shows the bytes, pointer included).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.dtype << (c.kv == KvCacheDtype::kFp8E4M3 ? "+fp8kv" : "");
}

class CudaModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda::device_count(&why) == 0) GTEST_SKIP() << "no CUDA device (" << why << ")";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/m2fp4_cuda_model_" + std::string(GetParam().dtype) + "_" +
           std::to_string(static_cast<int>(GetParam().kv)) + "_" + info->name() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    write_random_checkpoint(dir_, preset_config("tiny"), 11,
                            parse_checkpoint_dtype(GetParam().dtype), 0);
    model_ = LoadedModel::open(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
};

const std::vector<int32_t> kPrompt = {5,  77, 300, 12,  480, 9,  9,  41, 256, 100, 3,   511, 0, 64,
                                      17, 18, 19,  200, 201, 7,  7,  7,  450, 33,  1,   2,   3, 4,
                                      90, 91, 92,  93,  94,  95, 96, 97, 98,  99,  100, 101};

void expect_rows_close(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t r = 0; r * vocab < want.size(); ++r) {
    const std::vector<float> g(got.begin() + r * vocab, got.begin() + (r + 1) * vocab);
    const std::vector<float> w(want.begin() + r * vocab, want.begin() + (r + 1) * vocab);
    EXPECT_LT(relative_error(g, w), 1e-3) << what << " row " << r;
  }
}

// Prefill of kPrompt (40 tokens: the grouped expert GEMM and the blocked attention) with all
// logits, then 12 greedy decode steps, each from the CPU's token: the GPU must pick the same one.
void expect_prefill_and_decode_match(const LoadedModel& model, KvCacheDtype kv) {
  const ModelConfig& c = model.config;
  ThreadPool pool(2);
  MiniMaxM2 cpu(c, model.weights, pool);
  KvCache cache(c, 256, 0, kv);
  CudaMiniMaxM2 gpu(c, model.weights, ModelOptions{}, CudaModelOptions{256, kv, true});
  Batch batch;
  for (size_t i = 0; i < kPrompt.size(); ++i) batch.add(kPrompt[i], int32_t(i), 0, true);
  std::vector<float> want, got;
  cpu.forward(batch, cache, want);
  gpu.forward(batch, got);
  expect_rows_close(got, want, c.vocab_size, "prefill");
  int32_t next = static_cast<int32_t>(row_argmax(want, c.vocab_size).back());
  for (int step = 0; step < 12; ++step) {
    const int32_t pos = static_cast<int32_t>(kPrompt.size()) + step;
    batch.clear();
    batch.add(next, pos, 0, true);
    cpu.forward(batch, cache, want);
    gpu.forward(batch, got);
    expect_rows_close(got, want, c.vocab_size, "decode step " + std::to_string(step));
    const int32_t cpu_next = static_cast<int32_t>(row_argmax(want, c.vocab_size)[0]);
    EXPECT_EQ(row_argmax(got, c.vocab_size)[0], cpu_next) << "step " << step;
    next = cpu_next;
  }
  EXPECT_EQ(gpu.graph_captures(), 1);  // captured once, replayed for every later step
  EXPECT_EQ(gpu.length(), static_cast<int64_t>(kPrompt.size()) + 12);
}

TEST_P(CudaModelTest, PrefillAndGreedyDecodeMatchTheCpu) {
  expect_prefill_and_decode_match(*model_, GetParam().kv);
}

// Checkpoints listed in M2FP4_CUDA_MODELS (colon-separated folders, e.g. the quantized NVFP4,
// MXFP4 and IQ4_NL-16 tiny models scripts/gpu_check.sh prepares), each with f32 and FP8 KV.
TEST(CudaModelCheckpoints, ListedCheckpointsMatchTheCpu) {
  std::string why;
  if (cuda::device_count(&why) == 0) GTEST_SKIP() << "no CUDA device (" << why << ")";
  const char* list = std::getenv("M2FP4_CUDA_MODELS");
  if (list == nullptr || *list == 0) GTEST_SKIP() << "M2FP4_CUDA_MODELS is not set";
  std::string rest = list;
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string dir = rest.substr(0, colon);
    rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
    if (dir.empty()) continue;
    SCOPED_TRACE(dir);
    auto model = LoadedModel::open(dir);
    expect_prefill_and_decode_match(*model, KvCacheDtype::kF32);
    expect_prefill_and_decode_match(*model, KvCacheDtype::kFp8E4M3);
  }
}

TEST_P(CudaModelTest, SmallPrefillChunksUseGemvPathAndMatch) {
  const ModelConfig& c = model_->config;
  ThreadPool pool(2);
  MiniMaxM2 cpu(c, model_->weights, pool);
  KvCache cache(c, 256, 0, GetParam().kv);
  CudaMiniMaxM2 gpu(c, model_->weights, ModelOptions{},
                    CudaModelOptions{256, GetParam().kv, false});
  // Chunks of 3 tokens (GEMV for 3 tokens, per-slot experts), only the last logits wanted.
  for (size_t first = 0; first + 3 <= kPrompt.size(); first += 3) {
    Batch b;
    for (size_t i = first; i < first + 3; ++i) b.add(kPrompt[i], int32_t(i), 0, i == first + 2);
    std::vector<float> want, got;
    cpu.forward(b, cache, want);
    gpu.forward(b, got);
    expect_rows_close(got, want, c.vocab_size, "chunk at " + std::to_string(first));
  }
  EXPECT_EQ(gpu.graph_captures(), 0);
}

TEST_P(CudaModelTest, BadBatchesFailWithClearErrors) {
  const ModelConfig& c = model_->config;
  CudaMiniMaxM2 gpu(c, model_->weights, ModelOptions{}, CudaModelOptions{16, GetParam().kv, true});
  std::vector<float> logits;
  Batch two_seqs;
  two_seqs.add(1, 0, 0, true);
  two_seqs.add(2, 0, 1, true);
  EXPECT_THROW(gpu.forward(two_seqs, logits), Error);
  Batch skip;
  skip.add(1, 3, 0, true);
  EXPECT_THROW(gpu.forward(skip, logits), Error);
  Batch too_long;
  for (int i = 0; i < 17; ++i) too_long.add(1, i, 0, false);
  EXPECT_THROW(gpu.forward(too_long, logits), Error);
  Batch bad_token;
  bad_token.add(static_cast<int32_t>(c.vocab_size), 0, 0, true);
  EXPECT_THROW(gpu.forward(bad_token, logits), Error);
  EXPECT_THROW(CudaMiniMaxM2(c, model_->weights, ModelOptions{true}, CudaModelOptions{}), Error);
}

INSTANTIATE_TEST_SUITE_P(Tiny, CudaModelTest,
                         ::testing::Values(Case{"bf16", KvCacheDtype::kF32},
                                           Case{"fp8", KvCacheDtype::kF32},
                                           Case{"f32", KvCacheDtype::kF32},
                                           Case{"bf16", KvCacheDtype::kFp8E4M3}),
                         [](const auto& info) {
                           return std::string(info.param.dtype) +
                                  (info.param.kv == KvCacheDtype::kFp8E4M3 ? "_fp8kv" : "");
                         });

TEST(CudaModelNoDevice, ConstructorSaysWhyThereIsNoGpu) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  const std::string dir = ::testing::TempDir() + "/m2fp4_cuda_nodev_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  write_random_checkpoint(dir, preset_config("tiny"), 1, CheckpointDType::kBF16, 0);
  auto model = LoadedModel::open(dir);
  try {
    CudaMiniMaxM2 gpu(model->config, model->weights, ModelOptions{}, CudaModelOptions{});
    ADD_FAILURE() << "constructed without a device";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("no CUDA device") != std::string::npos ||
                msg.find("built without CUDA") != std::string::npos)
        << msg;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace m2fp4
