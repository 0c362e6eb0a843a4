// The engine end to end on a tiny model: greedy output equals the plain generation loop, alone
// and batched; finish reasons; abort; bad requests.
#include <gtest/gtest.h>

#include <set>

#include "base/error.h"
#include "engine_test_util.h"

namespace m2fp4 {
namespace {

using testing::Collector;
using testing::greedy_request;
using testing::make_prompt;

class EngineTest : public testing::EngineTestBase {};

TEST_F(EngineTest, GreedyAloneEqualsPlainLoop) {
  const auto prompt = make_prompt(1, 13, vocab());
  const auto expected = reference_greedy(prompt, 12);
  EngineOptions o = testing::test_options();
  Engine engine(model(), o);
  Collector c;
  const uint64_t id = engine.submit(greedy_request(prompt, 12, c));
  engine.drain();
  const auto r = c.get(id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.reason, FinishReason::kLength);
  EXPECT_EQ(r.tokens, expected);
}

TEST_F(EngineTest, ManyConcurrentRequestsEachEqualAlone) {
  EngineOptions o = testing::test_options();
  o.max_num_seqs = 5;             // fewer slots than requests: some wait
  o.max_num_batched_tokens = 24;  // prompts are chunked
  Engine engine(model(), o);
  Collector c;
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;
  for (uint32_t i = 0; i < 9; ++i) {
    const auto prompt = make_prompt(100 + i, 5 + 7 * i, vocab());
    const int64_t n = 4 + i % 5;
    requests.push_back(greedy_request(prompt, n, c));
    expected.push_back(reference_greedy(prompt, n));
  }
  const auto ids = testing::run_together(engine, std::move(requests));
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto r = c.get(ids[i]);
    EXPECT_TRUE(r.finished);
    EXPECT_EQ(r.tokens, expected[i]) << "request " << i;
  }
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.requests_finished, 10);  // and the trigger
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
}

TEST_F(EngineTest, StopsAtEosAndStopIdsAfterMinTokens) {
  // The greedy continuation of a prompt; make its 3rd token a stop id.
  const auto prompt = make_prompt(7, 9, vocab());
  const auto free_run = reference_greedy(prompt, 8);
  EngineOptions o = testing::test_options();
  Engine engine(model(), o);
  Collector c;
  auto r1 = greedy_request(prompt, 8, c);
  r1.sampling.stop_token_ids = {free_run[2]};
  const uint64_t id1 = engine.submit(std::move(r1));
  engine.drain();
  const auto got = c.get(id1);
  EXPECT_EQ(got.reason, FinishReason::kStop);
  // Stops at the first occurrence of the stop id, which is included.
  std::vector<int32_t> want;
  for (int32_t t : free_run) {
    want.push_back(t);
    if (t == free_run[2]) break;
  }
  EXPECT_EQ(got.tokens, want);
}

TEST_F(EngineTest, AbortEndsARequestWithAbort) {
  EngineOptions o = testing::test_options();
  Engine engine(model(), o);
  Collector c;
  const uint64_t id = engine.submit(greedy_request(make_prompt(3, 20, vocab()), 500, c));
  engine.abort(id);
  engine.abort(987654);  // unknown: ignored
  engine.drain();
  const auto r = c.get(id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.reason, FinishReason::kAbort);
  EXPECT_LT(r.tokens.size(), 500u);
}

TEST_F(EngineTest, BadRequestsThrowClearErrors) {
  EngineOptions o = testing::test_options();
  o.threads = 1;
  o.max_model_len = 64;
  Engine engine(model(), o);
  Collector c;
  EXPECT_THROW(engine.submit(greedy_request({}, 4, c)), Error);
  EXPECT_THROW(engine.submit(greedy_request({1, int32_t(vocab())}, 4, c)), Error);
  EXPECT_THROW(engine.submit(greedy_request({1, -1}, 4, c)), Error);
  EXPECT_THROW(engine.submit(greedy_request(make_prompt(1, 60, vocab()), 5, c)), Error);
  EXPECT_THROW(engine.submit(greedy_request({1, 2}, 0, c)), Error);
  auto bad_p = greedy_request({1, 2}, 4, c);
  bad_p.sampling.top_p = 0.0f;
  EXPECT_THROW(engine.submit(std::move(bad_p)), Error);
  EXPECT_EQ(engine.max_model_len(), 64);
}

TEST_F(EngineTest, FrequencyPenaltyForbidsRepeats) {
  // A penalty far above the tiny model's logit range: greedy never picks a generated token again.
  Engine engine(model(), testing::test_options());
  Collector c;
  auto r = greedy_request(make_prompt(17, 6, vocab()), 40, c);
  r.sampling.frequency_penalty = 1000.0f;
  const uint64_t id = engine.submit(std::move(r));
  auto plain = greedy_request(make_prompt(17, 6, vocab()), 40, c);
  const uint64_t plain_id = engine.submit(std::move(plain));
  engine.drain();
  const auto got = c.get(id).tokens;
  ASSERT_EQ(got.size(), 40u);
  std::set<int32_t> distinct(got.begin(), got.end());
  EXPECT_EQ(distinct.size(), got.size());
  // Without the penalty this prompt's greedy continuation does repeat (else the test is moot).
  const auto free_run = c.get(plain_id).tokens;
  EXPECT_LT(std::set<int32_t>(free_run.begin(), free_run.end()).size(), free_run.size());
}

TEST_F(EngineTest, KvMemoryFromAFractionOfFreeRamOrAClearError) {
  EngineOptions o = testing::test_options();
  o.kv_cache_memory = 0;
  o.kv_memory_fraction = 0.001;
  {
    Engine engine(model(), o);
    EXPECT_GT(engine.kv_cache_tokens(), 0);
    EXPECT_EQ(engine.kv_cache_tokens() % 16, 0);
    EXPECT_LE(engine.max_model_len(), engine.kv_cache_tokens());
  }
  o.kv_cache_memory = 100;  // less than one block
  EXPECT_THROW(Engine(model(), o), Error);
  o.kv_cache_memory = int64_t{1} << 20;  // 128 blocks of 16 = 2048 tokens
  o.max_model_len = 4096;
  EXPECT_THROW(Engine(model(), o), Error);
  o.max_model_len = 0;  // defaults to the model's 4096, capped by the cache
  Engine capped(model(), o);
  EXPECT_EQ(capped.max_model_len(), 2048);
  o.speculative = {"eagle", 3, 1, 3};
  EXPECT_THROW(Engine(model(), o), Error);
  o.speculative = {};
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 4;  // some running sequence could not decode every step
  EXPECT_THROW(Engine(model(), o), Error);
}

}  // namespace
}  // namespace m2fp4
