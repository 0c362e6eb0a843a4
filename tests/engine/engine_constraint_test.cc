// Token constraints (engine/token_constraint.h) on a tiny random model: only allowed tokens come
// out, EOS only once the constraint is complete, greedy output equals a masked plain loop with and
// without ngram speculation, sampled requests stay inside the constraint, and a constraint that
// allows nothing ends its request with an error.
#include <gtest/gtest.h>

#include <limits>

#include "engine/token_constraint.h"
#include "engine_test_util.h"

namespace m2fp4 {
namespace {

using testing::Collector;
using testing::make_prompt;

constexpr int32_t kEos = 2;  // the fixture's eos_token_id

// Free for the first `free` tokens, then tokens with id % modulus == remainder for `length`
// tokens, then complete.
class ModuloConstraint : public TokenConstraint {
 public:
  ModuloConstraint(int free, int length, int32_t modulus, int32_t remainder)
      : free_(free), length_(length), modulus_(modulus), remainder_(remainder) {}
  bool active() const override { return seen_ >= free_; }
  bool complete() const override { return seen_ >= free_ + length_; }
  bool allows(int32_t t) const override { return t % modulus_ == remainder_; }
  void accept(int32_t) override { ++seen_; }

  static bool allowed(int32_t t, int32_t modulus, int32_t remainder) {
    return t % modulus == remainder;
  }

 private:
  int free_, length_;
  int32_t modulus_, remainder_;
  int seen_ = 0;
};

class EngineConstraint : public testing::EngineTestBase {
 protected:
  // The plain greedy loop with the constraint's mask applied by hand (EOS masked while the
  // constraint is active and incomplete, only EOS once complete); stops at EOS.
  std::vector<int32_t> masked_greedy(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                     int free, int length, int32_t modulus,
                                     int32_t remainder) const {
    ThreadPool pool(2);
    MiniMaxM2 net(model().config, model().weights, pool);
    KvCache cache(model().config, 1024, 0, KvCacheDtype::kF32);
    Batch b;
    for (size_t i = 0; i < prompt.size(); ++i) {
      b.add(prompt[i], int32_t(i), 0, i + 1 == prompt.size());
    }
    std::vector<float> logits;
    net.forward(b, cache, logits);
    std::vector<int32_t> out;
    int32_t pos = static_cast<int32_t>(prompt.size());
    for (;;) {
      const int n = static_cast<int>(out.size());
      if (n >= free) {
        for (int64_t t = 0; t < vocab(); ++t) {
          const int32_t id = static_cast<int32_t>(t);
          const bool ok = n >= free + length
                              ? id == kEos
                              : id != kEos && ModuloConstraint::allowed(id, modulus, remainder);
          if (!ok) logits[t] = -std::numeric_limits<float>::infinity();
        }
      }
      const int32_t t = argmax(logits.data(), vocab());
      out.push_back(t);
      if (static_cast<int64_t>(out.size()) == max_tokens || t == kEos) break;
      b.clear();
      b.add(t, pos++, 0, true);
      net.forward(b, cache, logits);
    }
    return out;
  }
};

GenerationRequest constrained(std::vector<int32_t> prompt, int64_t max_tokens, float temperature,
                              std::shared_ptr<TokenConstraint> c, Collector& col) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = temperature;
  r.sampling.max_tokens = max_tokens;
  r.sampling.seed = 42;
  r.constraint = std::move(c);
  r.on_event = col.callback();
  return r;
}

// A prompt that repeats itself, so ngram drafts find matches.
std::vector<int32_t> repetitive_prompt(int64_t vocab) {
  std::vector<int32_t> p;
  const auto unit = make_prompt(5, 9, vocab);
  for (int r = 0; r < 4; ++r) p.insert(p.end(), unit.begin(), unit.end());
  return p;
}

TEST_F(EngineConstraint, GreedyEqualsMaskedLoopWithAndWithoutNgramSpeculation) {
  struct Case {
    std::vector<int32_t> prompt;
    int free, length;
    int32_t modulus, remainder;
  };
  const std::vector<Case> cases = {
      {repetitive_prompt(vocab()), 0, 12, 2, 1},
      {repetitive_prompt(vocab()), 4, 10, 3, 1},
      {make_prompt(7, 20, vocab()), 2, 8, 5, 3},
  };
  for (bool speculate : {false, true}) {
    EngineOptions o = testing::test_options();
    if (speculate) o.speculative = {"ngram", 3, 1, 3};
    Engine engine(model(), o);
    Collector col;
    std::vector<GenerationRequest> requests;
    for (const Case& k : cases) {
      requests.push_back(constrained(
          k.prompt, 40, 0.0f,
          std::make_shared<ModuloConstraint>(k.free, k.length, k.modulus, k.remainder), col));
    }
    const auto ids = testing::run_together(engine, std::move(requests));
    int reached = 0;  // cases whose free part did not end at EOS
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& k = cases[i];
      const auto r = col.get(ids[i]);
      const auto expected = masked_greedy(k.prompt, 40, k.free, k.length, k.modulus, k.remainder);
      EXPECT_EQ(r.tokens, expected) << "case " << i << " speculate " << speculate;
      ASSERT_TRUE(r.finished);
      EXPECT_EQ(r.reason, FinishReason::kStop) << i;
      // If the free part did not end at EOS, the constrained part is exactly `length` tokens.
      if (r.tokens.size() > static_cast<size_t>(k.free)) {
        ++reached;
        EXPECT_EQ(r.tokens.size(), static_cast<size_t>(k.free + k.length + 1)) << i;
        EXPECT_EQ(r.tokens.back(), kEos);
        for (size_t j = k.free; j + 1 < r.tokens.size(); ++j) {
          EXPECT_EQ(r.tokens[j] % k.modulus, k.remainder) << i << " token " << j;
        }
      }
    }
    EXPECT_EQ(reached, 3);
    if (speculate) {
      EXPECT_GT(engine.stats().spec_draft_tokens, 0);
    }
  }
}

