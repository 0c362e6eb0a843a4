#include "engine/scheduler.h"

#include <algorithm>
#include <limits>

#include "engine/ngram.h"

namespace m2fp4 {

Scheduler::Scheduler(const EngineOptions& options, int64_t max_model_len, BlockManager& blocks,
                     KvCache& cache)
    : options_(options), max_len_(max_model_len), blocks_(blocks), cache_(cache) {}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  waiting_.push_back(std::move(seq));
}

void Scheduler::release_kv(Sequence& seq) {
  blocks_.release(seq.block_table);
  seq.block_keys.clear();
  seq.draft.clear();
  if (seq.cache_slot >= 0) cache_.drop(seq.cache_slot);
  seq.cache_slot = -1;
  seq.num_computed = 0;
}

std::unique_ptr<Sequence> Scheduler::remove(uint64_t id) {
  std::unique_ptr<Sequence> out;
  for (auto it = running_.begin(); it != running_.end() && !out; ++it) {
    if ((*it)->id != id) continue;
    out = std::move(*it);
    running_.erase(it);
    break;
  }
  for (auto it = waiting_.begin(); it != waiting_.end() && !out; ++it) {
    if ((*it)->id != id) continue;
    out = std::move(*it);
    waiting_.erase(it);
    break;
  }
  if (out) release_kv(*out);
  return out;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::remove_all() {
  std::vector<std::unique_ptr<Sequence>> out;
  for (auto& s : running_) out.push_back(std::move(s));
  for (auto& s : waiting_) out.push_back(std::move(s));
  running_.clear();
  waiting_.clear();
  for (auto& s : out) release_kv(*s);
  return out;
}

void Scheduler::preempt(Sequence& seq) {
  release_kv(seq);
  preemptions_ += 1;
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& p) { return p.get() == &seq; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

void Scheduler::propose_draft(Sequence& seq, int64_t budget) {
  seq.draft.clear();
  const SpeculativeConfig& spec = options_.speculative;
  if (spec.method != "ngram" || spec.num_speculative_tokens <= 0) return;
  // Room for the draft and the token sampled after it, within the step, the model length and
  // max_tokens.
  const int64_t k =
      std::min({spec.num_speculative_tokens, budget - 1, max_len_ - seq.total_tokens() - 1,
                seq.sampling.max_tokens - static_cast<int64_t>(seq.output.size()) - 1});
  if (k <= 0) return;
  seq.draft = ngram_draft(seq.all_tokens(), spec.prompt_lookup_min, spec.prompt_lookup_max, k);
}

bool Scheduler::admit(int64_t& budget, std::vector<ScheduledWork>& work) {
  Sequence& s = *waiting_.front();
  const std::vector<int32_t> tokens = s.all_tokens();
  const int64_t total = static_cast<int64_t>(tokens.size());
  const int64_t bs = blocks_.block_size();
  s.block_table.clear();
  s.block_keys.clear();
  // At least the last token is computed: its logits give the next token.
  const int64_t hit = blocks_.match_prefix(tokens, (total - 1) / bs, s.block_table, s.block_keys);
  s.num_computed = hit * bs;
  const int64_t n = std::min(total - s.num_computed, budget);
  const int64_t need =
      blocks_.blocks_for(s.num_computed + n) - static_cast<int64_t>(s.block_table.size());
  if (!blocks_.allocate(need, s.block_table)) {
    release_kv(s);
    return false;
  }
  blocks_.count_lookup(total, hit * bs);
  if (!s.admitted_once) {
    s.cached_prompt_tokens = std::min<int64_t>(hit * bs, static_cast<int64_t>(s.prompt.size()));
    s.admitted_once = true;
    prompt_tokens_ += static_cast<int64_t>(s.prompt.size());
  }
  s.cache_slot = next_slot_;
  next_slot_ = next_slot_ == std::numeric_limits<int32_t>::max() ? 0 : next_slot_ + 1;
  work.push_back({&s, n, n == total - s.num_computed});
  budget -= n;
  running_.push_back(std::move(waiting_.front()));
  waiting_.pop_front();
  return true;
}

std::vector<ScheduledWork> Scheduler::schedule() {
  std::vector<ScheduledWork> work;
  int64_t budget = options_.max_num_batched_tokens;
  // Decodes first, then prefill chunks; victims of preemption come from the end of this order.
  std::vector<Sequence*> order;
  for (auto& s : running_) {
    if (s->pending() == 1) order.push_back(s.get());
  }
  const size_t n_decodes = order.size();
  for (auto& s : running_) {
    if (s->pending() != 1) order.push_back(s.get());
  }
  size_t live = order.size();  // order[live..] were preempted this step
  const int64_t preempted_before = preemptions_;
  for (size_t i = 0; i < live && budget > 0; ++i) {
    Sequence& s = *order[i];
    const int64_t n = std::min(s.pending(), budget);
    if (n == s.pending() && n == 1) {
      // Drafts never take the token of a decode scheduled after this one.
      const int64_t later_decodes = static_cast<int64_t>(n_decodes > i ? n_decodes - i - 1 : 0);
      propose_draft(s, budget - later_decodes);
    } else {
      s.draft.clear();
    }
    bool scheduled = false;
    for (;;) {
      const int64_t tokens = s.num_computed + n + static_cast<int64_t>(s.draft.size());
      const int64_t need = blocks_.blocks_for(tokens) - static_cast<int64_t>(s.block_table.size());
      if (blocks_.allocate(need, s.block_table)) {
        scheduled = true;
        break;
      }
      if (!s.draft.empty()) {
        s.draft.clear();  // speculation yields to memory first
        continue;
      }
      if (live - 1 > i) {
        preempt(*order[live - 1]);
        --live;
        continue;
      }
      preempt(s);
      --live;
      break;
    }
    if (!scheduled) break;
    work.push_back({&s, n, n == s.pending()});
    budget -= n + static_cast<int64_t>(s.draft.size());
    draft_tokens_ += static_cast<int64_t>(s.draft.size());
  }
  // New sequences only when nobody had to give way this step.
  if (preemptions_ == preempted_before) {
    while (budget > 0 && static_cast<int64_t>(running_.size()) < options_.max_num_seqs &&
           !waiting_.empty()) {
      if (!admit(budget, work)) break;
    }
  }
  for (const ScheduledWork& w : work) {
    cache_.assign(w.seq->cache_slot, w.seq->block_table, w.seq->num_computed);
  }
  return work;
}

void Scheduler::after_step(Sequence& seq) {
  const int64_t bs = blocks_.block_size();
  const int64_t full =
      std::min<int64_t>(seq.num_computed / bs, static_cast<int64_t>(seq.block_table.size()));
  std::vector<int32_t> block_tokens(static_cast<size_t>(bs));
  uint64_t parent = seq.block_keys.empty() ? 0 : seq.block_keys.back();
  for (int64_t i = static_cast<int64_t>(seq.block_keys.size()); i < full; ++i) {
    for (int64_t j = 0; j < bs; ++j) block_tokens[j] = seq.token_at(i * bs + j);
    const uint64_t key = BlockManager::block_key(parent, block_tokens.data(), bs);
    blocks_.register_block(seq.block_table[i], key, block_tokens.data());
    seq.block_keys.push_back(key);
    parent = key;
  }
  blocks_.truncate(seq.block_table, static_cast<size_t>(blocks_.blocks_for(seq.total_tokens())));
}

}  // namespace m2fp4
