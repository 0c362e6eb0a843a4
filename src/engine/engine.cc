#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/log.h"
#include "base/thread_pool.h"
#include "engine/block_manager.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "model/minimax_m2.h"

namespace m2fp4 {
namespace {

// EOS ids: generation_config.json's eos_token_id (an id or a list), else config.json's.
std::vector<int32_t> model_eos_ids(const LoadedModel& model) {
  std::vector<int32_t> ids;
  const std::filesystem::path gen =
      std::filesystem::path(model.checkpoint.dir()) / "generation_config.json";
  if (std::filesystem::exists(gen)) {
    try {
      std::ifstream in(gen);
      const nlohmann::json j = nlohmann::json::parse(in);
      const auto& e = j.contains("eos_token_id") ? j["eos_token_id"] : nlohmann::json();
      if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
      if (e.is_array()) {
        for (const auto& x : e) {
          if (x.is_number_integer()) ids.push_back(x.get<int32_t>());
        }
      }
    } catch (const nlohmann::json::exception& e) {
      log_warn(str_cat(gen.string(), ": ignored (", e.what(), ")"));
    }
  }
  if (ids.empty() && model.config.eos_token_id >= 0) {
    ids.push_back(static_cast<int32_t>(model.config.eos_token_id));
  }
  return ids;
}

// /proc/meminfo's MemAvailable in bytes (0 if unknown).
int64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

const char* dtype_name(KvCacheDtype d) {
  return d == KvCacheDtype::kF32 ? "f32" : "fp8_e4m3";
}

bool contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

struct Engine::Impl {
  Impl(const LoadedModel& m, const EngineOptions& o);
  ~Impl();

  void loop();
  void step();
  void take_requests_and_aborts();
  void size_kv_cache();
  void finish(Sequence& seq, TokenEvent& event, FinishReason reason, const std::string& error = "");
  void emit(Sequence& seq, TokenEvent& event);
  // Appends the tokens chosen from this step's logits rows; fills the event. Returns true if the
  // sequence finished.
  bool sample_rows(Sequence& seq, const float* rows, TokenEvent& event);
  int32_t choose(Sequence& seq, const float* row, const int32_t* draft, bool* accepted);
  void apply_constraint(const Sequence& seq, float* logits, bool greedy);
  std::optional<FinishReason> stop_reason(const Sequence& seq, int32_t token) const;
  void publish_stats();

  const LoadedModel& model;
  EngineOptions opt;
  const int64_t vocab;
  std::vector<int32_t> eos_ids;
  int64_t max_len = 0;
  ThreadPool pool;
  MiniMaxM2 net;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;

  // Shared with frontends, under mu.
  mutable std::mutex mu;
  std::condition_variable work_cv, idle_cv;
  std::deque<std::unique_ptr<Sequence>> incoming;
  std::vector<uint64_t> aborts;
  uint64_t next_id = 1;
  int64_t in_flight = 0;  // submitted, not finished
  bool stopping = false;
  EngineStats shared_stats;

  // Engine thread only.
  EngineStats stats;
  int64_t finished_unpublished = 0;
  std::vector<float> scratch_row, logprob_row;
  std::vector<uint8_t> allowed_tokens;  // a constrained request's mask
  std::mt19937_64 seed_source{std::random_device{}()};

  std::thread thread;
};

Engine::Impl::Impl(const LoadedModel& m, const EngineOptions& o)
    : model(m),
      opt(o),
      vocab(m.config.vocab_size),
      pool(o.threads),
      net(m.config, m.weights, pool, ModelOptions{o.nvfp4_w4a4}) {
  M2_CHECK(opt.max_num_seqs >= 1, "max_num_seqs must be at least 1, got ", opt.max_num_seqs);
  // Every running sequence decodes every step (vLLM has the same rule).
  M2_CHECK(opt.max_num_batched_tokens >= opt.max_num_seqs, "max_num_batched_tokens (",
           opt.max_num_batched_tokens, ") must be at least max_num_seqs (", opt.max_num_seqs, ")");
  M2_CHECK(opt.block_size >= 1 && opt.block_size <= 4096, "block_size must be in [1, 4096], got ",
           opt.block_size);
  if (!opt.speculative.method.empty()) {
    const SpeculativeConfig& sc = opt.speculative;
    M2_CHECK(sc.method == "ngram", "speculative method '", sc.method,
             "' is not supported (only ngram)");
    M2_CHECK(sc.num_speculative_tokens >= 1, "num_speculative_tokens must be at least 1, got ",
             sc.num_speculative_tokens);
    M2_CHECK(sc.prompt_lookup_min >= 1 && sc.prompt_lookup_max >= sc.prompt_lookup_min,
             "prompt_lookup_min/max must satisfy 1 <= min <= max, got ", sc.prompt_lookup_min,
             " and ", sc.prompt_lookup_max);
  }
  eos_ids = model_eos_ids(m);
  size_kv_cache();
  thread = std::thread([this] { loop(); });
}

Engine::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
  }
  work_cv.notify_all();
  if (thread.joinable()) thread.join();
}

