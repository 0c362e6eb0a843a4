// Causal GQA attention over the KV cache (f32 or E4M3 with per-layer scales), online softmax in
// f32 (the rescaled running max/sum form of the scalar twin's max-then-exp-then-sum):
// - decode: one block per (query, head); its warps take interleaved cached positions, each keeps
//   a running max, sum and weighted V, and the warps are merged at the end;
// - prefill: one block per (head, tile of kAttnQueryTile queries); K/V tiles of kAttnKeyTile
//   positions are decoded once into shared memory and used by all the tile's queries.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/weight_decode_hd.h"

namespace m2fp4::cuda {
namespace {

constexpr int kDecodeSlots = kAttnMaxHeadDim / kWarp;          // channels per lane, decode
constexpr int kBlockedSlots = kAttnBlockedMaxHeadDim / kWarp;  // channels per lane, prefill
constexpr int kQueriesPerWarp = kAttnQueryTile / kAttnWarps;

__device__ __forceinline__ float kv_value(const float* p, int64_t i, float) {
  return p[i];
}
__device__ __forceinline__ float kv_value(const uint8_t* p, int64_t i, float scale) {
  return e4m3_value(p[i]) * scale;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  return v;
}

struct AttnArgs {
  const float* q;
  const void* k;
  const void* v;
  float k_scale, v_scale;
  const int32_t* positions;
  int64_t n_tokens, kv_row_stride, n_heads, group, head_dim;
  float scale;
  float* out;
};

template <class KV>
__global__ void __launch_bounds__(kAttnWarps* kWarp) attention_decode_kernel(AttnArgs a) {
  __shared__ float s_max[kAttnWarps], s_sum[kAttnWarps];
  __shared__ float s_acc[kAttnWarps][kAttnMaxHeadDim];
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t h = blockIdx.x, t = blockIdx.y;
  const int64_t n_ctx = static_cast<int64_t>(a.positions[t]) + 1;
  const int64_t base = (h / a.group) * a.head_dim;
  const KV* k = static_cast<const KV*>(a.k);
  const KV* v = static_cast<const KV*>(a.v);
  const float* qh = a.q + t * a.n_heads * a.head_dim + h * a.head_dim;

  float qv[kDecodeSlots], acc[kDecodeSlots];
#pragma unroll
  for (int u = 0; u < kDecodeSlots; ++u) {
    const int64_t d = lane + kWarp * u;
    qv[u] = d < a.head_dim ? qh[d] : 0.0f;
    acc[u] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = warp; j < n_ctx; j += kAttnWarps) {
    const int64_t row = j * a.kv_row_stride + base;
    float dot = 0.0f;
#pragma unroll
    for (int u = 0; u < kDecodeSlots; ++u) {
      const int64_t d = lane + kWarp * u;
      if (d < a.head_dim) dot = fmaf(qv[u], kv_value(k, row + d, a.k_scale), dot);
    }
    const float score = warp_sum(dot) * a.scale;
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new);  // 0 on the first position (m = -inf)
    const float p = expf(score - m_new);
    l = l * correction + p;
#pragma unroll
    for (int u = 0; u < kDecodeSlots; ++u) {
      const int64_t d = lane + kWarp * u;
      if (d < a.head_dim) acc[u] = acc[u] * correction + p * kv_value(v, row + d, a.v_scale);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_max[warp] = m;
    s_sum[warp] = l;
  }
#pragma unroll
  for (int u = 0; u < kDecodeSlots; ++u) {
    const int64_t d = lane + kWarp * u;
    if (d < a.head_dim) s_acc[warp][d] = acc[u];
  }
  __syncthreads();
  // Merge the warps (a warp that saw no position has m = -inf and weight 0).
  float big = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) big = fmaxf(big, s_max[w]);
  float total = 0.0f;
  for (int w = 0; w < kAttnWarps; ++w) total += s_sum[w] * expf(s_max[w] - big);
  float* oh = a.out + t * a.n_heads * a.head_dim + h * a.head_dim;
  for (int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) o += s_acc[w][d] * expf(s_max[w] - big);
    oh[d] = o / total;
  }
}

