// Argument validation shared by the scalar and fast ops (bad shapes fail with a clear message).
#pragma once

#include <cmath>
#include <cstdint>

#include "base/error.h"
#include "kernels/cpu/ops.h"

namespace m2fp4 {

// Query heads of one KV head that attention scores together (one score row each).
inline constexpr int64_t kAttentionHeadsPerPass = 6;

// attention_batch(): positions per key block, and query rows (queries x heads of one KV head)
// per block of work; a sequence with fewer rows than kAttentionFlashMinRows attends per query.
inline constexpr int64_t kAttentionFlashKeys = 64;
inline constexpr int64_t kAttentionFlashRows = 128;
inline constexpr int64_t kAttentionFlashMinRows = 16;

inline void check_rope_args(int64_t n_heads, int64_t head_dim, int64_t rotary_dim, double theta) {
  M2_CHECK(n_heads >= 0 && head_dim >= 0, "rope_neox: negative shape (n_heads ", n_heads,
           ", head_dim ", head_dim, ")");
  M2_CHECK(rotary_dim >= 0 && rotary_dim <= head_dim && rotary_dim % 2 == 0,
           "rope_neox: rotary_dim ", rotary_dim, " must be even and within head_dim ", head_dim);
  M2_CHECK(theta > 0.0, "rope_neox: theta must be positive, got ", theta);
}

inline void check_attention_args(int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                                 int64_t n_kv_heads, int64_t head_dim) {
  M2_CHECK(n_ctx >= 1, "attention: n_ctx must be at least 1 (the query's own position), got ",
           n_ctx);
  M2_CHECK(n_heads >= 1 && n_kv_heads >= 1 && n_heads % n_kv_heads == 0, "attention: n_heads ",
           n_heads, " must be a positive multiple of n_kv_heads ", n_kv_heads);
  M2_CHECK(head_dim >= 1, "attention: head_dim must be positive, got ", head_dim);
  M2_CHECK(kv_row_stride >= n_kv_heads * head_dim, "attention: kv_row_stride ", kv_row_stride,
           " is smaller than n_kv_heads * head_dim = ", n_kv_heads * head_dim);
}

inline void check_fp8_scale(float scale, const char* what) {
  M2_CHECK(std::isfinite(scale) && scale > 0.0f, what, " must be finite and > 0, got ", scale);
}

inline void check_attention_batch_args(const AttentionSequence* seqs, int64_t n_seqs,
                                       const AttentionShape& shape) {
  M2_CHECK(n_seqs >= 0 && (n_seqs == 0 || seqs != nullptr), "attention_batch: no sequences");
  bool any_fp8 = false;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttentionSequence& seq = seqs[s];
    M2_CHECK(seq.n_tokens >= 0 && (seq.n_tokens == 0 || (seq.tokens && seq.n_ctx)),
             "attention_batch: sequence ", s, " has no token list");
    M2_CHECK(seq.block_size >= 1, "attention_batch: block_size must be positive, got ",
             seq.block_size);
    const bool f32 = seq.k_blocks && seq.v_blocks, fp8 = seq.k8_blocks && seq.v8_blocks;
    M2_CHECK(f32 != fp8 && (f32 || (!seq.k_blocks && !seq.v_blocks)), "attention_batch: sequence ",
             s, " needs exactly one of f32 and E4M3 block tables");
    any_fp8 = any_fp8 || fp8;
    for (int64_t i = 0; i < seq.n_tokens; ++i) {
      M2_CHECK(seq.tokens[i] >= 0, "attention_batch: negative token row ", seq.tokens[i]);
      check_attention_args(seq.n_ctx[i], shape.kv_row_stride, shape.n_heads, shape.n_kv_heads,
                           shape.head_dim);
    }
  }
  if (any_fp8) {
    check_fp8_scale(shape.k_scale, "attention_fp8: k_scale");
    check_fp8_scale(shape.v_scale, "attention_fp8: v_scale");
  }
}

inline void check_route_args(int64_t n_experts, int64_t top_k) {
  M2_CHECK(top_k >= 1 && top_k <= n_experts, "route_sigmoid_topk: top_k ", top_k,
           " must be in [1, n_experts = ", n_experts, "]");
}

}  // namespace m2fp4
