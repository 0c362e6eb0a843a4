// Serving-engine throughput: aggregate decode tok/s of C concurrent greedy requests through
// m2fp4::Engine (continuous batching, paged KV), next to the plain single-sequence decode loop
// (MiniMaxM2::forward one token at a time, as `run` does) measured in the same run. Aggregate
// decode follows llama-benchy's batch formula: (sum of tokens - C) / (last token - first token).
// Optionally with ngram speculation on a repetitive prompt, and a prefix-cache TTFT check.
//
//   build/bench/engine_bench --model DIR [--threads 2] [--concurrency 1,4,8] [--prompt 128]
//                            [--gen 64] [--spec K] [--kv-dtype auto|fp8] [--depth 0]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/timer.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/minimax_m2.h"

namespace m2fp4 {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  int threads = 2;
  std::vector<int64_t> concurrency = {1, 4, 8};
  int64_t prompt = 128;
  int64_t gen = 64;
  int64_t spec = 0;
  int64_t depth = 0;  // shared prefix (system prompt) before each request's own prompt
  std::string kv_dtype = "auto";
};

std::vector<int64_t> parse_list(const std::string& v) {
  std::vector<int64_t> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      o.model = v;
    else if (k == "--threads")
      o.threads = std::stoi(v);
    else if (k == "--concurrency")
      o.concurrency = parse_list(v);
    else if (k == "--prompt")
      o.prompt = std::stoll(v);
    else if (k == "--gen")
      o.gen = std::stoll(v);
    else if (k == "--spec")
      o.spec = std::stoll(v);
    else if (k == "--depth")
      o.depth = std::stoll(v);
    else if (k == "--kv-dtype")
      o.kv_dtype = v;
    else {
      std::fprintf(stderr, "engine_bench: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (o.model.empty()) {
    std::fprintf(stderr, "engine_bench: --model DIR is required\n");
    std::exit(2);
  }
  return o;
}

std::vector<int32_t> prompt_tokens(uint32_t seed, int64_t n, int64_t vocab, bool repetitive) {
  std::vector<int32_t> p;
  uint32_t x = seed * 2654435761u + 1u;
  const int64_t period = repetitive ? 24 : n;
  for (int64_t i = 0; i < n; ++i) {
    if (i >= period) {
      p.push_back(p[static_cast<size_t>(i - period)]);
      continue;
    }
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab - 10)) + 5);
  }
  return p;
}

double plain_decode_tps(const LoadedModel& m, const Options& o) {
  ThreadPool pool(o.threads);
  MiniMaxM2 net(m.config, m.weights, pool);
  KvCache cache(m.config, o.prompt + o.gen + 8);
  const auto prompt = prompt_tokens(1, o.prompt, m.config.vocab_size, false);
  Batch b;
  for (size_t i = 0; i < prompt.size(); ++i)
    b.add(prompt[i], int32_t(i), 0, i + 1 == prompt.size());
  std::vector<float> logits;
  net.forward(b, cache, logits);
  Timer t;
  int32_t pos = static_cast<int32_t>(prompt.size());
  for (int64_t i = 0; i < o.gen; ++i) {
    const int32_t next = argmax(logits.data(), m.config.vocab_size);
    b.clear();
    b.add(next, pos++, 0, true);
    net.forward(b, cache, logits);
  }
  return static_cast<double>(o.gen) / t.seconds();
}

struct RunResult {
  double decode_tps = 0, mean_ttft_ms = 0;
  EngineStats stats;
};

