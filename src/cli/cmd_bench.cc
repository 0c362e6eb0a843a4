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
  ForwardProfile profile;   // the timed repetitions'
  int64_t layers = 0, experts_per_token = 0;
};

// Weight bytes one decode step of a single sequence streams: the dense matrices and top-k
// experts per layer (at the mean size of the experts this test ran).
double single_sequence_bytes(const Result& r) {
  const ForwardProfile& p = r.profile;
  if (p.forwards == 0 || p.experts_run == 0) return 0.0;
  const double per_expert = p.expert_bytes / static_cast<double>(p.experts_run);
  return p.dense_bytes / static_cast<double>(p.forwards) +
         static_cast<double>(r.layers * r.experts_per_token) * per_expert;
}

// Per tg test: where a step's time goes, the weight bytes it streams, the experts per layer its
// tokens touch, and the bandwidth bound on aggregate(B) / aggregate(1): a step of B sequences
// cannot be cheaper than streaming its bytes, so the ratio is at most B * bytes(1) / bytes(B).
void print_profile(const std::vector<Result>& results) {
  std::printf("\n| model | test | ms/step |");
  for (int ph = 0; ph < ForwardProfile::kPhases; ++ph)
    std::printf(" %s |", ForwardProfile::name(ph));
  std::printf(" other | MB/step | GB/s | experts/layer | bound vs 1 seq | measured vs 1 seq |\n");
  std::printf("| --- | --- | ---: |");
  for (int ph = 0; ph < ForwardProfile::kPhases; ++ph) std::printf(" ---: |");
  std::printf(" ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Result& r : results) {
    const ForwardProfile& p = r.profile;
    if (r.test.n_gen == 0 || p.forwards == 0) continue;
    const double steps = static_cast<double>(p.forwards);
    double total = 0.0;
    for (double s : r.seconds) total += s;
    double phases = 0.0;
    std::printf("| %s | %s | %.2f |", r.model.c_str(), r.test.name().c_str(), 1e3 * total / steps);
    for (int ph = 0; ph < ForwardProfile::kPhases; ++ph) {
      phases += p.seconds[ph];
      std::printf(" %.2f |", 1e3 * p.seconds[ph] / steps);
    }
    const double bytes = (p.dense_bytes + p.expert_bytes) / steps;
    const double bytes1 = single_sequence_bytes(r);
    const double bound = static_cast<double>(r.test.batch) * bytes1 / bytes;
    std::string measured = "";
    for (const Result& one : results) {
      if (one.model_path == r.model_path && one.test.n_gen > 0 && one.test.batch == 1 &&
          one.test.depth == r.test.depth && one.test.threads == r.test.threads) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2fx", stats(r.tps).mean / stats(one.tps).mean);
        measured = buf;
      }
    }
    std::printf(" %.2f | %.1f | %.1f | %.1f | %.2fx | %s |\n", 1e3 * (total - phases) / steps,
                bytes / 1e6, bytes * steps / total / 1e9,
                static_cast<double>(p.experts_run) / (steps * static_cast<double>(r.layers)), bound,
                measured.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  CLI::App app(
      "Prefill and decode throughput of checkpoints on this machine (llama-bench's interface).",
      "m2fp4 bench");
  std::vector<std::string> models;
  std::vector<int64_t> prompts = {512}, gens = {128}, depths = {0}, batches = {1};
  std::vector<int> threads = {0};
  int repetitions = 5;
  bool json_out = false, no_warmup = false, profile = false;
  std::string moe_schedule = "auto";
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
  app.add_flag("--profile", profile,
               "after the table, per tg test: ms per step by phase, weight MB streamed per step, "
               "experts per layer, and the bandwidth bound on aggregate tok/s vs one sequence");
  app.add_option("--moe-schedule", moe_schedule,
                 "how the MoE spreads routed experts over the threads: auto, rows (each matrix's "
                 "rows split across threads) or experts (one task per expert)")
      ->check(CLI::IsMember({"auto", "rows", "experts"}));
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
        ModelOptions options{runtime.w4a4};
        options.moe_schedule = moe_schedule == "rows"      ? MoeSchedule::kRowSplit
                               : moe_schedule == "experts" ? MoeSchedule::kExpertTasks
                                                           : MoeSchedule::kAuto;
        MiniMaxM2 net(c, model->weights, pool, options);
        KvCache cache(c, context, 0, parse_kv_cache_dtype(runtime.kv_cache_dtype));
        std::vector<float> logits;
        const int64_t seqs = t.n_prompt > 0 ? 1 : t.batch;
        prefill(net, cache, c, seqs, 0, t.depth, logits);
        if (!no_warmup) run_once(net, cache, c, t, logits);
        Result r;
        r.model = name;
        r.model_path = dir;
        r.size_bytes = static_cast<double>(model->weights.total_bytes());
        r.params = parameter_count(c);
        r.test = t;
        r.layers = c.num_hidden_layers;
        r.experts_per_token = c.num_experts_per_tok;
        if (profile) net.set_profile(&r.profile);
        const double tokens = static_cast<double>(t.n_prompt > 0 ? t.n_prompt : t.n_gen * t.batch);
        for (int rep = 0; rep < repetitions; ++rep) {
          const double s = run_once(net, cache, c, t, logits);
          r.seconds.push_back(s);
          r.tps.push_back(tokens / s);
        }
        net.set_profile(nullptr);
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
        const ForwardProfile& p = r.profile;
        if (profile && p.forwards > 0) {
          const double steps = static_cast<double>(p.forwards);
          nlohmann::ordered_json phases = nlohmann::ordered_json::object();
          for (int ph = 0; ph < ForwardProfile::kPhases; ++ph) {
            phases[ForwardProfile::name(ph)] = 1e3 * p.seconds[ph] / steps;
          }
          const double bytes = (p.dense_bytes + p.expert_bytes) / steps;
          nlohmann::ordered_json& row = out.back();
          row["phase_ms_per_step"] = phases;
          row["weight_bytes_per_step"] = bytes;
          row["dense_weight_bytes_per_step"] = p.dense_bytes / steps;
          row["experts_per_layer"] =
              static_cast<double>(p.experts_run) / (steps * static_cast<double>(r.layers));
          if (r.test.n_gen > 0) {
            row["bandwidth_bound_vs_1_seq"] =
                static_cast<double>(r.test.batch) * single_sequence_bytes(r) / bytes;
          }
        }
      }
      std::printf("%s\n", out.dump(2).c_str());
    } else if (profile) {
      print_profile(results);
    }
    return 0;
  });
}

}  // namespace m2fp4::cli
