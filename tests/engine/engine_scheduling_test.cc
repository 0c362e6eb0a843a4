// The engine's scheduling features on a tiny model: prefix-cache hits, preemption under a tiny
// KV pool, batch invariance, per-request seeds, ngram speculation, abort freeing blocks, and all
// of it at once with aborts from another thread.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "engine_test_util.h"
#include "model/kv_cache.h"

namespace m2fp4 {
namespace {

using testing::Collector;
using testing::greedy_request;
using testing::make_prompt;
using testing::test_options;

class EngineScheduling : public testing::EngineTestBase {};

TEST_F(EngineScheduling, PrefixCacheHitsGiveTheSameGreedyOutput) {
  EngineOptions o = test_options();
  Engine engine(model(), o);
  Collector c;
  const auto shared = make_prompt(21, 40, vocab());
  auto longer = shared;
  for (int32_t t : make_prompt(22, 5, vocab())) longer.push_back(t);
  const uint64_t a = engine.submit(greedy_request(shared, 6, c));
  engine.drain();
  const uint64_t b = engine.submit(greedy_request(longer, 6, c));
  const uint64_t again = engine.submit(greedy_request(shared, 6, c));
  engine.drain();
  EXPECT_EQ(c.get(a).cached_prompt_tokens, 0);
  // Full blocks of 16: two of the 40 shared tokens (the last token is always computed).
  EXPECT_EQ(c.get(b).cached_prompt_tokens, 32);
  EXPECT_EQ(c.get(again).cached_prompt_tokens, 32);
  EXPECT_EQ(c.get(a).tokens, reference_greedy(shared, 6));
  EXPECT_EQ(c.get(again).tokens, c.get(a).tokens);
  EXPECT_EQ(c.get(b).tokens, reference_greedy(longer, 6));
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.prefix_cache_queries, 40 + 45 + 40);
  EXPECT_EQ(s.prefix_cache_hits, 64);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_GT(s.kv_blocks_cached, 0);
}

// A request that ends in the step that computed its prompt (max_tokens 1, a cache warm-up) still
// leaves its full blocks in the prefix cache.
TEST_F(EngineScheduling, OneTokenRequestLeavesItsPrefixCached) {
  EngineOptions o = test_options();
  Engine engine(model(), o);
  Collector c;
  const auto p = make_prompt(24, 40, vocab());
  const uint64_t a = engine.submit(greedy_request(p, 1, c));
  engine.drain();
  const uint64_t b = engine.submit(greedy_request(p, 1, c));
  engine.drain();
  EXPECT_EQ(c.get(a).cached_prompt_tokens, 0);
  EXPECT_EQ(c.get(b).cached_prompt_tokens, 32);  // two full blocks of 16 of the 40
  EXPECT_EQ(c.get(b).tokens, c.get(a).tokens);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EngineScheduling, NoPrefixCachingNoHits) {
  EngineOptions o = test_options();
  o.enable_prefix_caching = false;
  Engine engine(model(), o);
  Collector c;
  const auto p = make_prompt(23, 40, vocab());
  engine.submit(greedy_request(p, 3, c));
  engine.drain();
  const uint64_t b = engine.submit(greedy_request(p, 3, c));
  engine.drain();
  EXPECT_EQ(c.get(b).cached_prompt_tokens, 0);
  EXPECT_EQ(engine.stats().prefix_cache_hits, 0);
  EXPECT_EQ(engine.stats().kv_blocks_cached, 0);
}

TEST_F(EngineScheduling, PreemptionUnderATinyPoolLosesNothing) {
  EngineOptions o = test_options();
  // 12 blocks of 16 tokens; each request needs up to 5 blocks, 6 of them run at once.
  o.kv_cache_memory = 12 * KvCache::block_bytes(model().config, 16, KvCacheDtype::kF32);
  o.max_model_len = 96;
  o.max_num_batched_tokens = 32;
  o.max_num_seqs = 8;
  Engine engine(model(), o);
  EXPECT_EQ(engine.kv_cache_tokens(), 12 * 16);
  Collector c;
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;
  for (uint32_t i = 0; i < 6; ++i) {
    const auto prompt = make_prompt(300 + i, 20 + 3 * i, vocab());
    requests.push_back(greedy_request(prompt, 40, c));
    expected.push_back(reference_greedy(prompt, 40));
  }
  const auto ids = testing::run_together(engine, std::move(requests));
  ASSERT_EQ(ids.size(), 6u);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto r = c.get(ids[i]);
    EXPECT_TRUE(r.finished);
    EXPECT_EQ(r.reason, FinishReason::kLength);
    EXPECT_EQ(r.tokens, expected[i]) << "request " << i;
  }
  const EngineStats s = engine.stats();
  EXPECT_GT(s.preemptions, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.requests_finished, 7);  // and the trigger
}

