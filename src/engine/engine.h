// The serving engine: requests of token ids in, tokens out, many sequences at once.
//
// One engine thread owns the model, the paged KV cache and the scheduler; it runs steps of
// continuous batching (chunked prefill of new prompts beside the decodes of running sequences,
// all in one batched forward, so each expert's weights are read once per step for every token
// routed to it). Frontends (the HTTP server, `run`, `bench`) talk to it only through this header:
// submit() and abort() are thread-safe and never block on a step; results come back through the
// request's callback, called on the engine thread (keep it short: copy and hand off).
//
// Text is the frontend's business: the engine neither renders templates nor detokenizes, so stop
// strings, reasoning and tool-call parsing live above it (a frontend that sees a stop string calls
// abort()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/token_constraint.h"
#include "model/kv_cache.h"

namespace m2fp4 {

struct LoadedModel;

// Per request, as the OpenAI / vLLM sampling parameters mean them.
struct SamplingOptions {
  float temperature = 1.0f;      // 0: greedy
  float top_p = 1.0f;            // 1: off
  int64_t top_k = 0;             // 0 or -1: off
  float min_p = 0.0f;            // 0: off
  std::optional<uint64_t> seed;  // set: reproducible per request, whatever else is batched
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;  // 1: off (vLLM's: divides positive logits, multiplies negative)
  int64_t max_tokens = 16;          // generated tokens at most (the frontend resolves defaults)
  int64_t min_tokens = 0;           // EOS and stop ids are masked until this many are generated
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids (unless ignore_eos)
  int64_t logprobs = -1;                // -1: none; k >= 0: the chosen token's + top k
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // the top k (token, logprob), best first
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };

// One callback call: tokens generated since the last call (a speculative step may accept
// several), and on the last call finished = true with the reason.
struct TokenEvent {
  uint64_t request_id = 0;
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> logprobs;  // one per token when the request asked for them
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  std::string error;                 // kError: why
  int64_t prompt_tokens = 0;         // the prompt's length
  int64_t cached_prompt_tokens = 0;  // of which served from the prefix cache
  int64_t generated_tokens = 0;      // so far, including these
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingOptions sampling;
  std::function<void(const TokenEvent&)> on_event;
  // Optional structured-output restriction (engine/token_constraint.h); owned by this request
  // alone (the engine calls it on its thread).
  std::shared_ptr<TokenConstraint> constraint;
};

struct SpeculativeConfig {
  std::string method;  // "" (off) or "ngram"
  int64_t num_speculative_tokens = 0;
  int64_t prompt_lookup_min = 1;
  int64_t prompt_lookup_max = 3;
};

struct EngineOptions {
  int64_t max_num_seqs = 64;
  int64_t max_num_batched_tokens = 8192;
  int64_t max_model_len = 0;  // 0: the model's max_position_embeddings, capped by the KV memory
  int64_t block_size = 16;
  int64_t kv_cache_memory = 0;      // bytes; 0: kv_memory_fraction of free RAM
  double kv_memory_fraction = 0.5;  // --gpu-memory-utilization's role on a CPU
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kF32;
  bool enable_prefix_caching = true;
  SpeculativeConfig speculative;
  int threads = 0;  // 0: all cores
  bool nvfp4_w4a4 = false;
};

// A snapshot for /metrics and logs; counters only grow.
struct EngineStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;        // referenced by a running sequence
  int64_t kv_blocks_cached = 0;      // unreferenced but holding a reusable prefix
  int64_t prefix_cache_queries = 0;  // prompt tokens looked up
  int64_t prefix_cache_hits = 0;     // of which found
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  int64_t preemptions = 0;
  int64_t spec_draft_tokens = 0;
  int64_t spec_accepted_tokens = 0;
  int64_t requests_finished = 0;
};

class Engine {
 public:
  // Sizes the KV cache, starts the engine thread. The model stays owned by the caller.
  Engine(const LoadedModel& model, const EngineOptions& options);
  ~Engine();  // aborts what is left and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request and returns its id. Throws Error (base/error.h) when the prompt is
  // empty, holds an id outside the vocabulary, or prompt + max_tokens exceeds max_model_len.
  uint64_t submit(GenerationRequest request);
  // Stops a request (client gone, stop string seen): its blocks are freed before the next step
  // and its callback gets one last event with kAbort. Unknown or finished ids are ignored.
  void abort(uint64_t request_id);

  EngineStats stats() const;
  int64_t max_model_len() const;
  int64_t kv_cache_tokens() const;  // total KV capacity in tokens
  // Blocks until every queued and running request has finished.
  void drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m2fp4
