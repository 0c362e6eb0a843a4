// Logit processing and sampling against hand-computed expectations; speculative verification
// keeps the target distribution (chi-square); ngram drafting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "engine/ngram.h"
#include "engine/sampler.h"

namespace m2fp4 {
namespace {

TEST(Penalties, MatchVllmsFormulasByHand) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
  // repetition 2 on tokens {0,1,2,3} (prompt or output): 1, -2, 0.25, 1.5, -2 (4 untouched);
  // then output counts {3: 2, 2: 1}: frequency 0.25 * count and presence 0.5.
  apply_penalties(logits.data(), 5, 0.5f, 0.25f, 2.0f, {0, 1}, {3, 3, 2});
  const std::vector<float> expected = {1.0f, -2.0f, 0.25f - 0.25f - 0.5f, 1.5f - 0.5f - 0.5f,
                                       -2.0f};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_FLOAT_EQ(logits[i], expected[i]) << i;
}

TEST(Penalties, OffLeavesLogitsAlone) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f};
  apply_penalties(logits.data(), 3, 0.0f, 0.0f, 1.0f, {0, 1}, {2});
  EXPECT_EQ(logits, (std::vector<float>{2.0f, -1.0f, 0.5f}));
}

// Logits whose softmax is {1, 2, 4, 8} / 15.
const std::vector<float> kPow2 = {0.0f, std::log(2.0f), std::log(4.0f), std::log(8.0f)};

void expect_dist(const TokenDistribution& d, const std::vector<std::pair<int32_t, double>>& want) {
  ASSERT_EQ(d.ids.size(), want.size());
  for (const auto& [id, p] : want) EXPECT_NEAR(d.prob_of(id), p, 1e-6) << "token " << id;
}

TEST(TokenDistribution, TemperatureTopKTopPMinP) {
  expect_dist(token_distribution(kPow2.data(), 4, {1.0f, 0, 1.0f, 0.0f}),
              {{0, 1 / 15.0}, {1, 2 / 15.0}, {2, 4 / 15.0}, {3, 8 / 15.0}});
  expect_dist(token_distribution(kPow2.data(), 4, {1.0f, 2, 1.0f, 0.0f}),
              {{3, 8 / 12.0}, {2, 4 / 12.0}});
  // top_p 0.6: 8/15 = 0.53 < 0.6, + 4/15 reaches 0.8.
  expect_dist(token_distribution(kPow2.data(), 4, {1.0f, 0, 0.6f, 0.0f}),
              {{3, 8 / 12.0}, {2, 4 / 12.0}});
  expect_dist(token_distribution(kPow2.data(), 4, {1.0f, 0, 0.5f, 0.0f}), {{3, 1.0}});
  // min_p 0.3: keep p >= 0.3 * 8/15, i.e. 4/15 and 8/15.
  expect_dist(token_distribution(kPow2.data(), 4, {1.0f, 0, 1.0f, 0.3f}),
              {{3, 8 / 12.0}, {2, 4 / 12.0}});
  // Temperature 2: p ~ sqrt(1, 2, 4, 8).
  const double s = 1 + std::sqrt(2.0) + 2 + std::sqrt(8.0);
  expect_dist(token_distribution(kPow2.data(), 4, {2.0f, 0, 1.0f, 0.0f}),
              {{0, 1 / s}, {1, std::sqrt(2.0) / s}, {2, 2 / s}, {3, std::sqrt(8.0) / s}});
}

// Brute force, in vLLM's order on the whole vocabulary: softmax(l / T), min_p, top_k, top_p.
std::map<int32_t, double> brute_force(const std::vector<float>& logits, const TruncationParams& t) {
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<double> p(logits.size());
  double mx = -1e300, total = 0;
  for (float l : logits) mx = std::max(mx, double(l));
  for (int64_t i = 0; i < n; ++i) total += p[i] = std::exp((logits[i] - mx) / t.temperature);
  std::vector<int32_t> kept;
  double pmax = 0;
  for (int64_t i = 0; i < n; ++i) pmax = std::max(pmax, p[i] / total);
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] / total >= t.min_p * pmax) kept.push_back(int32_t(i));
  }
  std::stable_sort(kept.begin(), kept.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  if (t.top_k > 0 && int64_t(kept.size()) > t.top_k) kept.resize(size_t(t.top_k));
  double mass = 0;
  for (int32_t i : kept) mass += p[i];
  double cum = 0;
  std::map<int32_t, double> out;
  for (int32_t i : kept) {
    out[i] = p[i];
    cum += p[i] / mass;
    if (cum >= t.top_p) break;
  }
  double sum = 0;
  for (auto& [i, q] : out) sum += q;
  for (auto& [i, q] : out) q /= sum;
  return out;
}

