// m2fp4 bench: llama-bench's interface on the model directly (MiniMaxM2::forward with a Batch, no
// serving engine): prefill (pp) and decode (tg) throughput at given context depths, decode also
// with B concurrent sequences (one batched forward step decodes one token of each), every test
// repeated and reported as mean +- std in a markdown table like llama-bench's, or as JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/minimax_m2.h"

namespace m2fp4::cli {
namespace {

struct BenchTest {
  int64_t n_prompt = 0;  // pp test: tokens prefilled in one forward
  int64_t n_gen = 0;     // tg test: decode steps
  int64_t depth = 0;     // tokens already in each sequence's cache before timing
  int64_t batch = 1;     // tg: concurrent sequences
  int threads = 0;

  std::string name() const {
    std::string s = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
    if (n_gen > 0 && batch > 1) s += " x" + std::to_string(batch) + " seqs";
    if (depth > 0) s += " @ d" + std::to_string(depth);
    return s;
  }
};

struct Stats {
  double mean = 0.0, stddev = 0.0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0.0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

// Parameters of the checkpoint's architecture (the MTP modules are not run and not counted).
int64_t parameter_count(const ModelConfig& c) {
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width();
  const int64_t E = c.num_local_experts, I = c.intermediate_size;
  const int64_t per_layer = 2 * H + 2 * QW * H + 2 * KW * H + QW + KW + E * H + E + 3 * E * I * H;
  return c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * per_layer + H;
}

std::string human_size(double bytes) {
  char buf[32];
  if (bytes >= 1024.0 * 1024.0 * 1024.0) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
  }
  return buf;
}

std::string human_count(double n) {
  char buf[32];
  if (n >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  }
  return buf;
}

// A reproducible token id for position i of sequence s (the values do not change the speed).
int32_t bench_token(const ModelConfig& c, int64_t s, int64_t i) {
  return static_cast<int32_t>((i * 7919 + s * 104729 + 13) % c.vocab_size);
}

// Fills positions [from, to) of sequences [0, n_seqs), `chunk` tokens per forward.
void prefill(MiniMaxM2& net, KvCache& cache, const ModelConfig& c, int64_t n_seqs, int64_t from,
             int64_t to, std::vector<float>& logits) {
  constexpr int64_t kChunk = 512;
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t p0 = from; p0 < to; p0 += kChunk) {
      Batch b;
      const int64_t p1 = std::min(to, p0 + kChunk);
      for (int64_t p = p0; p < p1; ++p) {
        b.add(bench_token(c, s, p), static_cast<int32_t>(p), static_cast<int32_t>(s), p + 1 == p1);
      }
      net.forward(b, cache, logits);
    }
  }
}

// Seconds of one repetition. The cache already holds `depth` positions of every sequence; the
// timed tokens start at `depth` and overwrite the previous repetition's.
double run_once(MiniMaxM2& net, KvCache& cache, const ModelConfig& c, const BenchTest& t,
                std::vector<float>& logits) {
  if (t.n_prompt > 0) {
    Batch b;
    for (int64_t p = t.depth; p < t.depth + t.n_prompt; ++p) {
      b.add(bench_token(c, 0, p), static_cast<int32_t>(p), 0, p + 1 == t.depth + t.n_prompt);
    }
    Timer timer;
    net.forward(b, cache, logits);
    return timer.seconds();
  }
  Timer timer;
  Batch b;
  for (int64_t step = 0; step < t.n_gen; ++step) {
    b.clear();
    for (int64_t s = 0; s < t.batch; ++s) {
      b.add(bench_token(c, s, t.depth + step), static_cast<int32_t>(t.depth + step),
            static_cast<int32_t>(s), true);
    }
    net.forward(b, cache, logits);
  }
  return timer.seconds();
}

struct Result {
  std::string model, model_path;
  double size_bytes = 0.0;
  int64_t params = 0;
  BenchTest test;
  std::vector<double> seconds;
  std::vector<double> tps;  // aggregate tokens per second of each repetition
};

}  // namespace

