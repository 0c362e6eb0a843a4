#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace m2fp4 {

int32_t argmax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (params_.temperature <= 0.0f) return argmax(logits, vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  int64_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) keep = params_.top_k;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(static_cast<size_t>(keep));
  const float max_logit = logits[ids[0]];
  std::vector<double> probs(ids.size());
  double total = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    probs[i] = std::exp(static_cast<double>(logits[ids[i]] - max_logit) / params_.temperature);
    total += probs[i];
  }
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    size_t cut = ids.size();
    for (size_t i = 0; i < ids.size(); ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs.resize(cut);
    ids.resize(cut);
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.end());
  return ids[pick(rng_)];
}

}  // namespace m2fp4