TEST_F(EngineScheduling, LogitsAndGreedyTokensDoNotDependOnTheBatch) {
  const auto prompt = make_prompt(41, 30, vocab());
  auto request = [&](Collector& c) {
    auto r = greedy_request(prompt, 10, c);
    r.sampling.logprobs = 3;
    return r;
  };
  Collector alone;
  uint64_t alone_id = 0;
  {
    Engine engine(model(), test_options());
    alone_id = engine.submit(request(alone));
    engine.drain();
  }
  Collector batched;
  uint64_t batched_id = 0;
  {
    EngineOptions o = test_options();
    o.max_num_batched_tokens = 40;  // prefills chunked beside decodes
    o.max_num_seqs = 16;
    Engine engine(model(), o);
    std::vector<GenerationRequest> requests;
    for (uint32_t i = 0; i < 4; ++i)
      requests.push_back(greedy_request(make_prompt(50 + i, 25, vocab()), 12, batched));
    requests.push_back(request(batched));
    for (uint32_t i = 0; i < 3; ++i)
      requests.push_back(greedy_request(make_prompt(60 + i, 7, vocab()), 12, batched));
    batched_id = testing::run_together(engine, std::move(requests))[4];
  }
  const auto a = alone.get(alone_id), b = batched.get(batched_id);
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logprobs.size(), 10u);
  ASSERT_EQ(b.logprobs.size(), 10u);
  for (size_t i = 0; i < a.logprobs.size(); ++i) {
    EXPECT_EQ(a.logprobs[i].token, a.tokens[i]);
    EXPECT_NEAR(a.logprobs[i].logprob, b.logprobs[i].logprob, 1e-4);
    ASSERT_EQ(a.logprobs[i].top.size(), 3u);
    EXPECT_EQ(a.logprobs[i].top[0].first, a.tokens[i]);  // greedy: the best one
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(a.logprobs[i].top[k].first, b.logprobs[i].top[k].first);
      EXPECT_NEAR(a.logprobs[i].top[k].second, b.logprobs[i].top[k].second, 1e-4);
    }
  }
}

GenerationRequest sampled_request(std::vector<int32_t> prompt, uint64_t seed, Collector& c) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = seed;
  r.sampling.max_tokens = 16;
  r.sampling.ignore_eos = true;
  r.on_event = c.callback();
  return r;
}

TEST_F(EngineScheduling, SeededSamplingIsReproducibleWhateverIsBatched) {
  const auto prompt = make_prompt(71, 12, vocab());
  Collector c;
  Engine engine(model(), test_options());
  const uint64_t alone = engine.submit(sampled_request(prompt, 42, c));
  engine.drain();
  std::vector<GenerationRequest> requests;
  for (uint32_t i = 0; i < 3; ++i) {
    requests.push_back(sampled_request(make_prompt(80 + i, 9, vocab()), 7 + i, c));
    requests.push_back(sampled_request(prompt, 42, c));
    requests.push_back(sampled_request(prompt, 43, c));
  }
  const auto ids = testing::run_together(engine, std::move(requests));
  std::vector<uint64_t> with_42 = {ids[1], ids[4], ids[7]}, with_43 = {ids[2], ids[5], ids[8]};
  const auto expected = c.get(alone).tokens;
  ASSERT_EQ(expected.size(), 16u);
  for (uint64_t id : with_42) EXPECT_EQ(c.get(id).tokens, expected);
  for (uint64_t id : with_43) EXPECT_EQ(c.get(id).tokens, c.get(with_43[0]).tokens);
  EXPECT_NE(c.get(with_43[0]).tokens, expected);
}

