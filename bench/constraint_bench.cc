// Structured-output masking cost on a 200k vocabulary (gpt-oss's o200k tokenizer from
// shared/tokenizers; M2FP4_SHARED_DIR overrides where shared/ is): building the vocabulary trie
// once, one mask per sampled step (trie walk) at typical matcher states, the brute force it
// replaces (every token's bytes through its own matcher copy), and the single-token check a
// greedy step makes first.
//
//   build/constraint_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "text/constraints/json_matcher.h"
#include "text/constraints/token_trie.h"
#include "text/constraints/tool_call_matcher.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4 {
namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer t = [] {
    const char* shared = std::getenv("M2FP4_SHARED_DIR");
    return Tokenizer::load(std::string(shared ? shared : "../shared") + "/tokenizers/gpt-oss");
  }();
  return t;
}

const TokenTrie& trie() {
  static const TokenTrie t(tokenizer());
  return t;
}

JsonMatcher json_after(const std::string& text) {
  JsonMatcher m(kJsonObject);
  if (!m.feed(text)) std::abort();
  return m;
}

const std::vector<std::pair<std::string, std::string>> kJsonStates = {
    {"start", ""},
    {"key", "{\"na"},
    {"value", "{\"name\": "},
    {"string", "{\"name\": \"Par"},
    {"number", "{\"n\": 12"},
};

void BM_TrieBuild(benchmark::State& state) {
  (void)tokenizer();  // loaded outside the timing
  for (auto _ : state) {
    TokenTrie t(tokenizer());
    benchmark::DoNotOptimize(t.nodes());
  }
  state.counters["nodes"] = static_cast<double>(trie().nodes());
}
BENCHMARK(BM_TrieBuild)->Unit(benchmark::kMillisecond);

void BM_JsonMask(benchmark::State& state) {
  const auto& [name, text] = kJsonStates[static_cast<size_t>(state.range(0))];
  state.SetLabel(name);
  const JsonMatcher m = json_after(text);
  std::vector<uint8_t> allowed(static_cast<size_t>(tokenizer().vocab_size()));
  size_t n = 0;
  for (auto _ : state) {
    std::fill(allowed.begin(), allowed.end(), 0);
    trie().fill_allowed(m, allowed);
    benchmark::ClobberMemory();
  }
  for (uint8_t a : allowed) n += a;
  state.counters["allowed"] = static_cast<double>(n);
}
BENCHMARK(BM_JsonMask)->DenseRange(0, 4)->Unit(benchmark::kMicrosecond);

// What a repeated state costs with the serving constraint's mask cache (output_constraint.cc):
// one copy of a cached mask.
void BM_CachedMaskCopy(benchmark::State& state) {
  std::vector<uint8_t> cached(static_cast<size_t>(tokenizer().vocab_size()));
  trie().fill_allowed(json_after("{\"name\": \"Par"), cached);
  std::vector<uint8_t> allowed(cached.size());
  for (auto _ : state) {
    allowed = cached;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_CachedMaskCopy)->Unit(benchmark::kMicrosecond);

void BM_JsonMaskBruteForce(benchmark::State& state) {
  const auto& [name, text] = kJsonStates[static_cast<size_t>(state.range(0))];
  state.SetLabel(name);
  const JsonMatcher m = json_after(text);
  std::vector<uint8_t> allowed(static_cast<size_t>(tokenizer().vocab_size()));
  for (auto _ : state) {
    for (int32_t id = 0; id < tokenizer().vocab_size(); ++id) {
      if (!trie().contains(id)) continue;
      JsonMatcher probe = m;
      allowed[id] = probe.feed(trie().token_bytes(id));
    }
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_JsonMaskBruteForce)->DenseRange(0, 4, 3)->Unit(benchmark::kMicrosecond);

void BM_ToolMask(benchmark::State& state) {
  const auto grammar = ToolCallGrammar::build(nlohmann::json::parse(R"([
      {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}},
      {"type": "function", "function": {"name": "search", "parameters": {"type": "object",
        "properties": {"query": {"type": "string"}}}}}])"),
                                              true);
  const std::string text = state.range(0) == 0 ? "<minimax:tool_call>\n<invoke name=\""
                                               : "<minimax:tool_call>\n<invoke name=\"search\">\n"
                                                 "<parameter name=\"query\">weather in";
  state.SetLabel(state.range(0) == 0 ? "tool name" : "free-text value");
  ToolCallMatcher m(grammar.get());
  if (!m.feed(text)) std::abort();
  std::vector<uint8_t> allowed(static_cast<size_t>(tokenizer().vocab_size()));
  for (auto _ : state) {
    std::fill(allowed.begin(), allowed.end(), 0);
    trie().fill_allowed(m, allowed);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_ToolMask)->DenseRange(0, 1)->Unit(benchmark::kMicrosecond);

void BM_SingleTokenCheck(benchmark::State& state) {
  const JsonMatcher m = json_after("{\"name\": \"Par");
  const int32_t id = tokenizer().encode("is")[0];
  for (auto _ : state) {
    JsonMatcher probe = m;
    benchmark::DoNotOptimize(probe.feed(trie().token_bytes(id)));
  }
}
BENCHMARK(BM_SingleTokenCheck);

}  // namespace
}  // namespace m2fp4

BENCHMARK_MAIN();
