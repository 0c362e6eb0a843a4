// Public op entry points. Initially forward to the scalar references (temporary).
#include "kernels/cpu/ops.h"

namespace m2fp4 {

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out) {
  scalar::rms_norm(x, weight, n_rows, n, eps, out);
}

void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, int64_t position,
               double theta) {
  scalar::rope_neox(x, n_heads, head_dim, rotary_dim, position, theta);
}

void attention(const float* q, const float* k, const float* v, int64_t n_ctx, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch) {
  scalar::attention(q, k, v, n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, out, scratch);
}

void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                        int32_t* expert_ids, float* expert_weights) {
  scalar::route_sigmoid_topk(logits, bias, n_experts, top_k, expert_ids, expert_weights);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  scalar::silu_mul(gate, up, n, out);
}

}  // namespace m2fp4
