// The forward pass against logits of the tiny golden checkpoints, computed by an independent
// float64 implementation of the Hugging Face MiniMax-M2 modelling (../shared/golden/README.md).
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "kernels/cpu/matmul_bf16dot.h"
#include "model/minimax_m2.h"
#include "model_test_util.h"

namespace m2fp4 {
namespace {

using testing::read_f32_file;
using testing::read_token_file;
using testing::relative_error;
using testing::row_argmax;

class GoldenTest : public ::testing::TestWithParam<std::tuple<std::string, LoadMode, int>> {};

TEST_P(GoldenTest, LogitsMatchReference) {
  const auto [name, mode, threads] = GetParam();
  const std::string dir = std::string(M2FP4_SHARED_DIR) + "/golden/" + name;
  auto model = LoadedModel::open(dir, mode);
  const std::vector<int32_t> tokens = read_token_file(dir + "/tokens.txt");
  const std::vector<float> expected = read_f32_file(dir + "/logits.f32");
  ASSERT_EQ(expected.size(), tokens.size() * model->config.vocab_size);

  // The reference is float64 math on unrounded activations: compare the f32-activation kernels
  // (bf16-rounded activations have their own bound tests in tests/kernels).
  std::optional<ScopedBf16Activations> f32_activations(Bf16Activations::kF32);
  ThreadPool pool(threads);
  MiniMaxM2 net(model->config, model->weights, pool);
  KvCache cache(model->config, 128);
  Batch batch;
  for (size_t i = 0; i < tokens.size(); ++i) batch.add(tokens[i], int32_t(i), 0, true);
  std::vector<float> logits;
  net.forward(batch, cache, logits);
  f32_activations.reset();

  ASSERT_EQ(logits.size(), expected.size());
  EXPECT_LT(relative_error(logits, expected), 1e-4);
  EXPECT_EQ(row_argmax(logits, model->config.vocab_size),
            row_argmax(expected, model->config.vocab_size));
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, GoldenTest,
                         ::testing::Values(std::make_tuple("tiny-bf16", LoadMode::kRead, 1),
                                           std::make_tuple("tiny-bf16", LoadMode::kMmap, 2),
                                           std::make_tuple("tiny-fp8", LoadMode::kRead, 2),
                                           std::make_tuple("tiny-fp8", LoadMode::kMmap, 1)));

}  // namespace
}  // namespace m2fp4