TEST(TokenDistribution, MatchesBruteForceOnALargeVocabulary) {
  std::mt19937_64 rng(99);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(5000);
  for (float& l : logits) l = normal(rng);
  for (const TruncationParams& t :
       {TruncationParams{1.0f, 40, 0.95f, 0.0f}, TruncationParams{0.7f, 0, 0.9f, 0.0f},
        TruncationParams{1.3f, 200, 1.0f, 0.05f}, TruncationParams{1.0f, 0, 1.0f, 0.1f},
        TruncationParams{0.5f, 3, 1.0f, 0.0f}}) {
    const auto want = brute_force(logits, t);
    const TokenDistribution got = token_distribution(logits.data(), 5000, t);
    ASSERT_EQ(got.ids.size(), want.size()) << "top_k " << t.top_k << " top_p " << t.top_p;
    for (const auto& [id, p] : want) EXPECT_NEAR(got.prob_of(id), p, 1e-9) << id;
  }
}

TEST(TokenDistribution, MaskedTokensNeverAppear) {
  std::vector<float> logits = kPow2;
  logits[3] = -std::numeric_limits<float>::infinity();
  expect_dist(token_distribution(logits.data(), 4, {1.0f, 0, 1.0f, 0.0f}),
              {{0, 1 / 7.0}, {1, 2 / 7.0}, {2, 4 / 7.0}});
}

TEST(SampleToken, WalksTheCumulativeMass) {
  const TokenDistribution d = token_distribution(kPow2.data(), 4, {1.0f, 0, 1.0f, 0.0f});
  EXPECT_EQ(sample_token(d, 0.0), 0);
  EXPECT_EQ(sample_token(d, 0.999 / 15), 0);
  EXPECT_EQ(sample_token(d, 1.001 / 15), 1);
  EXPECT_EQ(sample_token(d, 6.999 / 15), 2);
  EXPECT_EQ(sample_token(d, 7.001 / 15), 3);
  EXPECT_EQ(sample_token(d, 0.9999999), 3);
}

TEST(LogSoftmax, MatchesDirectFormula) {
  std::vector<float> out;
  log_softmax(kPow2.data(), 4, out);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], std::log(std::pow(2.0, i) / 15.0), 1e-6);
}

// Chi-square of counts against probabilities (categories with p > 0).
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n) {
  double chi = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * static_cast<double>(n);
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

TEST(VerifyDraft, OutputIsDistributedAsTheTarget) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.25, 0.15, 0.0};
  std::vector<float> logits;
  for (double x : p)
    logits.push_back(x > 0 ? static_cast<float>(std::log(x))
                           : -std::numeric_limits<float>::infinity());
  const TokenDistribution dist = token_distribution(logits.data(), 6, {1.0f, 0, 1.0f, 0.0f});
  const int64_t n = 200000;
  // 5 categories with p > 0: 4 degrees of freedom; 18.47 is the 0.001 quantile's bound.
  for (int32_t draft : {2, 0, 5}) {
    std::mt19937_64 rng(1234 + draft);
    std::vector<int64_t> counts(6, 0);
    int64_t accepted = 0;
    for (int64_t i = 0; i < n; ++i) {
      bool ok = false;
      counts[verify_draft(dist, draft, rng, &ok)] += 1;
      accepted += ok;
    }
    EXPECT_LT(chi_square(counts, p, n), 18.47) << "draft " << draft;
    // Acceptance rate p(draft), within 5 standard deviations.
    const double sd = std::sqrt(p[draft] * (1 - p[draft]) / n);
    EXPECT_NEAR(static_cast<double>(accepted) / n, p[draft], 5 * sd + 1e-12) << "draft " << draft;
  }
}

TEST(NgramDraft, LongestMatchEarliestOccurrence) {
  // Suffix [1,2,3] occurred at 0: propose what followed it.
  EXPECT_EQ(ngram_draft({1, 2, 3, 4, 1, 2, 3}, 1, 3, 2), (std::vector<int32_t>{4, 1}));
  // Capped by what exists.
  EXPECT_EQ(ngram_draft({1, 2, 3, 4, 1, 2, 3}, 1, 3, 9), (std::vector<int32_t>{4, 1, 2, 3}));
  // n = 1 and two earlier occurrences of [5]: the earliest wins.
  EXPECT_EQ(ngram_draft({5, 9, 5, 8, 5}, 1, 1, 1), (std::vector<int32_t>{9}));
  // The longer match wins over an earlier shorter one: [8,5] occurred at 3.
  EXPECT_EQ(ngram_draft({5, 9, 7, 8, 5, 6, 8, 5}, 1, 2, 1), (std::vector<int32_t>{6}));
  EXPECT_TRUE(ngram_draft({1, 2, 3}, 1, 3, 4).empty());
  EXPECT_TRUE(ngram_draft({1, 2, 1, 2}, 3, 3, 2).empty());
  EXPECT_EQ(ngram_draft({1, 2, 1, 2}, 2, 3, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_TRUE(ngram_draft({1, 2, 1, 2}, 1, 3, 0).empty());
}

}  // namespace
}  // namespace m2fp4
