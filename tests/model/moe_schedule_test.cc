// The MoE block's two schedules (MoeSchedule: rows of every expert matrix split across threads,
// or one task per routed expert) give bit-identical logits: every output row is computed by the
// same kernel call on the same inputs either way, only on another thread. Checked on decode steps
// of several sequences and on a prefill, for the stored formats and for NVFP4 experts with and
// without W4A4 emulation, at 1 to 3 threads; the automatic choice matches both.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "model/minimax_m2.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

// Packed NVFP4 codes and E4M3 group scales of one random matrix, with the storage owned here.
struct Nvfp4Matrix {
  std::vector<uint8_t> codes, scales;
  Weight w;
};

Nvfp4Matrix random_nvfp4(int64_t rows, int64_t cols, std::mt19937& rng) {
  Nvfp4Matrix m;
  std::uniform_int_distribution<int> byte(0, 255), scale(0x28, 0x40);  // 2^-3 .. 2
  m.codes.resize(static_cast<size_t>(rows * cols / 2));
  for (auto& b : m.codes) b = static_cast<uint8_t>(byte(rng));
  m.scales.resize(static_cast<size_t>(rows * cols / 16));
  for (auto& s : m.scales) s = static_cast<uint8_t>(scale(rng));
  m.w.format = WeightFormat::kNvfp4;
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.data = m.codes.data();
  m.w.group_scale = m.scales.data();
  m.w.group_size = 16;
  m.w.global_scale = 0.02f;
  return m;
}

class MoeScheduleTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/m2fp4_moe_schedule_" + info->name() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    const std::string format = GetParam();
    const bool nvfp4 = format.rfind("nvfp4", 0) == 0;
    write_random_checkpoint(dir_, preset_config("tiny"), 11,
                            parse_checkpoint_dtype(nvfp4 ? "bf16" : format), 0);
    model_ = LoadedModel::open(dir_);
    if (nvfp4) {
      // Every expert matrix replaced by a random NVFP4 one (with an input scale for W4A4).
      const ModelConfig& c = model_->config;
      std::mt19937 rng(5);
      for (LayerWeights& layer : model_->weights.layers) {
        for (ExpertWeights& x : layer.experts) {
          for (Weight* w : {&x.w1, &x.w3, &x.w2}) {
            const bool down = w == &x.w2;
            matrices_.push_back(std::make_unique<Nvfp4Matrix>(
                random_nvfp4(down ? c.hidden_size : c.intermediate_size,
                             down ? c.intermediate_size : c.hidden_size, rng)));
            *w = matrices_.back()->w;
            w->input_scale = 4.0f / 2688.0f;
          }
        }
      }
      w4a4_ = format == "nvfp4-w4a4";
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Logits of: a prefill of `n_seqs` sequences (different lengths, in one batch), then `steps`
  // decode steps of one token per sequence; all rows of every forward, concatenated.
  std::vector<float> run(MoeSchedule schedule, int threads, int n_seqs, int steps) {
    ThreadPool pool(threads);
    ModelOptions options;
    options.nvfp4_w4a4 = w4a4_;
    options.moe_schedule = schedule;
    MiniMaxM2 net(model_->config, model_->weights, pool, options);
    KvCache cache(model_->config, 64);
    const int32_t vocab = static_cast<int32_t>(model_->config.vocab_size);
    std::vector<float> all, logits;
    Batch prefill;
    for (int s = 0; s < n_seqs; ++s) {
      for (int p = 0; p < 3 + s % 4; ++p) prefill.add((s * 131 + p * 17 + 5) % vocab, p, s, true);
    }
    net.forward(prefill, cache, logits);
    all.insert(all.end(), logits.begin(), logits.end());
    for (int step = 0; step < steps; ++step) {
      Batch b;
      for (int s = 0; s < n_seqs; ++s) {
        b.add((s * 71 + step * 29 + 3) % vocab, 3 + s % 4 + step, s, true);
      }
      net.forward(b, cache, logits);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }

  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
  std::vector<std::unique_ptr<Nvfp4Matrix>> matrices_;
  bool w4a4_ = false;
};

TEST_P(MoeScheduleTest, ExpertTasksEqualRowSplitBitForBit) {
  for (int threads : {1, 2, 3}) {
    for (int n_seqs : {1, 6}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + ", sequences " + std::to_string(n_seqs));
      const std::vector<float> rows = run(MoeSchedule::kRowSplit, threads, n_seqs, 3);
      const std::vector<float> tasks = run(MoeSchedule::kExpertTasks, threads, n_seqs, 3);
      const std::vector<float> automatic = run(MoeSchedule::kAuto, threads, n_seqs, 3);
      ASSERT_EQ(rows.size(), tasks.size());
      ASSERT_FALSE(rows.empty());
      bool finite = true;
      for (float v : rows) finite &= std::isfinite(v);
      EXPECT_TRUE(finite);
      EXPECT_EQ(rows, tasks);
      EXPECT_EQ(rows, automatic);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MoeScheduleTest,
                         ::testing::Values("bf16", "fp8", "f32", "nvfp4", "nvfp4-w4a4"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

}  // namespace
}  // namespace m2fp4
