// Next-token choice from logits: greedy, or temperature sampling with top-k / top-p / min-p, and
// the logit processing the serving engine applies before it (vLLM's order: penalties on the raw
// logits, min_tokens masking, then temperature, min_p, top_k, top_p).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace m2fp4 {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
};

// The single-sequence sampler of `m2fp4 run`.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest value (the first one on ties).
int32_t argmax(const float* values, int64_t n);

// Below this temperature a request is greedy (vLLM's _SAMPLING_EPS).
inline constexpr float kGreedyTemperature = 1e-5f;

// vLLM's penalties, in its order, on logits in place: repetition (tokens of the prompt or the
// output: positive logits divided by `repetition`, negative ones multiplied), then frequency
// (minus frequency * count in the output) and presence (minus presence if in the output).
void apply_penalties(float* logits, int64_t vocab, float presence, float frequency,
                     float repetition, const std::vector<int32_t>& prompt,
                     const std::vector<int32_t>& output);

// A probability distribution over a subset of the vocabulary (the tokens that survive
// truncation), probabilities summing to 1.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<double> probs;
  double prob_of(int32_t token) const;
};

struct TruncationParams {
  float temperature = 1.0f;  // > 0
  int64_t top_k = 0;         // <= 0: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
};

// softmax(logits / temperature), then min_p (drop tokens below min_p * the largest probability),
// top_k (keep the k most likely; ties by lower id) and top_p (keep the smallest most-likely
// prefix reaching mass top_p), renormalised. Tokens with -inf logits never appear.
TokenDistribution token_distribution(const float* logits, int64_t vocab,
                                     const TruncationParams& params);

// The token at cumulative probability u in [0, 1) (ids in the distribution's order).
int32_t sample_token(const TokenDistribution& dist, double u);

// dist with `token` removed and the rest renormalised (rejection sampling's residual for a
// point-mass draft). Returns an empty distribution if nothing is left.
TokenDistribution without_token(const TokenDistribution& dist, int32_t token);

// A uniform double in [0, 1) from 53 random bits (the same on every platform).
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Speculative verification of a point-mass draft (ngram drafts have no probabilities): accept
// the draft with probability p(draft); otherwise sample from p with the draft removed,
// renormalised. The result is distributed exactly as p. Sets *accepted.
int32_t verify_draft(const TokenDistribution& dist, int32_t draft, std::mt19937_64& rng,
                     bool* accepted);

// log_softmax of logits (double accumulation), into out [vocab].
void log_softmax(const float* logits, int64_t vocab, std::vector<float>& out);

}  // namespace m2fp4
