// A request inside the engine: its tokens so far, how many of them have keys/values in the
// cache, its sampling state and its callback. Owned by the engine thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "engine/engine.h"

namespace m2fp4 {

struct Sequence {
  uint64_t id = 0;
  int32_t cache_slot = -1;           // the KV cache's sequence id (-1: holds no KV)
  std::vector<int32_t> prompt;       // the request's prompt
  std::vector<int32_t> output;       // generated tokens
  int64_t num_computed = 0;          // leading tokens of prompt + output whose KV is cached
  int64_t cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache (first admission)
  bool admitted_once = false;
  SamplingOptions sampling;
  std::function<void(const TokenEvent&)> on_event;
  std::shared_ptr<TokenConstraint> constraint;  // null: unconstrained
  std::mt19937_64 rng;
  std::vector<int32_t> block_table;  // paged KV: block ids, in position order
  std::vector<uint64_t> block_keys;  // prefix-cache keys of the leading full blocks (computed)
  std::vector<int32_t> draft;        // speculative tokens scheduled this step

  int64_t total_tokens() const { return static_cast<int64_t>(prompt.size() + output.size()); }
  int32_t token_at(int64_t i) const {
    const int64_t p = static_cast<int64_t>(prompt.size());
    return i < p ? prompt[i] : output[i - p];
  }
  std::vector<int32_t> all_tokens() const {
    std::vector<int32_t> t(prompt);
    t.insert(t.end(), output.begin(), output.end());
    return t;
  }
  // Tokens still to be run through the model before the next one can be sampled.
  int64_t pending() const { return total_tokens() - num_computed; }
};

}  // namespace m2fp4