RunResult run_engine(Engine& engine, const LoadedModel& m, const Options& o, int64_t c,
                     uint32_t seed_base, const std::vector<int32_t>& shared_prefix) {
  std::mutex mu;
  std::condition_variable cv;
  struct Times {
    Clock::time_point start, first, last;
    int64_t tokens = 0;
    bool done = false;
  };
  std::map<uint64_t, Times> times;
  std::vector<GenerationRequest> requests;
  for (int64_t i = 0; i < c; ++i) {
    GenerationRequest r;
    r.prompt = shared_prefix;
    const auto own = prompt_tokens(seed_base + static_cast<uint32_t>(i), o.prompt,
                                   m.config.vocab_size, o.spec > 0);
    r.prompt.insert(r.prompt.end(), own.begin(), own.end());
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = o.gen;
    r.sampling.ignore_eos = true;
    r.on_event = [&](const TokenEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      Times& t = times[e.request_id];
      const auto now = Clock::now();
      if (t.tokens == 0 && !e.tokens.empty()) t.first = now;
      if (!e.tokens.empty()) t.last = now;
      t.tokens += static_cast<int64_t>(e.tokens.size());
      if (e.finished) t.done = true;
      cv.notify_all();
    };
    requests.push_back(std::move(r));
  }
  const auto start = Clock::now();
  for (auto& r : requests) {
    const uint64_t id = engine.submit(std::move(r));
    std::lock_guard<std::mutex> lock(mu);
    times[id].start = start;
  }
  engine.drain();
  RunResult out;
  Clock::time_point min_first = Clock::time_point::max(), max_last = Clock::time_point::min();
  int64_t tokens = 0;
  double ttft = 0;
  for (const auto& [id, t] : times) {
    min_first = std::min(min_first, t.first);
    max_last = std::max(max_last, t.last);
    tokens += t.tokens;
    ttft += std::chrono::duration<double, std::milli>(t.first - t.start).count();
  }
  const double span = std::chrono::duration<double>(max_last - min_first).count();
  out.decode_tps = static_cast<double>(tokens - c) / span;
  out.mean_ttft_ms = ttft / static_cast<double>(c);
  out.stats = engine.stats();
  return out;
}

int main_impl(int argc, char** argv) {
  const Options o = parse(argc, argv);
  set_log_level(LogLevel::kInfo);  // the engine's KV-capacity line
  auto model = LoadedModel::open(o.model);
  std::printf("model %s, %d threads, prompt %lld, gen %lld, depth %lld, spec %lld, kv %s\n",
              o.model.c_str(), o.threads, static_cast<long long>(o.prompt),
              static_cast<long long>(o.gen), static_cast<long long>(o.depth),
              static_cast<long long>(o.spec), o.kv_dtype.c_str());
  const double plain = plain_decode_tps(*model, o);
  std::printf("plain decode loop (1 sequence): %.1f tok/s\n", plain);
  EngineOptions eo;
  eo.threads = o.threads;
  eo.kv_cache_memory = int64_t{2} << 30;
  eo.kv_cache_dtype = parse_kv_cache_dtype(o.kv_dtype);
  if (o.spec > 0) eo.speculative = {"ngram", o.spec, 2, 4};
  Engine engine(*model, eo);
  const auto prefix = prompt_tokens(999, o.depth, model->config.vocab_size, false);
  std::printf(
      "| concurrency | aggregate decode tok/s | per seq tok/s | x of c=1 | mean TTFT ms |"
      " prefix hits/queries | spec accepted/drafted |\n|---|---|---|---|---|---|---|\n");
  double base = 0;
  uint32_t seed = 10;
  for (int64_t c : o.concurrency) {
    const RunResult r = run_engine(engine, *model, o, c, seed, prefix);
    seed += static_cast<uint32_t>(c) + 100;
    if (base == 0) base = r.decode_tps;
    std::printf("| %lld | %.1f | %.1f | %.2f | %.1f | %lld/%lld | %lld/%lld |\n",
                static_cast<long long>(c), r.decode_tps, r.decode_tps / static_cast<double>(c),
                r.decode_tps / base, r.mean_ttft_ms,
                static_cast<long long>(r.stats.prefix_cache_hits),
                static_cast<long long>(r.stats.prefix_cache_queries),
                static_cast<long long>(r.stats.spec_accepted_tokens),
                static_cast<long long>(r.stats.spec_draft_tokens));
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
    std::fprintf(stderr, "engine_bench: %s\n", e.what());
    return 1;
  }
}
