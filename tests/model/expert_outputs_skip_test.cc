// ForwardObserver::wants_expert_outputs: a layer whose expert outputs nothing reads stops its MoE
// block after routing and the w1/w3 input observations. Against a full forward of the same batch:
// every observation up to and including that layer's w1/w3 inputs is identical, its w2 inputs
// are never observed, and (the experts' contribution missing) the logits differ.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "model/minimax_m2.h"
#include "model/observer.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

// Every observer call, with a checksum of what it saw.
class RecordingObserver : public ForwardObserver {
 public:
  using Record = std::tuple<int64_t, int, int64_t, int64_t, double>;  // layer, site, expert, n, sum
  explicit RecordingObserver(int64_t skip_layer) : skip_layer_(skip_layer) {}
  void on_linear_input(int64_t layer, LinearSite site, int64_t expert, const float* x, int64_t n,
                       int64_t width) override {
    records.emplace_back(layer, static_cast<int>(site), expert, n, sum(x, n * width));
  }
  void on_kv(int64_t layer, const float* k, const float* v, int64_t n, int64_t width) override {
    records.emplace_back(layer, 100, -1, n, sum(k, n * width) + 3.0 * sum(v, n * width));
  }
  void on_routing(int64_t layer, const int64_t* counts, int64_t n_experts) override {
    double weighted = 0.0;
    for (int64_t e = 0; e < n_experts; ++e) weighted += static_cast<double>(counts[e] * (e + 1));
    records.emplace_back(layer, 200, -1, n_experts, weighted);
  }
  bool wants_expert_outputs(int64_t layer) const override { return layer != skip_layer_; }

  std::vector<Record> records;

 private:
  static double sum(const float* x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(i % 7 + 1);
    return s;
  }
  int64_t skip_layer_;
};

TEST(ExpertOutputsSkip, LastLayerStopsAfterTheW13Observations) {
  const std::string dir = ::testing::TempDir() + "/m2fp4_expert_skip_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  write_random_checkpoint(dir, preset_config("tiny"), 13, parse_checkpoint_dtype("bf16"), 0);
  const auto model = LoadedModel::open(dir);
  const int64_t last = model->config.num_hidden_layers - 1;
  const int32_t vocab = static_cast<int32_t>(model->config.vocab_size);

  auto run = [&](int64_t skip_layer, std::vector<float>& logits) {
    ThreadPool pool(2);
    MiniMaxM2 net(model->config, model->weights, pool);
    KvCache cache(model->config, 64);
    Batch batch;
    for (int s = 0; s < 3; ++s) {
      for (int p = 0; p < 9; ++p) batch.add((s * 131 + p * 17 + 5) % vocab, p, s, true);
    }
    RecordingObserver observer(skip_layer);
    net.forward(batch, cache, logits, &observer);
    return observer.records;
  };
  std::vector<float> full_logits, skipped_logits;
  const auto full = run(-1, full_logits);
  const auto skipped = run(last, skipped_logits);
  std::filesystem::remove_all(dir);

  // The full forward's records without the last layer's w2 inputs.
  std::vector<RecordingObserver::Record> expected;
  int64_t last_w2 = 0, last_w13 = 0;
  for (const auto& r : full) {
    const bool last_layer = std::get<0>(r) == last;
    const int site = std::get<1>(r);
    if (last_layer && site == static_cast<int>(LinearSite::kExpertW2)) {
      ++last_w2;
      continue;
    }
    if (last_layer && site == static_cast<int>(LinearSite::kExpertW13)) ++last_w13;
    expected.push_back(r);
  }
  ASSERT_GT(last_w2, 0);
  ASSERT_EQ(last_w13, last_w2);
  EXPECT_EQ(skipped, expected);
  ASSERT_EQ(full_logits.size(), skipped_logits.size());
  EXPECT_NE(full_logits, skipped_logits);
}

}  // namespace
}  // namespace m2fp4
