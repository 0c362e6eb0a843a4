// Public entry points of the non-matmul kernels: validate, then run the best SIMD target's code
// (ops-inl.cc, compiled once per target by Highway and chosen at runtime).
#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/ops-inl.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "kernels/cpu/ops-inl.cc"

#if HWY_ONCE
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops_check.h"
#include "kernels/cpu/scratch.h"

namespace m2fp4 {

HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(RopeImpl);
HWY_EXPORT(SiluMulImpl);
HWY_EXPORT(AddScaledImpl);
HWY_EXPORT(KvStoreFp8Impl);
HWY_EXPORT(AttentionHeadsPagedImpl);
HWY_EXPORT(AttentionFp8HeadsPagedImpl);
HWY_EXPORT(FlashAttentionPagedImpl);
HWY_EXPORT(FlashAttentionFp8PagedImpl);

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out) {
  M2_CHECK(n_rows >= 0 && n >= 1, "rms_norm: bad shape [", n_rows, ", ", n, "]");
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, weight, n_rows, n, eps, out);
}

namespace {
// cos/sin of one position's angles. q and k of a token are rotated with the same position
// back to back, so the last table is kept per thread.
struct RopeTable {
  double theta = 0;
  int64_t rotary_dim = -1;
  int64_t position = 0;
  std::vector<float> cos, sin;
};

const RopeTable& rope_table(int64_t rotary_dim, int64_t position, double theta) {
  thread_local RopeTable table;
  if (table.theta == theta && table.rotary_dim == rotary_dim && table.position == position) {
    return table;
  }
  const int64_t half = rotary_dim / 2;
  table.cos.resize(half);
  table.sin.resize(half);
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    const double angle = static_cast<double>(position) * inv_freq;
    table.cos[i] = static_cast<float>(std::cos(angle));
    table.sin[i] = static_cast<float>(std::sin(angle));
  }
  table.theta = theta;
  table.rotary_dim = rotary_dim;
  table.position = position;
  return table;
}
}  // namespace

void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim, int64_t position,
               double theta) {
  check_rope_args(n_heads, head_dim, rotary_dim, theta);
  if (rotary_dim == 0 || n_heads == 0) return;
  const RopeTable& table = rope_table(rotary_dim, position, theta);
  HWY_DYNAMIC_DISPATCH(RopeImpl)
  (x, n_heads, head_dim, rotary_dim / 2, table.cos.data(), table.sin.data());
}

void kv_store_fp8(const float* x, int64_t n, float scale, uint8_t* out) {
  M2_CHECK(n >= 0, "kv_store_fp8: negative length ", n);
  check_fp8_scale(scale, "kv_store_fp8: scale");
  HWY_DYNAMIC_DISPATCH(KvStoreFp8Impl)(x, n, scale, out);
}

namespace {
void check_attention_fp8_args(int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                              int64_t n_kv_heads, int64_t head_dim, float k_scale, float v_scale) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  check_fp8_scale(k_scale, "attention_fp8: k_scale");
  check_fp8_scale(v_scale, "attention_fp8: v_scale");
}

// Positions of K or V decoded to f32 at a time: a 32 KiB tile (stays in L1 for the heads).
int64_t fp8_tile_rows(int64_t head_dim) {
  return std::max<int64_t>(1, 8192 / head_dim);
}

// This thread's score rows (heads of one pass x n_ctx) followed by its decoded K/V tile.
float* fp8_attention_scratch(int64_t group, int64_t n_ctx, int64_t head_dim, float** tile) {
  const int64_t score_floats = std::min(group, kAttentionHeadsPerPass) * n_ctx;
  float* scratch = thread_scratch(2, score_floats + fp8_tile_rows(head_dim) * head_dim);
  *tile = scratch + score_floats;
  return scratch;
}
}  // namespace

namespace {
void check_paged_args(int64_t block_size, const void* k_blocks, const void* v_blocks) {
  M2_CHECK(block_size >= 1, "paged attention: block_size must be positive, got ", block_size);
  M2_CHECK(k_blocks != nullptr && v_blocks != nullptr, "paged attention: no block table");
}
}  // namespace

