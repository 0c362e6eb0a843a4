// Argument validation shared by the scalar and fast ops (bad shapes fail with a clear message).
#pragma once

#include <cmath>
#include <cstdint>

#include "base/error.h"

namespace m2fp4 {

// Query heads of one KV head that attention scores together (one score row each).
inline constexpr int64_t kAttentionHeadsPerPass = 6;

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

inline void check_route_args(int64_t n_experts, int64_t top_k) {
  M2_CHECK(top_k >= 1 && top_k <= n_experts, "route_sigmoid_topk: top_k ", top_k,
           " must be in [1, n_experts = ", n_experts, "]");
}

}  // namespace m2fp4
