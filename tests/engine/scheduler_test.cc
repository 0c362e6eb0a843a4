// Scheduler invariants, simulated without a model: every step stays within max_num_batched_tokens
// and max_num_seqs, running decodes advance every step while a long prompt is prefilled in chunks,
// block tables always cover what the step computes, preemption under a small pool requeues
// victims (never loses one) and the block accounting balances at the end.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>

#include "engine/block_manager.h"
#include "engine/scheduler.h"
#include "model/kv_cache.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {

std::unique_ptr<Sequence> make_sequence(uint64_t id, int64_t prompt_len, int64_t max_tokens) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  for (int64_t i = 0; i < prompt_len; ++i)
    s->prompt.push_back(static_cast<int32_t>((id * 131 + i * 7) % 500));
  s->sampling.max_tokens = max_tokens;
  return s;
}

struct Simulation {
  EngineOptions options;
  ModelConfig config = preset_config("tiny");
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Scheduler> scheduler;
  std::map<uint64_t, Sequence*> live;
  std::set<uint64_t> finished;
  int64_t steps = 0;

  Simulation(int64_t n_blocks, int64_t budget, int64_t max_seqs, int64_t max_len) {
    options.block_size = 4;
    options.max_num_batched_tokens = budget;
    options.max_num_seqs = max_seqs;
    blocks = std::make_unique<BlockManager>(n_blocks, 4, true);
    cache = std::make_unique<KvCache>(KvCache::paged(config, n_blocks, 4, max_len));
    scheduler = std::make_unique<Scheduler>(options, max_len, *blocks, *cache);
  }
  void add(std::unique_ptr<Sequence> s) {
    live[s->id] = s.get();
    scheduler->add(std::move(s));
  }
  // One step: checks the invariants, then plays the model (appends one token per sampled
  // sequence) and finishes sequences at max_tokens. Returns the scheduled work.
  std::vector<ScheduledWork> step() {
    const std::vector<ScheduledWork> work = scheduler->schedule();
    ++steps;
    int64_t tokens = 0;
    std::set<Sequence*> seen;
    for (const ScheduledWork& w : work) {
      EXPECT_TRUE(seen.insert(w.seq).second) << "sequence scheduled twice";
      EXPECT_GE(w.n_real, 1);
      EXPECT_LE(w.seq->num_computed + w.n_real, w.seq->total_tokens());
      EXPECT_EQ(w.sample, w.seq->num_computed + w.n_real == w.seq->total_tokens());
      const int64_t positions =
          w.seq->num_computed + w.n_real + static_cast<int64_t>(w.seq->draft.size());
      EXPECT_GE(static_cast<int64_t>(w.seq->block_table.size()) * 4, positions)
          << "block table does not cover the step";
      tokens += w.n_real + static_cast<int64_t>(w.seq->draft.size());
    }
    EXPECT_LE(tokens, options.max_num_batched_tokens);
    EXPECT_LE(scheduler->n_running(), options.max_num_seqs);
    EXPECT_TRUE(blocks->consistent());
    for (const ScheduledWork& w : work) {
      Sequence& s = *w.seq;
      s.num_computed += w.n_real;
      if (!w.sample) {
        scheduler->after_step(s);
        continue;
      }
      s.output.push_back(static_cast<int32_t>((s.id + s.output.size()) % 500));
      if (static_cast<int64_t>(s.output.size()) >= s.sampling.max_tokens) {
        finished.insert(s.id);
        live.erase(s.id);
        scheduler->remove(s.id);
      } else {
        scheduler->after_step(s);
      }
    }
    return work;
  }
};

TEST(Scheduler, DecodesAdvanceEveryStepWhileALongPromptIsChunked) {
  Simulation sim(256, 16, 8, 512);
  for (uint64_t id = 1; id <= 3; ++id) sim.add(make_sequence(id, 5, 100));
  // Prefill the three short prompts, then they decode.
  for (int i = 0; i < 3; ++i) sim.step();
  sim.add(make_sequence(9, 200, 5));  // a long prompt: 200 tokens in chunks of at most 13
  int chunks = 0;
  for (int i = 0; i < 40 && sim.live.count(9) && sim.live[9]->num_computed < 200; ++i) {
    const auto work = sim.step();
    std::set<uint64_t> decoded;
    for (const auto& w : work) {
      if (w.seq->id == 9) {
        ++chunks;
        EXPECT_LE(w.n_real, 13);
      } else {
        EXPECT_EQ(w.n_real, 1);
        decoded.insert(w.seq->id);
      }
    }
    EXPECT_EQ(decoded, (std::set<uint64_t>{1, 2, 3})) << "a decode was stalled at step " << i;
  }
  EXPECT_GE(chunks, 200 / 13);
}