void attention_paged(const float* q, const float* const* k_blocks, const float* const* v_blocks,
                     int64_t block_size, int64_t n_ctx, int64_t kv_row_stride, int64_t n_heads,
                     int64_t n_kv_heads, int64_t head_dim, float* out) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  check_paged_args(block_size, k_blocks, v_blocks);
  const int64_t group = n_heads / n_kv_heads;
  float* scores = thread_scratch(2, std::min(group, kAttentionHeadsPerPass) * n_ctx);
  for (int64_t g = 0; g < n_kv_heads; ++g) {
    HWY_DYNAMIC_DISPATCH(AttentionHeadsPagedImpl)
    (q, k_blocks, v_blocks, block_size, n_ctx, kv_row_stride, g, g * group, (g + 1) * group,
     head_dim, out, scores);
  }
}

void attention_paged_parallel(const float* q, const float* const* k_blocks,
                              const float* const* v_blocks, int64_t block_size, int64_t n_ctx,
                              int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                              int64_t head_dim, float* out, ThreadPool& pool) {
  check_attention_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim);
  check_paged_args(block_size, k_blocks, v_blocks);
  const int64_t group = n_heads / n_kv_heads;
  const int64_t grain = std::max<int64_t>(1, 16384 / (n_ctx * head_dim));
  pool.parallel_for(n_heads, grain, [&](int64_t h0, int64_t h1, int) {
    float* scores = thread_scratch(2, std::min(group, kAttentionHeadsPerPass) * n_ctx);
    for (int64_t h = h0; h < h1;) {
      const int64_t g = h / group;
      const int64_t end = std::min(h1, (g + 1) * group);
      HWY_DYNAMIC_DISPATCH(AttentionHeadsPagedImpl)
      (q, k_blocks, v_blocks, block_size, n_ctx, kv_row_stride, g, h, end, head_dim, out, scores);
      h = end;
    }
  });
}

void attention_fp8_paged(const float* q, const uint8_t* const* k_blocks,
                         const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                         int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float k_scale, float v_scale, float* out) {
  check_attention_fp8_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, k_scale, v_scale);
  check_paged_args(block_size, k_blocks, v_blocks);
  const int64_t group = n_heads / n_kv_heads;
  float* tile = nullptr;
  float* scores = fp8_attention_scratch(group, n_ctx, head_dim, &tile);
  for (int64_t g = 0; g < n_kv_heads; ++g) {
    HWY_DYNAMIC_DISPATCH(AttentionFp8HeadsPagedImpl)
    (q, k_blocks, v_blocks, block_size, n_ctx, kv_row_stride, g, g * group, (g + 1) * group,
     head_dim, k_scale, v_scale, out, scores, tile, fp8_tile_rows(head_dim));
  }
}

void attention_fp8_paged_parallel(const float* q, const uint8_t* const* k_blocks,
                                  const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                                  int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                                  int64_t head_dim, float k_scale, float v_scale, float* out,
                                  ThreadPool& pool) {
  check_attention_fp8_args(n_ctx, kv_row_stride, n_heads, n_kv_heads, head_dim, k_scale, v_scale);
  check_paged_args(block_size, k_blocks, v_blocks);
  const int64_t group = n_heads / n_kv_heads;
  const int64_t grain = std::max<int64_t>(1, 16384 / (n_ctx * head_dim));
  pool.parallel_for(n_heads, grain, [&](int64_t h0, int64_t h1, int) {
    float* tile = nullptr;
    float* scores = fp8_attention_scratch(group, n_ctx, head_dim, &tile);
    for (int64_t h = h0; h < h1;) {
      const int64_t g = h / group;
      const int64_t end = std::min(h1, (g + 1) * group);
      HWY_DYNAMIC_DISPATCH(AttentionFp8HeadsPagedImpl)
      (q, k_blocks, v_blocks, block_size, n_ctx, kv_row_stride, g, h, end, head_dim, k_scale,
       v_scale, out, scores, tile, fp8_tile_rows(head_dim));
      h = end;
    }
  });
}

