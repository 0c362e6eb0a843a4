// Non-matmul kernels of the CUDA backend: norms, RoPE, routing, SwiGLU, the MoE combine, the
// embedding gather and the KV-cache store. Per-element arithmetic follows the scalar twins
// (kernels/cpu/ops_scalar.cc) operation for operation; shared per-thread logic lives in
// algorithms_hd.h where the host tests run it too.
#include <cuda_runtime.h>

#include "kernels/cpu/ops_check.h"
#include "kernels/cuda/algorithms_hd.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/weight_decode_hd.h"

namespace m2fp4::cuda {
namespace {

constexpr int kElementThreads = 256;

__device__ __forceinline__ double warp_sum_double(double v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// One block per row; the sum of squares in double as the scalar twin.
__global__ void __launch_bounds__(kRowThreads)
    rms_norm_kernel(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __shared__ double partial[kRowThreads / kWarp];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* orow = out + static_cast<int64_t>(blockIdx.x) * n;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += double{xr[i]} * double{xr[i]};
  sum = warp_sum_double(sum);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = sum;
  __syncthreads();
  double total = 0.0;
  for (int i = 0; i < kRowThreads / kWarp; ++i) total += partial[i];
  const float inv_rms =
      static_cast<float>(1.0 / sqrt(total / static_cast<double>(n) + double{eps}));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * inv_rms * weight[i];
}

// One block per token; a thread per (head, rotated pair).
__global__ void rope_kernel(float* x, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
                            const int32_t* positions, double theta) {
  const int64_t half = rotary_dim / 2;
  float* xt = x + static_cast<int64_t>(blockIdx.x) * n_heads * head_dim;
  const double position = static_cast<double>(positions[blockIdx.x]);
  for (int64_t p = threadIdx.x; p < n_heads * half; p += blockDim.x) {
    const int64_t h = p / half, i = p % half;
    const double inv_freq =
        pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    const double angle = position * inv_freq;
    const float c = static_cast<float>(cos(angle));
    const float s = static_cast<float>(sin(angle));
    float* xh = xt + h * head_dim;
    const float a = xh[i];
    const float b = xh[i + half];
    // Rounded as the host computes it (no fused multiply-add).
    xh[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    xh[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  }
}

__global__ void route_kernel(const float* logits, const float* bias, int64_t n_tokens,
                             int64_t n_experts, int64_t top_k, int32_t* ids, float* weights) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_tokens) return;
  route_token(logits + t * n_experts, bias, n_experts, top_k, ids + t * top_k, weights + t * top_k);
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = silu_mul_value(gate[i], up[i]);
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

// One block per token: x += w_j * down_j, experts in ascending index order (the CPU's order).
__global__ void __launch_bounds__(kRowThreads)
    combine_kernel(float* x, const float* down, const int32_t* ids, const float* weights,
                   const int32_t* pos_of_slot, int64_t top_k, int64_t width) {
  const int64_t t = blockIdx.x;
  int32_t order[kMaxTopK];
  combine_order(ids + t * top_k, top_k, order);
  float* xt = x + t * width;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    float acc = xt[c];
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t s = t * top_k + order[j];
      const int64_t row = pos_of_slot ? pos_of_slot[s] : s;
      acc = __fadd_rn(acc, __fmul_rn(weights[s], down[row * width + c]));
    }
    xt[c] = acc;
  }
}

__global__ void __launch_bounds__(kRowThreads)
    embed_kernel(Weight table, const int32_t* tokens, float* out) {
  const int64_t t = blockIdx.x;
  const int64_t r = tokens[t];
  float* o = out + t * table.cols;
  for (int64_t ch = threadIdx.x; ch < table.cols / kChunk; ch += blockDim.x) {
    float v[kChunk];
    decode_chunk(table, r, ch * kChunk, v);
    for (int k = 0; k < kChunk; ++k) o[ch * kChunk + k] = v[k];
  }
}

__global__ void gather_kernel(const float* src, const int32_t* rows, int64_t width, float* dst) {
  const int64_t i = blockIdx.x;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
    dst[i * width + c] = src[static_cast<int64_t>(rows[i]) * width + c];
}

__global__ void kv_store_kernel(const float* k, const float* v, int64_t width,
                                const int32_t* positions, void* k_cache, void* v_cache, bool fp8,
                                float k_scale, float v_scale) {
  const int64_t t = blockIdx.x;
  const int64_t row = positions[t];
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    const float kv = k[t * width + c], vv = v[t * width + c];
    if (fp8) {
      static_cast<uint8_t*>(k_cache)[row * width + c] = e4m3_encode_satfinite(kv / k_scale);
      static_cast<uint8_t*>(v_cache)[row * width + c] = e4m3_encode_satfinite(vv / v_scale);
    } else {
      static_cast<float*>(k_cache)[row * width + c] = kv;
      static_cast<float*>(v_cache)[row * width + c] = vv;
    }
  }
}

int blocks_for(int64_t n) {
  return static_cast<int>(ceil_div(n, kElementThreads));
}

}  // namespace

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out,
              Stream stream) {
  M2_CHECK(n_rows >= 0 && n >= 1, "cuda::rms_norm: bad shape [", n_rows, ", ", n, "]");
  if (n_rows == 0) return;
  rms_norm_kernel<<<grid3(n_rows, 1, 1), kRowThreads, 0, to_stream(stream)>>>(x, weight, n, eps,
                                                                              out);
  M2_CUDA_LAUNCHED("rms_norm");
}

