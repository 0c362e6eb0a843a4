// The scheduler: which sequences run how many tokens in the next step, under max_num_seqs,
// max_num_batched_tokens and the KV blocks there are.
//
// Every step: running decodes first (one token each, plus an ngram draft when speculation is
// on), then the prefill chunks of running sequences, then new sequences from the waiting queue
// (with their prefix-cache hits) while slots, token budget and blocks last. A long prompt is split
// across steps (chunked prefill), so decodes never stall behind it. When a running sequence needs
// a block and none is left, the most recently scheduled-last sequence is preempted by recompute:
// its blocks are freed and it goes back to the front of the waiting queue with its generated
// tokens as part of its prompt.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "engine/block_manager.h"
#include "engine/engine.h"
#include "engine/sequence.h"
#include "model/kv_cache.h"

namespace m2fp4 {

struct ScheduledWork {
  Sequence* seq = nullptr;
  int64_t n_real = 0;   // tokens of prompt + output from seq->num_computed
  bool sample = false;  // the chunk reaches the last token: logits rows (1 + draft) follow
};

class Scheduler {
 public:
  Scheduler(const EngineOptions& options, int64_t max_model_len, BlockManager& blocks,
            KvCache& cache);

  void add(std::unique_ptr<Sequence> seq);
  // Takes a sequence out (waiting or running), its KV released; null if unknown.
  std::unique_ptr<Sequence> remove(uint64_t id);
  // Takes every sequence out (shutdown).
  std::vector<std::unique_ptr<Sequence>> remove_all();

  // Decides the next step; assigns each scheduled sequence's blocks to the cache.
  std::vector<ScheduledWork> schedule();
  // After the step's sampling: registers newly computed full blocks in the prefix cache and
  // frees blocks past the sequence's tokens (rejected draft positions).
  void after_step(Sequence& seq);

  bool idle() const { return waiting_.empty() && running_.empty(); }
  int64_t n_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t n_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  int64_t draft_tokens() const { return draft_tokens_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }  // of admitted requests

 private:
  bool admit(int64_t& budget, std::vector<ScheduledWork>& work);
  void preempt(Sequence& seq);
  void release_kv(Sequence& seq);
  void propose_draft(Sequence& seq, int64_t budget);

  EngineOptions options_;
  int64_t max_len_;
  BlockManager& blocks_;
  KvCache& cache_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  int32_t next_slot_ = 0;
  int64_t preemptions_ = 0;
  int64_t draft_tokens_ = 0;
  int64_t prompt_tokens_ = 0;
};

}  // namespace m2fp4
