// Next-token choice from logits: greedy, or temperature sampling with top-k / top-p.
#pragma once

#include <cstdint>
#include <random>

namespace m2fp4 {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
};

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

}  // namespace m2fp4
