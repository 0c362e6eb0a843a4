// Non-matmul kernels of the MiniMax-M2 forward pass, f32 activations. Each has a scalar twin in
// namespace scalar that tests compare against.
#pragma once

#include <cstdint>

#include "base/thread_pool.h"

namespace m2fp4 {

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight, for n_rows rows of width n.
// out may alias x.
void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out);

// Partial NeoX ("rotate_half") RoPE on one token: for each of n_heads heads of head_dim channels,
// channel i < rotary_dim/2 pairs with i + rotary_dim/2; channels >= rotary_dim pass through.
// inv_freq[i] = theta^(-2i / rotary_dim); angle = position * inv_freq[i] (computed in double).
void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, int64_t position,
               double theta);

// Causal GQA attention for one query token over n_ctx cached positions (the query's own
// position included as the last one). q: [n_heads * head_dim]; k, v: n_ctx rows of
// kv_row_stride floats, head g's channels at g * head_dim; query head h uses KV head
// h / (n_heads / n_kv_heads). Scale 1/sqrt(head_dim), softmax in f32. out: [n_heads * head_dim].
// scratch: at least n_ctx floats.
void attention(const float* q, const float* k, const float* v, int64_t n_ctx, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch);

// attention() with the heads split across the pool's threads (contiguous head ranges, so the
// heads of one KV group mostly share a thread and its cached K/V). Scratch is per thread,
// internal.
void attention_parallel(const float* q, const float* k, const float* v, int64_t n_ctx,
                        int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                        int64_t head_dim, float* out, ThreadPool& pool);

// FP8 (E4M3) KV cache, quant-formats.md §4.1: one scale per layer for K and one for V.
// out[i] = e4m3_satfinite(f32(x[i] / scale)) (RNE; overflow and +-inf -> +-448, NaN -> NaN).
void kv_store_fp8(const float* x, int64_t n, float scale, uint8_t* out);

// attention() over an E4M3 cache: k, v are n_ctx rows of kv_row_stride bytes, decoded as
// K = f32(e4m3(k) * k_scale), V = f32(e4m3(v) * v_scale) (exactly as f32 values, then the same
// arithmetic as attention() on those). Scales finite and > 0. K and V are decoded a block of
// positions at a time into per-thread scratch; `scratch` (n_ctx floats, as for attention()) is
// accepted for symmetry and not used.
void attention_fp8(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                   int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   float k_scale, float v_scale, float* out, float* scratch);

// attention_fp8() with the heads split across the pool's threads, as attention_parallel().
void attention_fp8_parallel(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                            int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                            int64_t head_dim, float k_scale, float v_scale, float* out,
                            ThreadPool& pool);

// attention() / attention_parallel() over a paged KV cache: cached row j (of K; V alike) starts
// at k_blocks[j / block_size] + (j % block_size) * kv_row_stride. Bit-identical to attention() on
// the same rows laid out contiguously (the same sums in the same order). Scratch is per thread,
// internal.
void attention_paged(const float* q, const float* const* k_blocks, const float* const* v_blocks,
                     int64_t block_size, int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, float* out);
void attention_paged_parallel(const float* q, const float* const* k_blocks,
                              const float* const* v_blocks, int64_t block_size, int64_t n_ctx,
                              int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                              int64_t head_dim, float* out, ThreadPool& pool);
// attention_fp8() / attention_fp8_parallel() over a paged E4M3 cache, rows addressed as above.
void attention_fp8_paged(const float* q, const uint8_t* const* k_blocks,
                         const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                         int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float k_scale, float v_scale, float* out);
void attention_fp8_paged_parallel(const float* q, const uint8_t* const* k_blocks,
                                  const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                                  int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                                  int64_t head_dim, float k_scale, float v_scale, float* out,
                                  ThreadPool& pool);

// The queries of one sequence in a batch, for attention_batch(): batch row tokens[i] (of q and
// out) sees positions [0, n_ctx[i]) of the sequence's paged cache, rows addressed as for
// attention_paged(). Exactly one of the f32 tables (k_blocks, v_blocks) and the E4M3 tables
// (k8_blocks, v8_blocks) is set. A contiguous cache is one block of block_size >= every n_ctx.
struct AttentionSequence {
  const int64_t* tokens = nullptr;
  const int64_t* n_ctx = nullptr;
  int64_t n_tokens = 0;
  int64_t block_size = 0;
  const float* const* k_blocks = nullptr;
  const float* const* v_blocks = nullptr;
  const uint8_t* const* k8_blocks = nullptr;
  const uint8_t* const* v8_blocks = nullptr;
};

// Shape of attention_batch(): as for attention(); k_scale / v_scale as for attention_fp8()
// (used by sequences with E4M3 tables only).
struct AttentionShape {
  int64_t kv_row_stride = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float k_scale = 1.0f, v_scale = 1.0f;
};

// Causal GQA attention of every query of a batch (prefill): q and out have one row of
// n_heads * head_dim floats per batch token. A sequence with several queries is attended
// flash-style (performance.md: K/V read once per block of queries, online softmax, no
// n_ctx-sized score rows): blocks of its queries x the query heads of one KV head are scored
// against blocks of kAttentionFlashKeys positions as small GEMMs; work is split across the pool
// by (query block, KV head). A sequence with few queries uses attention_paged() per query.
// Not bit-identical to attention() (the softmax is accumulated block by block), but independent
// of the page size and of which other sequences share the batch.
void attention_batch(const float* q, const AttentionSequence* seqs, int64_t n_seqs,
                     const AttentionShape& shape, float* out, ThreadPool& pool);

// MiniMax-M2 router for one token: score = sigmoid(logit); experts chosen by the top_k largest
// score + bias (bias may be null); weights = chosen scores renormalised to sum 1.
// expert_ids/expert_weights: top_k entries, in descending order of score + bias.
void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                        int32_t* expert_ids, float* expert_weights);

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// y[i] += a * x[i] (the MoE's weighted sum of expert outputs): one rounding (a fused
// multiply-add, as std::fma) on targets with FMA (AVX2, AVX-512), the product rounded before
// the sum on the SSE targets.
void add_scaled(float* y, const float* x, float a, int64_t n);

namespace scalar {
void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out);
void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, int64_t position,
               double theta);
void attention(const float* q, const float* k, const float* v, int64_t n_ctx, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch);
void kv_store_fp8(const float* x, int64_t n, float scale, uint8_t* out);
void attention_fp8(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                   int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   float k_scale, float v_scale, float* out, float* scratch);
void attention_paged(const float* q, const float* const* k_blocks, const float* const* v_blocks,
                     int64_t block_size, int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, float* out);
void attention_fp8_paged(const float* q, const uint8_t* const* k_blocks,
                         const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                         int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float k_scale, float v_scale, float* out);
// attention_batch() one query at a time through scalar::attention_paged / attention_fp8_paged.
void attention_batch(const float* q, const AttentionSequence* seqs, int64_t n_seqs,
                     const AttentionShape& shape, float* out);
void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                        int32_t* expert_ids, float* expert_weights);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void add_scaled(float* y, const float* x, float a, int64_t n);
}  // namespace scalar

}  // namespace m2fp4