void rope_neox(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, double theta, Stream stream) {
  check_rope_args(n_heads, head_dim, rotary_dim, theta);
  if (n_tokens == 0 || rotary_dim == 0) return;
  rope_kernel<<<grid3(n_tokens, 1, 1), kRowThreads, 0, to_stream(stream)>>>(
      x, n_heads, head_dim, rotary_dim, positions, theta);
  M2_CUDA_LAUNCHED("rope_neox");
}

void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_tokens, int64_t n_experts,
                        int64_t top_k, int32_t* expert_ids, float* expert_weights, Stream stream) {
  check_route(n_experts, top_k);
  if (n_tokens == 0) return;
  route_kernel<<<blocks_for(n_tokens), kElementThreads, 0, to_stream(stream)>>>(
      logits, bias, n_tokens, n_experts, top_k, expert_ids, expert_weights);
  M2_CUDA_LAUNCHED("route_sigmoid_topk");
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out, Stream stream) {
  M2_CHECK(n >= 0, "cuda::silu_mul: negative length");
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n), kElementThreads, 0, to_stream(stream)>>>(gate, up, n, out);
  M2_CUDA_LAUNCHED("silu_mul");
}

void moe_combine(float* x, const float* down, const int32_t* expert_ids, const float* weights,
                 const int32_t* pos_of_slot, int64_t n_tokens, int64_t top_k, int64_t width,
                 Stream stream) {
  M2_CHECK(top_k >= 1 && top_k <= kMaxTopK && width >= 1, "cuda::moe_combine: bad shape");
  if (n_tokens == 0) return;
  combine_kernel<<<grid3(n_tokens, 1, 1), kRowThreads, 0, to_stream(stream)>>>(
      x, down, expert_ids, weights, pos_of_slot, top_k, width);
  M2_CUDA_LAUNCHED("moe_combine");
}

void add_inplace(float* y, const float* x, int64_t n, Stream stream) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kElementThreads, 0, to_stream(stream)>>>(y, x, n);
  M2_CUDA_LAUNCHED("add_inplace");
}

void embed_rows(const Weight& table, const int32_t* tokens, int64_t n_tokens, float* out,
                Stream stream) {
  check_weight(table, "cuda::embed_rows");
  if (n_tokens == 0) return;
  embed_kernel<<<grid3(n_tokens, 1, 1), kRowThreads, 0, to_stream(stream)>>>(table, tokens, out);
  M2_CUDA_LAUNCHED("embed_rows");
}

void gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t width, float* dst,
                 Stream stream) {
  if (n_rows == 0) return;
  gather_kernel<<<grid3(n_rows, 1, 1), kRowThreads, 0, to_stream(stream)>>>(src, rows, width, dst);
  M2_CUDA_LAUNCHED("gather_rows");
}

void kv_store(const float* k, const float* v, int64_t n_tokens, int64_t width,
              const int32_t* positions, void* k_cache, void* v_cache, bool fp8, float k_scale,
              float v_scale, Stream stream) {
  if (fp8) {
    check_fp8_scale(k_scale, "cuda::kv_store: k_scale");
    check_fp8_scale(v_scale, "cuda::kv_store: v_scale");
  }
  if (n_tokens == 0) return;
  kv_store_kernel<<<grid3(n_tokens, 1, 1), kRowThreads, 0, to_stream(stream)>>>(
      k, v, width, positions, k_cache, v_cache, fp8, k_scale, v_scale);
  M2_CUDA_LAUNCHED("kv_store");
}

}  // namespace m2fp4::cuda