// Preemption by recompute keeps the output, so a constraint advanced only on accepted tokens
// stays in step: outputs equal the masked plain loop under a pool too small for all requests.
TEST_F(EngineConstraint, PreemptionKeepsConstraintsInStep) {
  EngineOptions o = testing::test_options();
  o.kv_cache_memory = 12 * KvCache::block_bytes(model().config, 16, KvCacheDtype::kF32);
  o.max_model_len = 96;
  o.max_num_batched_tokens = 32;
  o.max_num_seqs = 8;
  Engine engine(model(), o);
  Collector col;
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;
  for (uint32_t i = 0; i < 6; ++i) {
    const auto prompt = make_prompt(300 + i, 20 + 3 * i, vocab());
    const int free = static_cast<int>(i % 3);
    requests.push_back(
        constrained(prompt, 40, 0.0f, std::make_shared<ModuloConstraint>(free, 35, 2, 1), col));
    expected.push_back(masked_greedy(prompt, 40, free, 35, 2, 1));
  }
  const auto ids = testing::run_together(engine, std::move(requests));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(col.get(ids[i]).tokens, expected[i]) << "request " << i;
  }
  EXPECT_GT(engine.stats().preemptions, 0);
}

TEST_F(EngineConstraint, SampledRequestsOnlyProduceAllowedTokens) {
  for (bool speculate : {false, true}) {
    EngineOptions o = testing::test_options();
    if (speculate) o.speculative = {"ngram", 3, 1, 3};
    Engine engine(model(), o);
    Collector col;
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 6; ++i) {
      GenerationRequest r = constrained(repetitive_prompt(vocab()), 30, 1.0f,
                                        std::make_shared<ModuloConstraint>(1, 15, 4, 3), col);
      r.sampling.seed = 100 + static_cast<uint64_t>(i);
      if (i % 2 == 1) {
        r.sampling.top_k = 3;
        r.sampling.top_p = 0.9f;
      }
      requests.push_back(std::move(r));
    }
    const auto ids = testing::run_together(engine, std::move(requests));
    int reached = 0;
    for (uint64_t id : ids) {
      const auto r = col.get(id);
      ASSERT_TRUE(r.finished);
      if (r.tokens.size() <= 1) continue;  // EOS as the free first token
      ASSERT_EQ(r.tokens.size(), 17u);
      ++reached;
      for (size_t j = 1; j < 16; ++j) EXPECT_EQ(r.tokens[j] % 4, 3) << j;
      EXPECT_EQ(r.tokens.back(), kEos);
      EXPECT_EQ(r.reason, FinishReason::kStop);
    }
    EXPECT_GE(reached, 4);
  }
}

TEST_F(EngineConstraint, MaxTokensCutsAnIncompleteOutputWithLength) {
  Engine engine(model(), testing::test_options());
  Collector col;
  const uint64_t id = engine.submit(constrained(
      make_prompt(3, 10, vocab()), 5, 0.0f, std::make_shared<ModuloConstraint>(0, 50, 2, 0), col));
  engine.drain();
  const auto r = col.get(id);
  EXPECT_EQ(r.reason, FinishReason::kLength);
  ASSERT_EQ(r.tokens.size(), 5u);
  for (int32_t t : r.tokens) {
    EXPECT_EQ(t % 2, 0);
    EXPECT_NE(t, kEos);  // even, but EOS is masked while incomplete
  }
}

TEST_F(EngineConstraint, NothingAllowedEndsTheRequestWithAnError) {
  Engine engine(model(), testing::test_options());
  Collector col;
  // No id is below 0 modulo anything: nothing is allowed.
  const uint64_t id = engine.submit(constrained(
      make_prompt(3, 10, vocab()), 5, 0.7f, std::make_shared<ModuloConstraint>(0, 5, 7, -1), col));
  engine.drain();
  const auto r = col.get(id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.reason, FinishReason::kError);
  EXPECT_TRUE(r.tokens.empty());
}

}  // namespace
}  // namespace m2fp4
