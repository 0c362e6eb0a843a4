// Scalar references for the non-matmul kernels: plain loops in the order the spec
// (minimax-m2-architecture.md section 2) writes them. The fast kernels are tested against these.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_check.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4::scalar {

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out) {
  M2_CHECK(n_rows >= 0 && n >= 1, "rms_norm: bad shape [", n_rows, ", ", n, "]");
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* xt = x + t * n;
    float* ot = out + t * n;
    // Statistic in double: the reference should be the more accurate side of the comparison.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_sq += double{xt[i]} * double{xt[i]};
    const float inv_rms =
        static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + double{eps}));
    for (int64_t i = 0; i < n; ++i) ot[i] = xt[i] * inv_rms * weight[i];
  }
}

void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, int64_t position,
               double theta) {
  check_rope_args(n_heads, head_dim, rotary_dim, theta);
  const int64_t half = rotary_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq =
          std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
      const double angle = static_cast<double>(position) * inv_freq;
      const float c = static_cast<float>(std::cos(angle));
      const float s = static_cast<float>(std::sin(angle));
      const float a = xh[i];
      const float b = xh[i + half];
      xh[i] = a * c - b * s;
      xh[i + half] = b * c + a * s;
    }
  }
}

namespace {

// Causal GQA attention of one query over n_ctx cached rows; key(j, i) / value(j, i) give element i
// of cached row j (for the head's KV group), decoded to f32.
template <class Key, class Value>
void attention_rows(const float* q, int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                    int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch, Key key,
                    Value value) {
  const int64_t group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t base = (h / group) * head_dim;
    const float* qh = q + h * head_dim;
    float max_score = -INFINITY;
    for (int64_t j = 0; j < n_ctx; ++j) {
      float dot = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) dot += qh[d] * key(j * kv_row_stride + base + d);
      scratch[j] = dot * scale;
      max_score = std::max(max_score, scratch[j]);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n_ctx; ++j) {
      scratch[j] = std::exp(scratch[j] - max_score);
      sum += scratch[j];
    }
    float* oh = out + h * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) {
      float acc = 0.0f;
      for (int64_t j = 0; j < n_ctx; ++j) acc += scratch[j] * value(j * kv_row_stride + base + d);
      oh[d] = acc / sum;
    }
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, int64_t n_ctx, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  attention_rows(
      q, n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, out, scratch,
      [k](int64_t i) { return k[i]; }, [v](int64_t i) { return v[i]; });
}

void kv_store_fp8(const float* x, int64_t n, float scale, uint8_t* out) {
  M2_CHECK(n >= 0, "kv_store_fp8: negative length ", n);
  check_fp8_scale(scale, "kv_store_fp8: scale");
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_e4m3(x[i] / scale, Fp8Overflow::kSaturate);
}

void attention_fp8(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                   int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   float k_scale, float v_scale, float* out, float* scratch) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  check_fp8_scale(k_scale, "attention_fp8: k_scale");
  check_fp8_scale(v_scale, "attention_fp8: v_scale");
  attention_rows(
      q, n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, out, scratch,
      [k, k_scale](int64_t i) { return e4m3_to_f32(k[i]) * k_scale; },
      [v, v_scale](int64_t i) { return e4m3_to_f32(v[i]) * v_scale; });
}

void attention_paged(const float* q, const float* const* k_blocks, const float* const* v_blocks,
                     int64_t block_size, int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, float* out) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  // Element i of the contiguous layout is row i / stride, column i % stride.
  auto at = [=](const float* const* blocks, int64_t i) {
    const int64_t row = i / kv_row_stride;
    return blocks[row / block_size][(row % block_size) * kv_row_stride + i % kv_row_stride];
  };
  std::vector<float> scratch(static_cast<size_t>(n_ctx));
  attention_rows(
      q, n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, out, scratch.data(),
      [&](int64_t i) { return at(k_blocks, i); }, [&](int64_t i) { return at(v_blocks, i); });
}

void attention_fp8_paged(const float* q, const uint8_t* const* k_blocks,
                         const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                         int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float k_scale, float v_scale, float* out) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  check_fp8_scale(k_scale, "attention_fp8: k_scale");
  check_fp8_scale(v_scale, "attention_fp8: v_scale");
  auto at = [=](const uint8_t* const* blocks, int64_t i) {
    const int64_t row = i / kv_row_stride;
    return blocks[row / block_size][(row % block_size) * kv_row_stride + i % kv_row_stride];
  };
  std::vector<float> scratch(static_cast<size_t>(n_ctx));
  attention_rows(
      q, n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, out, scratch.data(),
      [&](int64_t i) { return e4m3_to_f32(at(k_blocks, i)) * k_scale; },
      [&](int64_t i) { return e4m3_to_f32(at(v_blocks, i)) * v_scale; });
}

void attention_batch(const float* q, const AttentionSequence* seqs, int64_t n_seqs,
                     const AttentionShape& shape, float* out) {
  check_attention_batch_args(seqs, n_seqs, shape);
  const int64_t q_stride = shape.n_heads * shape.head_dim;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttentionSequence& seq = seqs[s];
    for (int64_t i = 0; i < seq.n_tokens; ++i) {
      const float* qi = q + seq.tokens[i] * q_stride;
      float* oi = out + seq.tokens[i] * q_stride;
      if (seq.k8_blocks) {
        attention_fp8_paged(qi, seq.k8_blocks, seq.v8_blocks, seq.block_size, seq.n_ctx[i],
                            shape.kv_row_stride, shape.n_heads, shape.n_kv_heads, shape.head_dim,
                            shape.k_scale, shape.v_scale, oi);
      } else {
        attention_paged(qi, seq.k_blocks, seq.v_blocks, seq.block_size, seq.n_ctx[i],
                        shape.kv_row_stride, shape.n_heads, shape.n_kv_heads, shape.head_dim, oi);
      }
    }
  }
}

void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                        int32_t* expert_ids, float* expert_weights) {
  check_route_args(n_experts, top_k);
  std::vector<float> score(n_experts);
  std::vector<bool> taken(n_experts, false);
  for (int64_t e = 0; e < n_experts; ++e) score[e] = 1.0f / (1.0f + std::exp(-logits[e]));
  float total = 0.0f;
  for (int64_t j = 0; j < top_k; ++j) {
    // Selection sort by score + bias; ties go to the lower expert index.
    int64_t best = -1;
    float best_choice = 0.0f;
    for (int64_t e = 0; e < n_experts; ++e) {
      if (taken[e]) continue;
      const float choice = score[e] + (bias ? bias[e] : 0.0f);
      if (best < 0 || choice > best_choice) {
        best = e;
        best_choice = choice;
      }
    }
    taken[best] = true;
    expert_ids[j] = static_cast<int32_t>(best);
    expert_weights[j] = score[best];
    total += score[best];
  }
  for (int64_t j = 0; j < top_k; ++j) expert_weights[j] /= total;
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_scaled(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}

}  // namespace m2fp4::scalar