void Engine::Impl::size_kv_cache() {
  const ModelConfig& c = model.config;
  const int64_t bs = opt.block_size;
  const int64_t block_bytes = KvCache::block_bytes(c, bs, opt.kv_cache_dtype);
  int64_t budget = opt.kv_cache_memory;
  if (budget <= 0) {
    M2_CHECK(opt.kv_memory_fraction > 0.0 && opt.kv_memory_fraction <= 1.0,
             "kv_memory_fraction must be in (0, 1], got ", opt.kv_memory_fraction);
    const int64_t available = mem_available_bytes();
    M2_CHECK(available > 0, "cannot read MemAvailable from /proc/meminfo: give kv_cache_memory");
    budget = static_cast<int64_t>(static_cast<double>(available) * opt.kv_memory_fraction);
  }
  const int64_t n_blocks =
      std::min<int64_t>(budget / block_bytes, std::numeric_limits<int32_t>::max());
  M2_CHECK(n_blocks >= 1, "KV cache memory of ", budget, " bytes holds no block (one block of ", bs,
           " tokens takes ", block_bytes, " bytes)");
  const int64_t capacity = n_blocks * bs;
  const int64_t model_len =
      c.max_position_embeddings > 0 ? c.max_position_embeddings : int64_t{4096};
  if (opt.max_model_len > 0) {
    M2_CHECK(opt.max_model_len <= capacity, "max_model_len ", opt.max_model_len,
             " does not fit the KV cache (", capacity,
             " tokens): give more KV memory or a smaller max_model_len");
    max_len = opt.max_model_len;
  } else {
    max_len = std::min(model_len, capacity);
    if (max_len < model_len) {
      log_warn(str_cat("max_model_len capped at ", max_len,
                       " (the KV cache's capacity; the model's is ", model_len, ")"));
    }
  }
  cache = std::make_unique<KvCache>(KvCache::paged(c, n_blocks, bs, max_len, opt.kv_cache_dtype));
  blocks = std::make_unique<BlockManager>(n_blocks, bs, opt.enable_prefix_caching);
  scheduler = std::make_unique<Scheduler>(opt, max_len, *blocks, *cache);
  log_info(str_cat("KV cache: ", n_blocks, " blocks of ", bs, " tokens, ", capacity, " tokens (",
                   dtype_name(opt.kv_cache_dtype), ", ", (n_blocks * block_bytes) >> 20,
                   " MiB); max_model_len ", max_len, ": ",
                   static_cast<double>(capacity) / static_cast<double>(max_len),
                   " concurrent requests at full length; prefix caching ",
                   opt.enable_prefix_caching ? "on" : "off"));
}

void Engine::Impl::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu);
      work_cv.wait(lock, [&] {
        return stopping || !incoming.empty() || !aborts.empty() || !scheduler->idle();
      });
      if (stopping) break;
    }
    take_requests_and_aborts();
    if (!scheduler->idle()) step();
    publish_stats();
  }
  // Shutting down: whatever is left ends with kAbort.
  take_requests_and_aborts();
  for (auto& s : scheduler->remove_all()) {
    TokenEvent event;
    finish(*s, event, FinishReason::kAbort);
  }
  publish_stats();
}

void Engine::Impl::take_requests_and_aborts() {
  std::vector<uint64_t> to_abort;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& s : incoming) scheduler->add(std::move(s));
    incoming.clear();
    to_abort.swap(aborts);
  }
  for (uint64_t id : to_abort) {
    if (std::unique_ptr<Sequence> seq = scheduler->remove(id)) {
      TokenEvent event;
      finish(*seq, event, FinishReason::kAbort);
    }
  }
}