TEST_F(EngineScheduling, MinTokensMasksStopIdsUntilReached) {
  const auto prompt = make_prompt(91, 10, vocab());
  const auto free_run = reference_greedy(prompt, 1);
  Collector c;
  Engine engine(model(), test_options());
  auto r = greedy_request(prompt, 8, c);
  r.sampling.stop_token_ids = {free_run[0]};
  r.sampling.min_tokens = 3;
  const uint64_t id = engine.submit(std::move(r));
  engine.drain();
  const auto got = c.get(id).tokens;
  ASSERT_GE(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(got[i], free_run[0]) << i;
}

// A prompt that repeats itself, so ngram drafts find matches.
std::vector<int32_t> repetitive_prompt(int64_t vocab) {
  std::vector<int32_t> p;
  const auto unit = make_prompt(5, 9, vocab);
  for (int r = 0; r < 4; ++r) p.insert(p.end(), unit.begin(), unit.end());
  return p;
}

TEST_F(EngineScheduling, NgramSpeculationKeepsGreedyOutputIdentical) {
  EngineOptions o = test_options();
  o.speculative = {"ngram", 3, 1, 3};
  Engine engine(model(), o);
  Collector c;
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;
  const auto rep = repetitive_prompt(vocab());
  requests.push_back(greedy_request(rep, 30, c));
  expected.push_back(reference_greedy(rep, 30));
  for (uint32_t i = 0; i < 3; ++i) {
    const auto p = make_prompt(400 + i, 15, vocab());
    requests.push_back(greedy_request(p, 30, c));
    expected.push_back(reference_greedy(p, 30));
  }
  const auto ids = testing::run_together(engine, std::move(requests));
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(c.get(ids[i]).tokens, expected[i]) << i;
  const EngineStats s = engine.stats();
  EXPECT_GT(s.spec_draft_tokens, 0);
  EXPECT_LE(s.spec_accepted_tokens, s.spec_draft_tokens);
  EXPECT_GT(s.spec_accepted_tokens, 0);
  EXPECT_EQ(s.generation_tokens, 4 * 30 + 1);  // and the trigger's
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST_F(EngineScheduling, NgramSpeculationWithSamplingFinishesEveryRequest) {
  EngineOptions o = test_options();
  o.speculative = {"ngram", 4, 2, 4};
  Engine engine(model(), o);
  Collector c;
  std::vector<uint64_t> ids;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    auto r = sampled_request(repetitive_prompt(vocab()), seed, c);
    r.sampling.temperature = 0.3f;
    r.sampling.top_p = 1.0f;
    ids.push_back(engine.submit(std::move(r)));
  }
  engine.drain();
  for (uint64_t id : ids) {
    EXPECT_EQ(c.get(id).tokens.size(), 16u);
    EXPECT_EQ(c.get(id).reason, FinishReason::kLength);
  }
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EngineScheduling, AbortFreesTheBlocksAtOnce) {
  Engine engine(model(), test_options());
  Collector c;
  std::atomic<int> events{0};
  GenerationRequest r = greedy_request(make_prompt(97, 50, vocab()), 1000, c);
  auto inner = r.on_event;
  r.on_event = [&, inner](const TokenEvent& e) {
    inner(e);
    events += 1;
  };
  const uint64_t id = engine.submit(std::move(r));
  while (events < 3) std::this_thread::yield();
  EXPECT_GT(engine.stats().kv_blocks_used, 0);
  engine.abort(id);
  engine.drain();
  EXPECT_EQ(c.get(id).reason, FinishReason::kAbort);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
  EXPECT_EQ(engine.stats().running, 0);
}

TEST_F(EngineScheduling, Fp8KvCacheServesGreedyRequests) {
  EngineOptions o = test_options();
  o.kv_cache_dtype = KvCacheDtype::kFp8E4M3;
  Engine engine(model(), o);
  Collector c;
  const auto p = make_prompt(111, 33, vocab());
  const uint64_t a = engine.submit(greedy_request(p, 5, c));
  engine.drain();
  const uint64_t b = engine.submit(greedy_request(p, 5, c));  // prefix hit on FP8 blocks
  engine.drain();
  EXPECT_EQ(c.get(a).tokens.size(), 5u);
  EXPECT_EQ(c.get(b).cached_prompt_tokens, 32);
  EXPECT_EQ(c.get(a).tokens, c.get(b).tokens);
}

// Everything at once under a small pool: shared prefixes, speculation, FP8 KV, sampled and greedy
// requests, aborts from another thread. Every request ends exactly once; greedy ones that were
// not aborted equal the plain loop; no block stays referenced.
TEST_F(EngineScheduling, MixedLoadWithAbortsKeepsEveryPromise) {
  EngineOptions o = test_options();
  o.kv_cache_memory = 20 * KvCache::block_bytes(model().config, 16, KvCacheDtype::kFp8E4M3);
  o.kv_cache_dtype = KvCacheDtype::kFp8E4M3;
  o.max_model_len = 160;
  o.max_num_seqs = 12;
  o.max_num_batched_tokens = 48;
  o.speculative = {"ngram", 3, 1, 3};
  Engine engine(model(), o);
  Collector c;
  const auto system = make_prompt(500, 35, vocab());
  std::vector<GenerationRequest> requests;
  for (uint32_t i = 0; i < 24; ++i) {
    auto prompt = system;
    const auto own = make_prompt(600 + i, 3 + i % 7, vocab());
    prompt.insert(prompt.end(), own.begin(), own.end());
    GenerationRequest r =
        i % 3 == 2 ? sampled_request(prompt, i, c) : greedy_request(prompt, 10 + i % 20, c);
    requests.push_back(std::move(r));
  }
  std::vector<uint64_t> ids;
  std::thread aborter;
  GenerationRequest trigger = greedy_request({1}, 1, c);
  trigger.on_event = [&](const TokenEvent& e) {
    if (!e.finished) return;
    for (auto& r : requests) ids.push_back(engine.submit(std::move(r)));
    aborter = std::thread([&engine, abort_ids = std::vector<uint64_t>{ids[3], ids[10], ids[17]}] {
      for (uint64_t id : abort_ids) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        engine.abort(id);
      }
    });
  };
  engine.submit(std::move(trigger));
  engine.drain();
  aborter.join();
  engine.drain();
  ASSERT_EQ(ids.size(), 24u);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto r = c.get(ids[i]);
    EXPECT_TRUE(r.finished) << i;
    if (r.reason == FinishReason::kAbort) continue;
    EXPECT_EQ(r.reason, FinishReason::kLength) << i;
    if (i % 3 == 2) {
      EXPECT_EQ(r.tokens.size(), 16u) << i;
    } else {
      auto prompt = system;
      const auto own = make_prompt(600 + static_cast<uint32_t>(i), 3 + i % 7, vocab());
      prompt.insert(prompt.end(), own.begin(), own.end());
      EXPECT_EQ(r.tokens,
                reference_greedy(prompt, int64_t(10 + i % 20), false, KvCacheDtype::kFp8E4M3))
          << i;
    }
  }
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.running + s.waiting, 0);
  EXPECT_EQ(s.requests_finished, 25);
  EXPECT_GT(s.prefix_cache_hits, 0);
}

}  // namespace
}  // namespace m2fp4