int cmd_bench(int argc, char** argv) {
  CLI::App app(
      "Prefill and decode throughput of checkpoints on this machine (llama-bench's interface).",
      "m2fp4 bench");
  std::vector<std::string> models;
  std::vector<int64_t> prompts = {512}, gens = {128}, depths = {0}, batches = {1};
  std::vector<int> threads = {0};
  int repetitions = 5;
  bool json_out = false, no_warmup = false;
  app.add_option("-m,--model", models, "checkpoint folder (repeatable)")->required();
  app.add_option("-p,--n-prompt", prompts, "prompt tokens of the pp tests (0: none)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option("-n,--n-gen", gens, "generated tokens of the tg tests (0: none)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option("-d,--n-depth", depths, "tokens already in the context before each test")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option("-b,--batch", batches,
                 "concurrent sequences of the tg tests: one forward step decodes one token of each")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("-t,--threads", threads, "worker threads (0: all cores)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  app.add_option("-r,--repetitions", repetitions, "timed repetitions of each test")
      ->check(CLI::Range(1, 1000));
  app.add_flag("--no-warmup", no_warmup, "skip the untimed first run of each test");
  app.add_flag("--json", json_out, "print a JSON array instead of the markdown table");
  RuntimeFlags runtime;
  add_runtime_flags(app, runtime);
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  const bool any_pp = std::any_of(prompts.begin(), prompts.end(), [](int64_t p) { return p > 0; });
  const bool any_tg = std::any_of(gens.begin(), gens.end(), [](int64_t n) { return n > 0; });
  if (!any_pp && !any_tg) {
    std::fprintf(stderr, "%s: error: nothing to measure: -p and -n are both 0\n",
                 app.get_name().c_str());
    return kUsageError;
  }

  return run_guarded(app.get_name(), [&] {
    for (const std::string& dir : models) {
      M2_CHECK(std::filesystem::is_regular_file(dir + "/config.json"), dir,
               ": not a checkpoint folder (no config.json)");
    }
    std::vector<Result> results;
    auto emit_row = [&](const Result& r) {
      const Stats s = stats(r.tps);
      const double b = static_cast<double>(r.test.batch);
      char tps[64], seq[64];
      std::snprintf(tps, sizeof tps, "%.2f ± %.2f", s.mean, s.stddev);
      std::snprintf(seq, sizeof seq, "%.2f ± %.2f", s.mean / b, s.stddev / b);
      std::printf("| %s | %s | %s | CPU | %d | %s | %s | %s |\n", r.model.c_str(),
                  human_size(r.size_bytes).c_str(),
                  human_count(static_cast<double>(r.params)).c_str(), r.test.threads,
                  r.test.name().c_str(), tps, r.test.n_gen > 0 ? seq : "");
      std::fflush(stdout);
    };
    if (!json_out) {
      std::printf("| model | size | params | backend | threads | test | t/s | t/s per seq |\n");
      std::printf("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |\n");
    }
    for (const std::string& dir : models) {
      auto model = LoadedModel::open(dir, LoadMode::kRead);
      const ModelConfig& c = model->config;
      std::vector<BenchTest> tests;
      for (int th : threads) {
        const int n_threads =
            th > 0 ? th : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
        for (int64_t d : depths) {
          for (int64_t p : prompts) {
            if (p > 0) tests.push_back({p, 0, d, 1, n_threads});
          }
          for (int64_t n : gens) {
            for (int64_t b : batches) {
              if (n > 0) tests.push_back({0, n, d, b, n_threads});
            }
          }
        }
      }
      const std::string name = std::filesystem::path(dir).filename().empty()
                                   ? std::filesystem::path(dir).parent_path().filename().string()
                                   : std::filesystem::path(dir).filename().string();
      for (const BenchTest& t : tests) {
        const int64_t context = t.depth + std::max(t.n_prompt, t.n_gen);
        M2_CHECK(c.max_position_embeddings <= 0 || context <= c.max_position_embeddings, "test ",
                 t.name(), " needs ", context, " positions but ", dir, " allows ",
                 c.max_position_embeddings);
        ThreadPool pool(t.threads);
        MiniMaxM2 net(c, model->weights, pool, ModelOptions{runtime.w4a4});
        KvCache cache(c, context, 0, parse_kv_cache_dtype(runtime.kv_cache_dtype));
        std::vector<float> logits;
        const int64_t seqs = t.n_prompt > 0 ? 1 : t.batch;
        prefill(net, cache, c, seqs, 0, t.depth, logits);
        if (!no_warmup) run_once(net, cache, c, t, logits);
        Result r{
            name, dir, static_cast<double>(model->weights.total_bytes()), parameter_count(c), t,
            {},   {}};
        const double tokens = static_cast<double>(t.n_prompt > 0 ? t.n_prompt : t.n_gen * t.batch);
        for (int rep = 0; rep < repetitions; ++rep) {
          const double s = run_once(net, cache, c, t, logits);
          r.seconds.push_back(s);
          r.tps.push_back(tokens / s);
        }
        if (!json_out) emit_row(r);
        results.push_back(std::move(r));
      }
    }
    if (json_out) {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const Result& r : results) {
        const Stats s = stats(r.tps);
        std::vector<int64_t> ns;
        for (double sec : r.seconds) ns.push_back(static_cast<int64_t>(sec * 1e9));
        out.push_back({{"model", r.model},
                       {"model_path", r.model_path},
                       {"model_size", static_cast<int64_t>(r.size_bytes)},
                       {"model_n_params", r.params},
                       {"backends", "CPU"},
                       {"n_threads", r.test.threads},
                       {"test", r.test.name()},
                       {"n_prompt", r.test.n_prompt},
                       {"n_gen", r.test.n_gen},
                       {"n_depth", r.test.depth},
                       {"n_seqs", r.test.batch},
                       {"samples_ns", ns},
                       {"samples_ts", r.tps},
                       {"avg_ts", s.mean},
                       {"stddev_ts", s.stddev},
                       {"avg_ts_per_seq", s.mean / static_cast<double>(r.test.batch)}});
      }
      std::printf("%s\n", out.dump(2).c_str());
    }
    return 0;
  });
}

}  // namespace m2fp4::cli