void Engine::Impl::finish(Sequence& seq, TokenEvent& event, FinishReason reason,
                          const std::string& error) {
  event.request_id = seq.id;
  event.finished = true;
  event.reason = reason;
  event.error = error;
  event.prompt_tokens = static_cast<int64_t>(seq.prompt.size());
  event.cached_prompt_tokens = seq.cached_prompt_tokens;
  event.generated_tokens = static_cast<int64_t>(seq.output.size());
  stats.requests_finished += 1;
  emit(seq, event);
  finished_unpublished += 1;  // in_flight drops with the next stats snapshot, so drain() sees both
}

void Engine::Impl::emit(Sequence& seq, TokenEvent& event) {
  event.request_id = seq.id;
  event.prompt_tokens = static_cast<int64_t>(seq.prompt.size());
  event.cached_prompt_tokens = seq.cached_prompt_tokens;
  event.generated_tokens = static_cast<int64_t>(seq.output.size());
  if (!seq.on_event) return;
  try {
    seq.on_event(event);
  } catch (const std::exception& e) {
    log_warn(str_cat("request ", seq.id, ": callback threw: ", e.what()));
  }
}

std::optional<FinishReason> Engine::Impl::stop_reason(const Sequence& seq, int32_t token) const {
  if (contains(seq.sampling.stop_token_ids, token)) return FinishReason::kStop;
  if (!seq.sampling.ignore_eos && contains(eos_ids, token)) return FinishReason::kStop;
  if (static_cast<int64_t>(seq.output.size()) >= seq.sampling.max_tokens)
    return FinishReason::kLength;
  if (seq.total_tokens() >= max_len) return FinishReason::kLength;
  return std::nullopt;
}

int32_t Engine::Impl::choose(Sequence& seq, const float* row, const int32_t* draft,
                             bool* accepted) {
  const SamplingOptions& so = seq.sampling;
  scratch_row.assign(row, row + vocab);
  float* logits = scratch_row.data();
  if (so.presence_penalty != 0.0f || so.frequency_penalty != 0.0f ||
      so.repetition_penalty != 1.0f) {
    apply_penalties(logits, vocab, so.presence_penalty, so.frequency_penalty, so.repetition_penalty,
                    seq.prompt, seq.output);
  }
  if (static_cast<int64_t>(seq.output.size()) < so.min_tokens) {
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int32_t t : so.stop_token_ids) {
      if (t >= 0 && t < vocab) logits[t] = neg_inf;
    }
    if (!so.ignore_eos) {
      for (int32_t t : eos_ids) {
        if (t >= 0 && t < vocab) logits[t] = neg_inf;
      }
    }
  }
  const bool greedy = so.temperature < kGreedyTemperature;
  if (seq.constraint && seq.constraint->active()) apply_constraint(seq, logits, greedy);
  if (accepted) *accepted = false;
  if (greedy) {
    const int32_t t = argmax(logits, vocab);
    if (draft && accepted) *accepted = t == *draft;
    return t;
  }
  const TokenDistribution dist = token_distribution(
      logits, vocab, TruncationParams{so.temperature, so.top_k, so.top_p, so.min_p});
  M2_CHECK(!dist.ids.empty(), "no token can be sampled (every logit is -inf)");
  if (draft) return verify_draft(dist, *draft, seq.rng, accepted);
  return sample_token(dist, uniform01(seq.rng));
}

// -inf for the tokens the request's constraint disallows (before temperature and truncation).
// End tokens (EOS, stop ids) are allowed only where the output may end; once it is complete only
// they are.
// A greedy request whose argmax is allowed skips the mask: the masked argmax is the same token.
void Engine::Impl::apply_constraint(const Sequence& seq, float* logits, bool greedy) {
  const TokenConstraint& c = *seq.constraint;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  auto is_end = [&](int32_t t) {
    return contains(eos_ids, t) || contains(seq.sampling.stop_token_ids, t);
  };
  const bool complete = c.complete();
  if (greedy) {
    const int32_t t = argmax(logits, vocab);
    const bool ok = complete ? is_end(t) : is_end(t) ? c.may_end() : c.allows(t);
    if (logits[t] != neg_inf && ok) return;
  }
  allowed_tokens.assign(static_cast<size_t>(vocab), 0);
  if (!complete) c.fill_allowed(allowed_tokens);
  const uint8_t end_allowed = c.may_end() ? 1 : 0;
  for (const std::vector<int32_t>* ends :
       {static_cast<const std::vector<int32_t>*>(&eos_ids), &seq.sampling.stop_token_ids}) {
    for (int32_t t : *ends) {
      if (t >= 0 && t < vocab) allowed_tokens[t] = end_allowed;
    }
  }
  bool any = false;
  for (int64_t t = 0; t < vocab; ++t) {
    if (!allowed_tokens[t]) {
      logits[t] = neg_inf;
    } else if (logits[t] != neg_inf) {
      any = true;
    }
  }
  M2_CHECK(any, complete
                    ? "the structured output is complete but no end token may follow (min_tokens?)"
                    : "the structured output (response_format / tool_choice) allows no next token");
}