// A contiguous cache is a paged one with a single block holding every row.
void attention(const float* q, const float* k, const float* v, int64_t n_ctx, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, float* scratch) {
  (void)scratch;  // the score rows live in the thread's own scratch
  const float* const k_blocks[1] = {k};
  const float* const v_blocks[1] = {v};
  attention_paged(q, k_blocks, v_blocks, std::max<int64_t>(n_ctx, 1), n_ctx, kv_row_stride, n_heads,
                  n_kv_heads, head_dim, out);
}

void attention_parallel(const float* q, const float* k, const float* v, int64_t n_ctx,
                        int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                        int64_t head_dim, float* out, ThreadPool& pool) {
  const float* const k_blocks[1] = {k};
  const float* const v_blocks[1] = {v};
  attention_paged_parallel(q, k_blocks, v_blocks, std::max<int64_t>(n_ctx, 1), n_ctx, kv_row_stride,
                           n_heads, n_kv_heads, head_dim, out, pool);
}

void attention_fp8(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                   int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   float k_scale, float v_scale, float* out, float* scratch) {
  (void)scratch;  // the score rows and the decoded tile live in the thread's own scratch
  const uint8_t* const k_blocks[1] = {k};
  const uint8_t* const v_blocks[1] = {v};
  attention_fp8_paged(q, k_blocks, v_blocks, std::max<int64_t>(n_ctx, 1), n_ctx, kv_row_stride,
                      n_heads, n_kv_heads, head_dim, k_scale, v_scale, out);
}

void attention_fp8_parallel(const float* q, const uint8_t* k, const uint8_t* v, int64_t n_ctx,
                            int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                            int64_t head_dim, float k_scale, float v_scale, float* out,
                            ThreadPool& pool) {
  const uint8_t* const k_blocks[1] = {k};
  const uint8_t* const v_blocks[1] = {v};
  attention_fp8_paged_parallel(q, k_blocks, v_blocks, std::max<int64_t>(n_ctx, 1), n_ctx,
                               kv_row_stride, n_heads, n_kv_heads, head_dim, k_scale, v_scale, out,
                               pool);
}

namespace {
// One task of attention_batch(): queries [first, first + count) of a sequence x the query heads
// of KV head g (flash), or (g < 0) one query with all heads (attention_paged).
struct AttentionTask {
  int64_t seq, first, count, g;
  int64_t cost;  // multiply-adds, roughly: biggest tasks are handed out first
};

std::vector<AttentionTask> attention_tasks(const AttentionSequence* seqs, int64_t n_seqs,
                                           int64_t group, int64_t n_kv_heads) {
  std::vector<AttentionTask> tasks;
  const int64_t per_task = std::max<int64_t>(1, kAttentionFlashRows / group);
  for (int64_t s = 0; s < n_seqs; ++s) {
    const AttentionSequence& seq = seqs[s];
    if (seq.n_tokens * group >= kAttentionFlashMinRows) {
      for (int64_t first = 0; first < seq.n_tokens; first += per_task) {
        const int64_t count = std::min(per_task, seq.n_tokens - first);
        const int64_t max_ctx = *std::max_element(seq.n_ctx + first, seq.n_ctx + first + count);
        for (int64_t g = 0; g < n_kv_heads; ++g) {
          tasks.push_back({s, first, count, g, count * group * max_ctx});
        }
      }
    } else {
      for (int64_t i = 0; i < seq.n_tokens; ++i) {
        tasks.push_back({s, i, 1, -1, group * n_kv_heads * seq.n_ctx[i]});
      }
    }
  }
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const AttentionTask& a, const AttentionTask& b) { return a.cost > b.cost; });
  return tasks;
}
}  // namespace

