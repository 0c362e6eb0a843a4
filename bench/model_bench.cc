// End-to-end decode and prefill speed of checkpoints (default: the bench preset, made on first
// use), at 1 and 2 threads, each next to a fresh bandwidth measurement and printed as a fraction
// of the roofline: tok/s that reading each token's active weights once at that bandwidth allows.
// Several models (e.g. BF16 and its quantized versions) are measured interleaved in one run, so
// their ratios survive the host's bandwidth swings.
//
//   build/bench/model_bench [--model DIR[,DIR...]] [--dtype bf16|fp8|f32] [--threads 1,2]
//                           [--decode-tokens 64] [--prefill-tokens 512] [--rounds 2]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "base/timer.h"
#include "model/minimax_m2.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

struct Options {
  std::vector<std::string> models;
  std::string dtype = "bf16";
  std::vector<int> threads = {1, 2};
  int64_t decode_tokens = 64;
  int64_t prefill_tokens = 512;
  int rounds = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") {
      std::stringstream ss(v);
      std::string m;
      while (std::getline(ss, m, ',')) o.models.push_back(m);
    } else if (k == "--dtype")
      o.dtype = v;
    else if (k == "--decode-tokens")
      o.decode_tokens = std::stoll(v);
    else if (k == "--prefill-tokens")
      o.prefill_tokens = std::stoll(v);
    else if (k == "--rounds")
      o.rounds = std::stoi(v);
    else if (k == "--threads") {
      o.threads.clear();
      std::stringstream ss(v);
      std::string t;
      while (std::getline(ss, t, ',')) o.threads.push_back(std::stoi(t));
    } else {
      std::fprintf(stderr, "model_bench: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return o;
}

// Decode tok/s: prefill a short prompt, then time single-token steps.
double decode_tps(MiniMaxM2& net, const ModelConfig& c, int64_t n_steps) {
  KvCache cache(c, 64 + n_steps + 1);
  Batch b;
  for (int i = 0; i < 16; ++i) b.add((i * 7919) % c.vocab_size, i, 0, i == 15);
  std::vector<float> logits;
  net.forward(b, cache, logits);
  Timer t;
  for (int64_t s = 0; s < n_steps; ++s) {
    b.clear();
    b.add(static_cast<int32_t>((s * 104729) % c.vocab_size), static_cast<int32_t>(16 + s), 0, true);
    net.forward(b, cache, logits);
  }
  return static_cast<double>(n_steps) / t.seconds();
}

double prefill_tps(MiniMaxM2& net, const ModelConfig& c, int64_t n_tokens) {
  KvCache cache(c, n_tokens);
  Batch b;
  for (int64_t i = 0; i < n_tokens; ++i) {
    b.add(static_cast<int32_t>((i * 7919) % c.vocab_size), static_cast<int32_t>(i), 0,
          i + 1 == n_tokens);
  }
  std::vector<float> logits;
  Timer t;
  net.forward(b, cache, logits);
  return static_cast<double>(n_tokens) / t.seconds();
}

}  // namespace
}  // namespace m2fp4

int main(int argc, char** argv) {
  using namespace m2fp4;
  Options o = parse(argc, argv);
  if (o.models.empty()) {
    o.models.push_back(
        (std::filesystem::temp_directory_path() / ("m2fp4-bench-" + o.dtype)).string());
    if (!std::filesystem::exists(o.models[0] + "/config.json")) {
      std::printf("making the bench preset (%s) in %s\n", o.dtype.c_str(), o.models[0].c_str());
      write_random_checkpoint(o.models[0], preset_config("bench"), 1,
                              parse_checkpoint_dtype(o.dtype), 2'000'000'000);
    }
  }
  std::vector<std::unique_ptr<LoadedModel>> models;
  for (const std::string& dir : o.models) {
    Timer load;
    models.push_back(LoadedModel::open(dir, LoadMode::kRead));
    const double load_s = load.seconds();
    const LoadedModel& m = *models.back();
    const double file_bytes = static_cast<double>(m.checkpoint.total_bytes());
    std::printf(
        "%s: %.1f MB of weights, %.1f MB active per token; loaded %.1f MB in %.3f s "
        "(%.2f GB/s)\n",
        dir.c_str(), static_cast<double>(m.weights.total_bytes()) / 1e6,
        static_cast<double>(m.weights.active_bytes_per_token(m.config)) / 1e6, file_bytes / 1e6,
        load_s, file_bytes / load_s / 1e9);
  }
  std::printf("%-28s %-7s %-5s %9s %10s %10s %9s %13s\n", "model", "threads", "round", "bw GB/s",
              "decode t/s", "roofline", "of roof", "prefill t/s");
  bench::BandwidthProbe probe;
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t mi = 0; mi < models.size(); ++mi) {
      const LoadedModel& m = *models[mi];
      const double active_mb =
          static_cast<double>(m.weights.active_bytes_per_token(m.config)) / 1e6;
      for (int threads : o.threads) {
        ThreadPool pool(threads);
        MiniMaxM2 net(m.config, m.weights, pool);
        const double bw = probe.read_gbps(pool);
        const double decode = decode_tps(net, m.config, o.decode_tokens);
        const double bw_after = probe.read_gbps(pool);
        const double bw_mean = 0.5 * (bw + bw_after);
        const double roofline = bw_mean * 1e3 / active_mb;
        const double prefill =
            o.prefill_tokens > 0 ? prefill_tps(net, m.config, o.prefill_tokens) : 0.0;
        const std::string name = std::filesystem::path(o.models[mi]).filename().string();
        std::printf("%-28s %-7d %-5d %9.1f %10.1f %10.1f %8.0f%% %13.1f\n", name.c_str(), threads,
                    round, bw_mean, decode, roofline, 100.0 * decode / roofline, prefill);
        std::fflush(stdout);
      }
    }
  }
  return probe.sink() == 42 ? 1 : 0;  // keeps the probe's reads observable
}