bool Engine::Impl::sample_rows(Sequence& seq, const float* rows, TokenEvent& event) {
  const int64_t n_rows = 1 + static_cast<int64_t>(seq.draft.size());
  const int64_t before = seq.total_tokens();
  int64_t accepted_drafts = 0;
  std::optional<FinishReason> reason;
  for (int64_t j = 0; j < n_rows && !reason; ++j) {
    const float* row = rows + j * vocab;
    const bool has_draft = j < static_cast<int64_t>(seq.draft.size());
    bool accepted = false;
    const int32_t token = choose(seq, row, has_draft ? &seq.draft[j] : nullptr, &accepted);
    seq.output.push_back(token);
    if (seq.constraint) seq.constraint->accept(token);
    event.tokens.push_back(token);
    stats.generation_tokens += 1;
    if (seq.sampling.logprobs >= 0) {
      log_softmax(row, vocab, logprob_row);
      TokenLogprob lp;
      lp.token = token;
      lp.logprob = logprob_row[token];
      const int64_t k = std::min<int64_t>(seq.sampling.logprobs, vocab);
      std::vector<int32_t> ids(static_cast<size_t>(vocab));
      for (int64_t t = 0; t < vocab; ++t) ids[t] = static_cast<int32_t>(t);
      std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
        return logprob_row[a] != logprob_row[b] ? logprob_row[a] > logprob_row[b] : a < b;
      });
      for (int64_t i = 0; i < k; ++i) lp.top.emplace_back(ids[i], logprob_row[ids[i]]);
      event.logprobs.push_back(std::move(lp));
    }
    reason = stop_reason(seq, token);
    if (has_draft) {
      if (!accepted) break;
      accepted_drafts += 1;
      stats.spec_accepted_tokens += 1;
    }
  }
  // KV is valid for the input tokens up to the last accepted draft.
  seq.num_computed = before + accepted_drafts;
  seq.draft.clear();
  if (reason) event.reason = *reason;
  return reason.has_value();
}

void Engine::Impl::step() {
  const std::vector<ScheduledWork> work = scheduler->schedule();
  if (work.empty()) return;
  Batch batch;
  for (const ScheduledWork& w : work) {
    const Sequence& s = *w.seq;
    for (int64_t i = 0; i < w.n_real; ++i) {
      const int64_t pos = s.num_computed + i;
      batch.add(s.token_at(pos), static_cast<int32_t>(pos), s.cache_slot,
                w.sample && i + 1 == w.n_real);
    }
    for (size_t j = 0; w.sample && j < s.draft.size(); ++j) {
      batch.add(s.draft[j], static_cast<int32_t>(s.total_tokens() + static_cast<int64_t>(j)),
                s.cache_slot, true);
    }
  }
  std::vector<float> logits;
  try {
    net.forward(batch, *cache, logits);
  } catch (const std::exception& e) {
    log_warn(str_cat("engine: forward failed: ", e.what()));
    for (const ScheduledWork& w : work) {
      if (std::unique_ptr<Sequence> seq = scheduler->remove(w.seq->id)) {
        TokenEvent event;
        finish(*seq, event, FinishReason::kError, e.what());
      }
    }
    return;
  }
  int64_t row = 0;
  for (const ScheduledWork& w : work) {
    Sequence& s = *w.seq;
    if (!w.sample) {
      s.num_computed += w.n_real;
      scheduler->after_step(s);
      continue;
    }
    const int64_t n_rows = 1 + static_cast<int64_t>(s.draft.size());
    s.num_computed += w.n_real;
    TokenEvent event;
    bool finished = false;
    try {
      finished = sample_rows(s, logits.data() + row * vocab, event);
    } catch (const std::exception& e) {
      event.reason = FinishReason::kError;
      event.error = e.what();
      finished = true;
    }
    row += n_rows;
    if (finished) {
      scheduler->after_step(s);  // its computed full blocks enter the prefix cache first
      std::unique_ptr<Sequence> seq = scheduler->remove(s.id);
      const FinishReason reason = event.reason;
      const std::string error = event.error;
      finish(*seq, event, reason, error);
    } else {
      scheduler->after_step(s);
      emit(s, event);
    }
  }
}