TEST(Scheduler, DraftsNeverCrowdOutOtherDecodes) {
  Simulation sim(256, 8, 4, 512);
  sim.options.speculative = {"ngram", 4, 1, 3};
  sim.scheduler = std::make_unique<Scheduler>(sim.options, 512, *sim.blocks, *sim.cache);
  for (uint64_t id = 1; id <= 4; ++id) {
    auto s = make_sequence(id, 2, 30);
    // A repeating prompt: the ngram drafter always finds a match.
    s->prompt = {7, 8, 9, 7, 8, 9, 7, 8};
    sim.add(std::move(s));
  }
  while (true) {  // prefill until all four decode
    sim.step();
    bool all_decode = true;
    for (const auto& [id, s] : sim.live) all_decode = all_decode && s->pending() == 1;
    if (all_decode) break;
  }
  int64_t drafted = 0;
  for (int i = 0; i < 10; ++i) {
    const auto work = sim.step();
    EXPECT_EQ(work.size(), 4u) << "step " << i;
    for (const auto& w : work) drafted += static_cast<int64_t>(w.seq->draft.size());
  }
  EXPECT_GT(drafted, 0);
}

TEST(Scheduler, MaxNumSeqsBoundsTheRunningSet) {
  Simulation sim(256, 64, 3, 512);
  for (uint64_t id = 1; id <= 7; ++id) sim.add(make_sequence(id, 6, 4));
  for (int i = 0; i < 100 && !sim.live.empty(); ++i) sim.step();
  EXPECT_TRUE(sim.live.empty());
  EXPECT_EQ(sim.finished.size(), 7u);
  EXPECT_EQ(sim.blocks->used(), 0);
}

TEST(Scheduler, PreemptionRequeuesVictimsAndEveryRequestFinishes) {
  // 10 blocks of 4 tokens; 5 requests of up to 6 + 20 tokens (7 blocks each).
  Simulation sim(10, 32, 8, 40);
  for (uint64_t id = 1; id <= 5; ++id) sim.add(make_sequence(id, 6, 20));
  for (int i = 0; i < 2000 && !sim.live.empty(); ++i) sim.step();
  EXPECT_TRUE(sim.live.empty());
  EXPECT_EQ(sim.finished.size(), 5u);
  EXPECT_GT(sim.scheduler->preemptions(), 0);
  EXPECT_EQ(sim.blocks->used(), 0);
  EXPECT_TRUE(sim.blocks->consistent());
}

TEST(Scheduler, PrefixHitsSkipComputedBlocks) {
  Simulation sim(64, 64, 8, 256);
  sim.add(make_sequence(1, 18, 2));
  while (!sim.live.empty()) sim.step();
  // Same prompt again (same id pattern): 4 full blocks cached, 16 tokens skipped.
  auto again = make_sequence(1, 18, 2);
  again->id = 2;
  sim.add(std::move(again));
  const auto work = sim.step();
  ASSERT_EQ(work.size(), 1u);
  EXPECT_EQ(work[0].seq->cached_prompt_tokens, 16);
  EXPECT_EQ(work[0].n_real, 2);
  EXPECT_EQ(sim.blocks->hits(), 16);
}

TEST(Scheduler, RemoveReleasesWaitingAndRunning) {
  Simulation sim(64, 8, 8, 256);
  sim.add(make_sequence(1, 30, 5));
  sim.add(make_sequence(2, 30, 5));
  sim.step();  // 1 is prefilling, 2 waits
  EXPECT_GT(sim.blocks->used(), 0);
  EXPECT_NE(sim.scheduler->remove(1), nullptr);
  EXPECT_NE(sim.scheduler->remove(2), nullptr);
  EXPECT_EQ(sim.scheduler->remove(3), nullptr);
  EXPECT_TRUE(sim.scheduler->idle());
  EXPECT_EQ(sim.blocks->used(), 0);
}

}  // namespace
}  // namespace m2fp4