void attention_batch(const float* q, const AttentionSequence* seqs, int64_t n_seqs,
                     const AttentionShape& shape, float* out, ThreadPool& pool) {
  check_attention_batch_args(seqs, n_seqs, shape);
  const int64_t hd = shape.head_dim, group = shape.n_heads / shape.n_kv_heads;
  const int64_t q_stride = shape.n_heads * hd, stride = shape.kv_row_stride;
  const std::vector<AttentionTask> tasks = attention_tasks(seqs, n_seqs, group, shape.n_kv_heads);
  pool.run(static_cast<int64_t>(tasks.size()), [&](int64_t i, int) {
    const AttentionTask& task = tasks[static_cast<size_t>(i)];
    const AttentionSequence& seq = seqs[task.seq];
    const bool fp8 = seq.k8_blocks != nullptr;
    if (task.g < 0) {
      const int64_t row = seq.tokens[task.first], n_ctx = seq.n_ctx[task.first];
      if (fp8) {
        attention_fp8_paged(q + row * q_stride, seq.k8_blocks, seq.v8_blocks, seq.block_size, n_ctx,
                            stride, shape.n_heads, shape.n_kv_heads, hd, shape.k_scale,
                            shape.v_scale, out + row * q_stride);
      } else {
        attention_paged(q + row * q_stride, seq.k_blocks, seq.v_blocks, seq.block_size, n_ctx,
                        stride, shape.n_heads, shape.n_kv_heads, hd, out + row * q_stride);
      }
      return;
    }
    const int64_t n_rows = task.count * group, rpad = (n_rows + 15) / 16 * 16;
    const int64_t flash_floats =
        (hd + kAttentionFlashKeys + 4) * rpad + n_rows * hd + kAttentionFlashKeys * hd;
    float* scratch = thread_scratch(2, static_cast<size_t>(flash_floats));
    const int64_t* tokens = seq.tokens + task.first;
    const int64_t* n_ctx = seq.n_ctx + task.first;
    if (fp8) {
      HWY_DYNAMIC_DISPATCH(FlashAttentionFp8PagedImpl)
      (q, q_stride, tokens, n_ctx, task.count, seq.k8_blocks, seq.v8_blocks, seq.block_size, stride,
       task.g, group, hd, shape.k_scale, shape.v_scale, out, scratch,
       scratch + flash_floats - kAttentionFlashKeys * hd);
    } else {
      HWY_DYNAMIC_DISPATCH(FlashAttentionPagedImpl)
      (q, q_stride, tokens, n_ctx, task.count, seq.k_blocks, seq.v_blocks, seq.block_size, stride,
       task.g, group, hd, out, scratch, scratch + flash_floats - kAttentionFlashKeys * hd);
    }
  });
}

void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_experts, int64_t top_k,
                        int32_t* expert_ids, float* expert_weights) {
  check_route_args(n_experts, top_k);
  // One pass with an insertion-sorted top-k list (top_k is small: 8 of 256). Scores are
  // computed exactly as the scalar twin does, and ties keep the lower expert index first, so
  // the choice and the weights are identical to scalar::route_sigmoid_topk.
  int64_t n_chosen = 0;
  float chosen_key[64];
  float chosen_score[64];
  std::vector<float> key_heap, score_heap;
  float* keys = chosen_key;
  float* scores = chosen_score;
  if (top_k > 64) {
    key_heap.resize(top_k);
    score_heap.resize(top_k);
    keys = key_heap.data();
    scores = score_heap.data();
  }
  for (int64_t e = 0; e < n_experts; ++e) {
    const float score = 1.0f / (1.0f + std::exp(-logits[e]));
    const float key = score + (bias ? bias[e] : 0.0f);
    if (n_chosen == top_k && !(key > keys[top_k - 1])) continue;
    int64_t pos = n_chosen < top_k ? n_chosen++ : top_k - 1;
    while (pos > 0 && key > keys[pos - 1]) {
      keys[pos] = keys[pos - 1];
      scores[pos] = scores[pos - 1];
      expert_ids[pos] = expert_ids[pos - 1];
      --pos;
    }
    keys[pos] = key;
    scores[pos] = score;
    expert_ids[pos] = static_cast<int32_t>(e);
  }
  float total = 0.0f;
  for (int64_t j = 0; j < top_k; ++j) total += scores[j];
  for (int64_t j = 0; j < top_k; ++j) expert_weights[j] = scores[j] / total;
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  M2_CHECK(n >= 0, "silu_mul: negative length ", n);
  HWY_DYNAMIC_DISPATCH(SiluMulImpl)(gate, up, n, out);
}

void add_scaled(float* y, const float* x, float a, int64_t n) {
  M2_CHECK(n >= 0, "add_scaled: negative length ", n);
  HWY_DYNAMIC_DISPATCH(AddScaledImpl)(y, x, a, n);
}

}  // namespace m2fp4
#endif  // HWY_ONCE