template <class KV>
__global__ void __launch_bounds__(kAttnWarps* kWarp) attention_blocked_kernel(AttnArgs a) {
  __shared__ float s_q[kAttnQueryTile][kAttnBlockedMaxHeadDim];
  __shared__ float s_k[kAttnKeyTile][kAttnBlockedMaxHeadDim + 1];  // +1: lanes read rows
  __shared__ float s_v[kAttnKeyTile][kAttnBlockedMaxHeadDim];
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t h = blockIdx.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kAttnQueryTile;
  const int64_t base = (h / a.group) * a.head_dim;
  const KV* k = static_cast<const KV*>(a.k);
  const KV* v = static_cast<const KV*>(a.v);
  const int64_t hd = a.head_dim;

  // The tile's queries into shared memory; the furthest position any of them sees.
  int64_t max_ctx = 0;
  for (int i = 0; i < kAttnQueryTile; ++i) {
    const int64_t t = t0 + i;
    if (t < a.n_tokens) max_ctx = max(max_ctx, static_cast<int64_t>(a.positions[t]) + 1);
  }
  for (int64_t e = threadIdx.x; e < kAttnQueryTile * hd; e += blockDim.x) {
    const int64_t i = e / hd, d = e % hd, t = t0 + i;
    s_q[i][d] = t < a.n_tokens ? a.q[t * a.n_heads * hd + h * hd + d] : 0.0f;
  }

  float m[kQueriesPerWarp], l[kQueriesPerWarp], acc[kQueriesPerWarp][kBlockedSlots];
  int64_t pos[kQueriesPerWarp];
#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    const int64_t t = t0 + warp * kQueriesPerWarp + qi;
    pos[qi] = t < a.n_tokens ? a.positions[t] : -1;  // -1: no query, every key masked
    m[qi] = -INFINITY;
    l[qi] = 0.0f;
#pragma unroll
    for (int u = 0; u < kBlockedSlots; ++u) acc[qi][u] = 0.0f;
  }

  for (int64_t j0 = 0; j0 < max_ctx; j0 += kAttnKeyTile) {
    __syncthreads();  // previous tile consumed (and s_q written before the first)
    for (int64_t e = threadIdx.x; e < kAttnKeyTile * hd; e += blockDim.x) {
      const int64_t jj = e / hd, d = e % hd, j = j0 + jj;
      const bool in = j < max_ctx;
      s_k[jj][d] = in ? kv_value(k, j * a.kv_row_stride + base + d, a.k_scale) : 0.0f;
      s_v[jj][d] = in ? kv_value(v, j * a.kv_row_stride + base + d, a.v_scale) : 0.0f;
    }
    __syncthreads();
    const int64_t j = j0 + lane;  // the position this lane scores
#pragma unroll
    for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
      const int qrow = warp * kQueriesPerWarp + qi;
      const bool visible = j <= pos[qi];  // causal (and inside the context)
      float dot = 0.0f;
      for (int64_t d = 0; d < hd; ++d) dot = fmaf(s_q[qrow][d], s_k[lane][d], dot);
      const float score = visible ? dot * a.scale : -INFINITY;
      const float m_new = fmaxf(m[qi], warp_max(score));
      if (m_new == -INFINITY) continue;  // nothing visible yet (uniform over the warp)
      const float p = visible ? expf(score - m_new) : 0.0f;
      const float correction = expf(m[qi] - m_new);
      l[qi] = l[qi] * correction + warp_sum(p);
#pragma unroll
      for (int u = 0; u < kBlockedSlots; ++u) acc[qi][u] *= correction;
      for (int jj = 0; jj < kAttnKeyTile; ++jj) {
        const float pj = __shfl_sync(0xFFFFFFFFu, p, jj);
#pragma unroll
        for (int u = 0; u < kBlockedSlots; ++u) {
          const int64_t d = lane + kWarp * u;
          if (d < hd) acc[qi][u] = fmaf(pj, s_v[jj][d], acc[qi][u]);
        }
      }
      m[qi] = m_new;
    }
  }
#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    const int64_t t = t0 + warp * kQueriesPerWarp + qi;
    if (t >= a.n_tokens) continue;
    float* oh = a.out + t * a.n_heads * hd + h * hd;
#pragma unroll
    for (int u = 0; u < kBlockedSlots; ++u) {
      const int64_t d = lane + kWarp * u;
      if (d < hd) oh[d] = acc[qi][u] / l[qi];
    }
  }
}

}  // namespace

void attention(const float* q, const void* k_cache, const void* v_cache, bool fp8, float k_scale,
               float v_scale, const int32_t* positions, int64_t n_tokens, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, Stream stream) {
  check_attention(n_tokens, kv_row_stride, n_heads, n_kv_heads, head_dim);
  if (fp8) {
    M2_CHECK(std::isfinite(k_scale) && k_scale > 0.0f && std::isfinite(v_scale) && v_scale > 0.0f,
             "cuda::attention: FP8 scales must be finite and > 0");
  }
  if (n_tokens == 0) return;
  AttnArgs a{q,        k_cache,
             v_cache,  k_scale,
             v_scale,  positions,
             n_tokens, kv_row_stride,
             n_heads,  n_heads / n_kv_heads,
             head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim)),
             out};
  bool blocked = false;
  const Grid g = attention_grid(n_tokens, n_heads, head_dim, &blocked);
  const dim3 grid = grid3(g.x, g.y, 1);
  cudaStream_t s = to_stream(stream);
  if (blocked && fp8) {
    attention_blocked_kernel<uint8_t><<<grid, g.threads, 0, s>>>(a);
  } else if (blocked) {
    attention_blocked_kernel<float><<<grid, g.threads, 0, s>>>(a);
  } else if (fp8) {
    attention_decode_kernel<uint8_t><<<grid, g.threads, 0, s>>>(a);
  } else {
    attention_decode_kernel<float><<<grid, g.threads, 0, s>>>(a);
  }
  M2_CUDA_LAUNCHED("attention");
}

}  // namespace m2fp4::cuda
