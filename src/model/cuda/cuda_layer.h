// One MiniMax-M2 decoder layer on the device, as the math reads (attention, route, experts):
// the sequence of CUDA kernels the model runs per layer, shared by CudaMiniMaxM2 and the layer
// benchmark (bench/cuda_layer_bench.cu) so the benchmark measures exactly the model's code.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/weight.h"
#include "model/config.h"

namespace m2fp4 {

// Device-side view of one layer's weights and KV cache (all pointers device memory).
struct CudaLayer {
  Weight q, k, v, o, router;  // device descriptors (stored formats)
  const float* input_norm = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  const float* post_norm = nullptr;
  const float* router_bias = nullptr;  // may be null
  // Device arrays of n_experts Weights each, and a host copy of one of them (launch shapes).
  const Weight* w1_table = nullptr;
  const Weight* w3_table = nullptr;
  const Weight* w2_table = nullptr;
  Weight w1_shape, w3_shape, w2_shape;
  void* k_cache = nullptr;  // [max_context][kv_width] f32, or E4M3 bytes with the scales
  void* v_cache = nullptr;
  float k_scale = 1.0f, v_scale = 1.0f;
};

// Device activation buffers for up to `capacity` tokens of one batch.
struct CudaActivations {
  int64_t capacity = 0;
  const int32_t* positions = nullptr;  // [n] positions of the batch's tokens
  float* x = nullptr;                  // residual stream [n, hidden], updated in place
  float *h = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *attn = nullptr, *proj = nullptr;
  float *router = nullptr, *expert_w = nullptr, *gate = nullptr, *up = nullptr, *down = nullptr;
  int32_t *expert_ids = nullptr, *slot_of_pos = nullptr, *pos_of_slot = nullptr;
  int32_t *tiles = nullptr, *n_tiles = nullptr, *sort_scratch = nullptr;
};

// Owns the buffers behind a CudaActivations (positions included).
class CudaActivationBuffers {
 public:
  CudaActivationBuffers() = default;
  CudaActivationBuffers(const ModelConfig& config, int64_t capacity);
  const CudaActivations& view() const { return view_; }
  int32_t* positions() const { return positions_.as<int32_t>(); }

 private:
  cuda::DeviceBuffer positions_, floats_, ints_;
  CudaActivations view_;
};

// x += Attention(RMSNorm(x)); x += MoE(RMSNorm(x)) for n tokens of one sequence (their K/V
// written to the cache rows at their positions first). Enqueued on `stream`, no host sync, no
// allocation: capturable into a CUDA graph.
void enqueue_decoder_layer(const ModelConfig& config, const CudaLayer& layer,
                           const CudaActivations& a, int64_t n_tokens, bool fp8_kv,
                           cuda::Stream stream);

}  // namespace m2fp4
