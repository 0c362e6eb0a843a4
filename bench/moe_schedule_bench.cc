// The MoE's two schedules (MoeSchedule::kRowSplit, kExpertTasks) on the same decode steps, one
// step of each in turn in one process, so that a shared host's swings hit both alike (separate
// runs minutes apart differ by more than the schedules do). Prints ms per step (10th percentile
// and median) and aggregate tok/s at the median per batch size.
//
//   build/bench/moe_schedule_bench --model DIR [--batch 1,8] [--steps 64] [--threads 2]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/timer.h"
#include "model/minimax_m2.h"

namespace m2fp4 {
namespace {

struct Options {
  std::string model;
  std::vector<int64_t> batches = {1, 8};
  int64_t steps = 64;
  int threads = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") {
      o.model = v;
    } else if (k == "--batch") {
      o.batches.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) o.batches.push_back(std::stoll(item));
    } else if (k == "--steps") {
      o.steps = std::stoll(v);
    } else if (k == "--threads") {
      o.threads = std::stoi(v);
    } else {
      std::fprintf(stderr, "moe_schedule_bench: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (o.model.empty() || o.steps < 1 || o.threads < 1) {
    std::fprintf(stderr, "moe_schedule_bench: --model DIR is required; --steps, --threads >= 1\n");
    std::exit(2);
  }
  return o;
}

double percentile_ms(std::vector<double> seconds, double p) {
  std::sort(seconds.begin(), seconds.end());
  return 1e3 * seconds[static_cast<size_t>(p * static_cast<double>(seconds.size() - 1))];
}

int main_impl(int argc, char** argv) {
  const Options o = parse(argc, argv);
  auto model = LoadedModel::open(o.model);
  const ModelConfig& c = model->config;
  ThreadPool pool(o.threads);
  std::printf("model %s, %d threads, %lld steps per schedule\n", o.model.c_str(), o.threads,
              static_cast<long long>(o.steps));
  std::printf(
      "| sequences | rows ms/step p10 / median | tasks ms/step p10 / median | rows tok/s | tasks "
      "tok/s | tasks / rows |\n|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t batch : o.batches) {
    const MoeSchedule schedules[2] = {MoeSchedule::kRowSplit, MoeSchedule::kExpertTasks};
    std::vector<std::unique_ptr<MiniMaxM2>> nets;
    std::vector<std::unique_ptr<KvCache>> caches;
    for (MoeSchedule s : schedules) {
      ModelOptions options;
      options.moe_schedule = s;
      nets.push_back(std::make_unique<MiniMaxM2>(c, model->weights, pool, options));
      caches.push_back(std::make_unique<KvCache>(c, o.steps + 1));
    }
    std::vector<double> seconds[2];
    std::vector<float> logits;
    for (int64_t step = -1; step < o.steps; ++step) {  // step -1: warmup at position 0
      const int32_t pos = static_cast<int32_t>(std::max<int64_t>(step, 0));
      Batch b;
      for (int64_t s = 0; s < batch; ++s) {
        b.add(static_cast<int32_t>((step * 7919 + s * 104729 + 13 + 7919) % c.vocab_size), pos,
              static_cast<int32_t>(s), true);
      }
      for (int k = 0; k < 2; ++k) {
        // Alternate which schedule goes first, so neither always follows the other's cache state.
        const int i = (step & 1) ? 1 - k : k;
        Timer t;
        nets[static_cast<size_t>(i)]->forward(b, *caches[static_cast<size_t>(i)], logits);
        if (step >= 0) seconds[i].push_back(t.seconds());
      }
    }
    const double rows = percentile_ms(seconds[0], 0.5), tasks = percentile_ms(seconds[1], 0.5);
    std::printf("| %lld | %.2f / %.2f | %.2f / %.2f | %.1f | %.1f | %.3f |\n",
                static_cast<long long>(batch), percentile_ms(seconds[0], 0.1), rows,
                percentile_ms(seconds[1], 0.1), tasks, 1e3 * static_cast<double>(batch) / rows,
                1e3 * static_cast<double>(batch) / tasks, rows / tasks);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace m2fp4

int main(int argc, char** argv) {
  try {
    return m2fp4::main_impl(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe_schedule_bench: %s\n", e.what());
    return 1;
  }
}