void Engine::Impl::publish_stats() {
  std::lock_guard<std::mutex> lock(mu);
  stats.running = scheduler->n_running();
  stats.waiting = scheduler->n_waiting() + static_cast<int64_t>(incoming.size());
  stats.kv_blocks_total = blocks->n_blocks();
  stats.kv_blocks_used = blocks->used();
  stats.kv_blocks_cached = blocks->cached();
  stats.prefix_cache_queries = blocks->queries();
  stats.prefix_cache_hits = blocks->hits();
  stats.prompt_tokens = scheduler->prompt_tokens();
  stats.preemptions = scheduler->preemptions();
  stats.spec_draft_tokens = scheduler->draft_tokens();
  shared_stats = stats;
  in_flight -= finished_unpublished;
  finished_unpublished = 0;
  idle_cv.notify_all();
}

Engine::Engine(const LoadedModel& model, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}

Engine::~Engine() = default;

uint64_t Engine::submit(GenerationRequest request) {
  Impl& m = *impl_;
  const SamplingOptions& so = request.sampling;
  M2_CHECK(!request.prompt.empty(), "the prompt is empty");
  for (int32_t t : request.prompt) {
    M2_CHECK(t >= 0 && t < m.vocab, "prompt token id ", t, " is outside the vocabulary [0, ",
             m.vocab, ")");
  }
  M2_CHECK(so.max_tokens >= 1, "max_tokens must be at least 1, got ", so.max_tokens);
  M2_CHECK(so.min_tokens >= 0 && so.min_tokens <= so.max_tokens, "min_tokens must be in [0, ",
           so.max_tokens, "], got ", so.min_tokens);
  M2_CHECK(so.temperature >= 0.0f, "temperature must be non-negative, got ", so.temperature);
  M2_CHECK(so.top_p > 0.0f && so.top_p <= 1.0f, "top_p must be in (0, 1], got ", so.top_p);
  M2_CHECK(so.top_k >= -1, "top_k must be -1, 0 or positive, got ", so.top_k);
  M2_CHECK(so.min_p >= 0.0f && so.min_p <= 1.0f, "min_p must be in [0, 1], got ", so.min_p);
  M2_CHECK(so.repetition_penalty > 0.0f, "repetition_penalty must be positive, got ",
           so.repetition_penalty);
  M2_CHECK(so.logprobs >= -1 && so.logprobs <= m.vocab, "logprobs must be in [0, ", m.vocab,
           "], got ", so.logprobs);
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  M2_CHECK(prompt_len + so.max_tokens <= m.max_len, "the prompt (", prompt_len,
           " tokens) plus max_tokens (", so.max_tokens, ") exceeds the maximum model length ",
           m.max_len);
  auto seq = std::make_unique<Sequence>();
  seq->prompt = std::move(request.prompt);
  seq->sampling = request.sampling;
  seq->on_event = std::move(request.on_event);
  seq->constraint = std::move(request.constraint);
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    M2_CHECK(!m.stopping, "the engine is shutting down");
    id = m.next_id++;
    seq->id = id;
    seq->rng.seed(so.seed ? *so.seed : m.seed_source());
    m.in_flight += 1;
    m.incoming.push_back(std::move(seq));
  }
  m.work_cv.notify_one();
  return id;
}

void Engine::abort(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->aborts.push_back(request_id);
  }
  impl_->work_cv.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->shared_stats;
}

int64_t Engine::max_model_len() const {
  return impl_->max_len;
}

int64_t Engine::kv_cache_tokens() const {
  return impl_->blocks->n_blocks() * impl_->blocks->block_size();
}

void Engine::drain() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->idle_cv.wait(lock, [&] { return impl_->in_flight == 0; });
}

}  // namespace m2fp4
