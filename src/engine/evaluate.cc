#include "engine/evaluate.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace m2fp4 {
namespace {

// log-sum-exp of a logit row, in double.
double log_normalizer(const float* logits, int64_t n) {
  double max = logits[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return max + std::log(sum);
}

int64_t argmax_row(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

}  // namespace

void DivergenceStats::add(const float* model_logits, const float* reference_logits, int64_t vocab,
                          int32_t next_token) {
  const double zq = log_normalizer(model_logits, vocab);
  const double zp = log_normalizer(reference_logits, vocab);
  // KL(P || Q) = sum_i p_i (log p_i - log q_i), P = reference, Q = model.
  double kld = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double log_p = reference_logits[i] - zp;
    const double log_q = model_logits[i] - zq;
    kld += std::exp(log_p) * (log_p - log_q);
  }
  kld = std::max(kld, 0.0);  // rounding can leave a tiny negative for identical rows
  model_nll_ -= model_logits[next_token] - zq;
  reference_nll_ -= reference_logits[next_token] - zp;
  kld_sum_ += kld;
  kld_max_ = std::max(kld_max_, kld);
  klds_.push_back(kld);
  top1_same_ += argmax_row(model_logits, vocab) == argmax_row(reference_logits, vocab) ? 1 : 0;
  ++count_;
}

double DivergenceStats::model_perplexity() const {
  return count_ ? std::exp(model_nll_ / count_) : 0.0;
}

double DivergenceStats::reference_perplexity() const {
  return count_ ? std::exp(reference_nll_ / count_) : 0.0;
}

double DivergenceStats::kld_quantile(double q) const {
  if (klds_.empty()) return 0.0;
  std::vector<double> sorted = klds_;
  std::sort(sorted.begin(), sorted.end());
  const size_t idx =
      std::min(sorted.size() - 1, static_cast<size_t>(q * (sorted.size() - 1) + 0.5));
  return sorted[idx];
}

DivergenceStats evaluate_divergence(const EvalForward& model, int64_t model_vocab,
                                    MiniMaxM2& reference, const std::vector<int32_t>& tokens,
                                    const EvalOptions& options) {
  const ModelConfig& rc = reference.config();
  M2_CHECK(model_vocab == rc.vocab_size, "the model's vocabulary (", model_vocab,
           ") differs from the reference's (", rc.vocab_size, ")");
  M2_CHECK(options.context >= 2, "eval context must be at least 2 tokens");
  M2_CHECK(tokens.size() >= 2, "eval needs at least 2 tokens of text");
  const int64_t vocab = rc.vocab_size;
  DivergenceStats stats;
  KvCache reference_cache(rc, options.context);
  std::vector<float> model_logits, reference_logits;
  int64_t chunks = 0;
  for (size_t start = 0; start + 1 < tokens.size(); start += static_cast<size_t>(options.context)) {
    if (options.max_chunks > 0 && chunks == options.max_chunks) break;
    ++chunks;
    const size_t end = std::min(tokens.size(), start + static_cast<size_t>(options.context));
    reference_cache.drop(0);
    // Feed the chunk in pieces; every position except the chunk's last predicts the next token.
    for (size_t piece = start; piece < end; piece += static_cast<size_t>(options.logits_batch)) {
      const size_t piece_end = std::min(end, piece + static_cast<size_t>(options.logits_batch));
      Batch batch;
      for (size_t i = piece; i < piece_end; ++i) {
        batch.add(tokens[i], static_cast<int32_t>(i - start), 0, i + 1 < end);
      }
      model(batch, model_logits);
      reference.forward(batch, reference_cache, reference_logits);
      const int64_t rows = static_cast<int64_t>(model_logits.size()) / vocab;
      for (int64_t r = 0; r < rows; ++r) {
        stats.add(model_logits.data() + r * vocab, reference_logits.data() + r * vocab, vocab,
                  tokens[piece + static_cast<size_t>(r) + 1]);
      }
    }
  }
  return stats;
}

DivergenceStats evaluate_divergence(MiniMaxM2& model, MiniMaxM2& reference,
                                    const std::vector<int32_t>& tokens,
                                    const EvalOptions& options) {
  KvCache model_cache(model.config(), options.context, 0, options.model_kv_dtype);
  const EvalForward forward = [&](const Batch& batch, std::vector<float>& logits) {
    if (batch.positions.front() == 0) model_cache.drop(0);
    model.forward(batch, model_cache, logits);
  };
  return evaluate_divergence(forward, model.config().vocab_size, reference, tokens, options);
}

}  // namespace m2fp4
