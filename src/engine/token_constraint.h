// A per-request restriction of the tokens the engine may sample (structured output:
// response_format, tool_choice). The frontend, which knows what each token id spells, implements
// it; the engine masks what it disallows before temperature and truncation (vLLM applies its
// logits processors at the same point), so greedy and sampled requests only ever produce
// allowed tokens, with or without speculation.
//
// End tokens (the model's EOS ids and the request's stop_token_ids) are the engine's business:
// while the constraint is active they are masked unless the output may end there; once it is
// complete only they may follow.
//
// The engine calls every method on its own thread only, and advances the state only with tokens
// appended to the output (accepted draft tokens included), so preemption by recompute, which
// keeps the output, keeps the state consistent.
#pragma once

#include <cstdint>
#include <vector>

namespace m2fp4 {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;

  // False while the output is still free (e.g. the model is reasoning): nothing is masked.
  virtual bool active() const = 0;
  // True when the output is complete: only end tokens may follow. Implies active().
  virtual bool complete() const = 0;
  // True when an end token may come now (the output is valid as it is), though more may follow
  // (a top-level JSON number). Implied by complete().
  virtual bool may_end() const { return complete(); }
  // Whether appending `token` (not an end token) keeps the output a valid prefix. Active only.
  virtual bool allows(int32_t token) const = 0;
  // allowed[t] = allows(t) for every t < allowed.size() (the model's vocabulary). Active only.
  // Implementations override it with something faster than one allows() per token.
  virtual void fill_allowed(std::vector<uint8_t>& allowed) const {
    for (size_t t = 0; t < allowed.size(); ++t) allowed[t] = allows(static_cast<int32_t>(t));
  }
  // The sampled token (end tokens included) was appended to the output.
  virtual void accept(int32_t token) = 0;
};

}  // namespace m2fp4
