#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>
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

void apply_penalties(float* logits, int64_t vocab, float presence, float frequency,
                     float repetition, const std::vector<int32_t>& prompt,
                     const std::vector<int32_t>& output) {
  auto in_vocab = [&](int32_t t) { return t >= 0 && t < vocab; };
  if (repetition != 1.0f) {
    std::vector<uint8_t> seen(static_cast<size_t>(vocab), 0);
    for (int32_t t : prompt) {
      if (in_vocab(t)) seen[t] = 1;
    }
    for (int32_t t : output) {
      if (in_vocab(t)) seen[t] = 1;
    }
    for (int64_t t = 0; t < vocab; ++t) {
      if (!seen[t]) continue;
      logits[t] = logits[t] > 0.0f ? logits[t] / repetition : logits[t] * repetition;
    }
  }
  if (frequency != 0.0f || presence != 0.0f) {
    std::unordered_map<int32_t, int64_t> counts;
    for (int32_t t : output) {
      if (in_vocab(t)) counts[t] += 1;
    }
    for (const auto& [t, n] : counts) {
      logits[t] -= frequency * static_cast<float>(n);
      logits[t] -= presence;
    }
  }
}

double TokenDistribution::prob_of(int32_t token) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == token) return probs[i];
  }
  return 0.0;
}

TokenDistribution token_distribution(const float* logits, int64_t vocab,
                                     const TruncationParams& params) {
  TokenDistribution d;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < vocab; ++t) max_logit = std::max(max_logit, logits[t]);
  if (!(max_logit > -std::numeric_limits<float>::infinity())) return d;
  const double inv_t = 1.0 / static_cast<double>(params.temperature);
  double total = 0.0;
  if (params.top_k > 0 && params.top_k < vocab) {
    // top_k first (min_p and top_k commute: both keep the most likely tokens), so only k
    // probabilities are computed - a large vocabulary costs one selection pass.
    std::vector<int32_t> ids;
    ids.reserve(static_cast<size_t>(vocab));
    for (int64_t t = 0; t < vocab; ++t) {
      if (logits[t] != -std::numeric_limits<float>::infinity())
        ids.push_back(static_cast<int32_t>(t));
    }
    if (static_cast<int64_t>(ids.size()) > params.top_k) {
      auto better = [&](int32_t a, int32_t b) {
        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
      };
      std::nth_element(ids.begin(), ids.begin() + (params.top_k - 1), ids.end(), better);
      ids.resize(static_cast<size_t>(params.top_k));
      std::sort(ids.begin(), ids.end());
    }
    for (int32_t t : ids) {
      d.ids.push_back(t);
      d.probs.push_back(std::exp((static_cast<double>(logits[t]) - max_logit) * inv_t));
    }
  } else {
    d.ids.reserve(static_cast<size_t>(vocab));
    d.probs.reserve(static_cast<size_t>(vocab));
    for (int64_t t = 0; t < vocab; ++t) {
      if (logits[t] == -std::numeric_limits<float>::infinity()) continue;
      d.ids.push_back(static_cast<int32_t>(t));
      d.probs.push_back(std::exp((static_cast<double>(logits[t]) - max_logit) * inv_t));
    }
  }
  auto keep_where = [&](auto&& keep) {
    size_t w = 0;
    for (size_t i = 0; i < d.ids.size(); ++i) {
      if (!keep(i)) continue;
      d.ids[w] = d.ids[i];
      d.probs[w] = d.probs[i];
      ++w;
    }
    d.ids.resize(w);
    d.probs.resize(w);
  };
  if (params.min_p > 0.0f) {
    // The largest probability is exp(0) / total: compare unnormalised values.
    const double threshold = static_cast<double>(params.min_p);
    keep_where([&](size_t i) { return d.probs[i] >= threshold; });
  }
  const bool top_k = params.top_k > 0 && params.top_k < static_cast<int64_t>(d.ids.size());
  const bool top_p = params.top_p < 1.0f;
  if (top_k || top_p) {
    // Most likely first, ties by lower id.
    std::vector<size_t> order(d.ids.size());
    std::iota(order.begin(), order.end(), size_t{0});
    auto better = [&](size_t a, size_t b) {
      return d.probs[a] != d.probs[b] ? d.probs[a] > d.probs[b] : d.ids[a] < d.ids[b];
    };
    size_t keep = order.size();
    if (top_k) {
      keep = static_cast<size_t>(params.top_k);
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep),
                        order.end(), better);
      order.resize(keep);
    } else {
      std::sort(order.begin(), order.end(), better);
    }
    if (top_p) {
      double mass = 0.0;
      for (size_t i : order) mass += d.probs[i];
      double cumulative = 0.0;
      size_t cut = order.size();
      for (size_t r = 0; r < order.size(); ++r) {
        cumulative += d.probs[order[r]] / mass;
        if (cumulative >= static_cast<double>(params.top_p)) {
          cut = r + 1;
          break;
        }
      }
      order.resize(cut);
    }
    TokenDistribution kept;
    kept.ids.reserve(order.size());
    kept.probs.reserve(order.size());
    for (size_t i : order) {
      kept.ids.push_back(d.ids[i]);
      kept.probs.push_back(d.probs[i]);
    }
    d = std::move(kept);
  }
  total = 0.0;
  for (double p : d.probs) total += p;
  for (double& p : d.probs) p /= total;
  return d;
}

int32_t sample_token(const TokenDistribution& dist, double u) {
  double cumulative = 0.0;
  for (size_t i = 0; i < dist.ids.size(); ++i) {
    cumulative += dist.probs[i];
    if (u < cumulative) return dist.ids[i];
  }
  return dist.ids.back();  // rounding: u past the last partial sum
}

TokenDistribution without_token(const TokenDistribution& dist, int32_t token) {
  TokenDistribution out;
  double total = 0.0;
  for (size_t i = 0; i < dist.ids.size(); ++i) {
    if (dist.ids[i] == token || dist.probs[i] <= 0.0) continue;
    out.ids.push_back(dist.ids[i]);
    out.probs.push_back(dist.probs[i]);
    total += dist.probs[i];
  }
  for (double& p : out.probs) p /= total;
  return out;
}

int32_t verify_draft(const TokenDistribution& dist, int32_t draft, std::mt19937_64& rng,
                     bool* accepted) {
  *accepted = false;
  if (uniform01(rng) < dist.prob_of(draft)) {
    *accepted = true;
    return draft;
  }
  const TokenDistribution rest = without_token(dist, draft);
  if (rest.ids.empty()) {  // p(draft) == 1 and u rounded past it: the draft is the only choice
    *accepted = true;
    return draft;
  }
  return sample_token(rest, uniform01(rng));
}

void log_softmax(const float* logits, int64_t vocab, std::vector<float>& out) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < vocab; ++t) max_logit = std::max(max_logit, logits[t]);
  double total = 0.0;
  for (int64_t t = 0; t < vocab; ++t) total += std::exp(static_cast<double>(logits[t]) - max_logit);
  const double log_total = std::log(total) + max_logit;
  out.resize(static_cast<size_t>(vocab));
  for (int64_t t = 0; t < vocab; ++t) {
    out[t] = static_cast<float>(static_cast<double>(logits[t]) - log_total);
  }
}

}  // namespace m2fp4
