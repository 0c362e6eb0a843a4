// Quality of a (quantized) model against its reference on the same text: perplexity of both,
// KL divergence KL(reference || model) per predicted token, and top-1 agreement.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/thread_pool.h"
#include "model/minimax_m2.h"

namespace m2fp4 {

// Accumulates per-position statistics from pairs of logit rows.
class DivergenceStats {
 public:
  // One predicted position: logits of the model and of the reference over the same vocabulary,
  // and the token that actually came next.
  void add(const float* model_logits, const float* reference_logits, int64_t vocab,
           int32_t next_token);

  int64_t count() const { return count_; }
  double model_perplexity() const;
  double reference_perplexity() const;
  double mean_kld() const { return count_ ? kld_sum_ / count_ : 0.0; }
  double max_kld() const { return kld_max_; }
  double kld_quantile(double q) const;  // e.g. 0.99
  double top1_agreement() const { return count_ ? static_cast<double>(top1_same_) / count_ : 0.0; }

 private:
  int64_t count_ = 0;
  double model_nll_ = 0.0;
  double reference_nll_ = 0.0;
  double kld_sum_ = 0.0;
  double kld_max_ = 0.0;
  int64_t top1_same_ = 0;
  std::vector<double> klds_;
};

struct EvalOptions {
  int64_t context = 512;      // tokens per chunk; each chunk starts a fresh sequence
  int64_t max_chunks = 0;     // 0: all
  int64_t logits_batch = 64;  // positions whose logits are held at once (bounds memory)
  KvCacheDtype model_kv_dtype = KvCacheDtype::kF32;  // the evaluated model's cache (FP8 KV)
};

// The evaluated model as a function of one batch of a single sequence (id 0): writes the logits
// of the positions that want them. A batch starting at position 0 begins a fresh sequence.
using EvalForward = std::function<void(const Batch& batch, std::vector<float>& logits)>;

// Runs the model and the reference (on the CPU) over `tokens` in chunks and accumulates the
// statistics; `model_vocab` is the evaluated model's vocabulary size.
DivergenceStats evaluate_divergence(const EvalForward& model, int64_t model_vocab,
                                    MiniMaxM2& reference, const std::vector<int32_t>& tokens,
                                    const EvalOptions& options);
// Both models on the CPU; the model's KV cache uses options.model_kv_dtype.
DivergenceStats evaluate_divergence(MiniMaxM2& model, MiniMaxM2& reference,
                                    const std::vector<int32_t>& tokens, const EvalOptions& options);

}  // namespace m2fp4
