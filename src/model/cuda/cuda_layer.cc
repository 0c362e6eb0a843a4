#include "model/cuda/cuda_layer.h"

#include <iterator>

#include "base/error.h"
#include "kernels/cuda/launch_plan.h"

namespace m2fp4 {

CudaActivationBuffers::CudaActivationBuffers(const ModelConfig& c, int64_t capacity) {
  M2_CHECK(capacity >= 1, "CUDA activations: capacity must be positive");
  const int64_t N = capacity, H = c.hidden_size, QW = c.q_width(), KW = c.kv_width();
  const int64_t E = c.num_local_experts, K = c.num_experts_per_tok, I = c.intermediate_size;
  const int64_t slots = N * K, max_tiles = cuda::expert_max_tiles(slots, E);
  // Each piece rounded up to 64 elements (256 bytes) so every buffer stays aligned for the
  // kernels' vector loads.
  auto round = [](int64_t n) { return (n + 63) / 64 * 64; };
  const int64_t float_sizes[] = {N * H, N * H, N * QW, N * KW,    N * KW,    N * QW,
                                 N * H, N * E, slots,  slots * I, slots * I, slots * H};
  const int64_t int_sizes[] = {slots, slots, slots, 3 * max_tiles, 1, 2 * E};
  int64_t n_floats = 0, n_ints = 0;
  for (int64_t s : float_sizes) n_floats += round(s);
  for (int64_t s : int_sizes) n_ints += round(s);
  positions_ = cuda::DeviceBuffer(round(N) * 4);
  floats_ = cuda::DeviceBuffer(n_floats * 4);
  ints_ = cuda::DeviceBuffer(n_ints * 4);
  float* f = floats_.as<float>();
  float** float_ptrs[] = {&view_.x,        &view_.h,    &view_.q,    &view_.k,
                          &view_.v,        &view_.attn, &view_.proj, &view_.router,
                          &view_.expert_w, &view_.gate, &view_.up,   &view_.down};
  for (size_t i = 0; i < std::size(float_sizes); ++i) {
    *float_ptrs[i] = f;
    f += round(float_sizes[i]);
  }
  int32_t* p = ints_.as<int32_t>();
  int32_t** int_ptrs[] = {&view_.expert_ids, &view_.slot_of_pos, &view_.pos_of_slot,
                          &view_.tiles,      &view_.n_tiles,     &view_.sort_scratch};
  for (size_t i = 0; i < std::size(int_sizes); ++i) {
    *int_ptrs[i] = p;
    p += round(int_sizes[i]);
  }
  view_.positions = positions_.as<int32_t>();
  view_.capacity = capacity;
}

void enqueue_decoder_layer(const ModelConfig& c, const CudaLayer& L, const CudaActivations& a,
                           int64_t n, bool fp8_kv, cuda::Stream st) {
  M2_CHECK(n >= 1 && n <= a.capacity, "CUDA layer: ", n, " tokens exceed the activations' ",
           a.capacity);
  const int64_t H = c.hidden_size, QW = c.q_width(), KW = c.kv_width(), E = c.num_local_experts;
  const int64_t K = c.num_experts_per_tok, I = c.intermediate_size, slots = n * K;
  const float eps = c.rms_norm_eps;

  // x += Attention(RMSNorm(x))
  cuda::rms_norm(a.x, L.input_norm, n, H, eps, a.h, st);
  cuda::matmul(L.q, a.h, n, a.q, st);
  cuda::matmul(L.k, a.h, n, a.k, st);
  cuda::matmul(L.v, a.h, n, a.v, st);
  if (c.use_qk_norm) {  // one statistic over the whole projection, before RoPE
    cuda::rms_norm(a.q, L.q_norm, n, QW, eps, a.q, st);
    cuda::rms_norm(a.k, L.k_norm, n, KW, eps, a.k, st);
  }
  cuda::rope_neox(a.q, n, c.num_attention_heads, c.head_dim, c.rotary_dim, a.positions,
                  c.rope_theta, st);
  cuda::rope_neox(a.k, n, c.num_key_value_heads, c.head_dim, c.rotary_dim, a.positions,
                  c.rope_theta, st);
  cuda::kv_store(a.k, a.v, n, KW, a.positions, L.k_cache, L.v_cache, fp8_kv, L.k_scale, L.v_scale,
                 st);
  cuda::attention(a.q, L.k_cache, L.v_cache, fp8_kv, L.k_scale, L.v_scale, a.positions, n, KW,
                  c.num_attention_heads, c.num_key_value_heads, c.head_dim, a.attn, st);
  cuda::matmul(L.o, a.attn, n, a.proj, st);
  cuda::add_inplace(a.x, a.proj, n * H, st);

  // x += MoE(RMSNorm(x)): f32 router, sigmoid + bias for the choice, SwiGLU experts.
  cuda::rms_norm(a.x, L.post_norm, n, H, eps, a.h, st);
  cuda::matmul(L.router, a.h, n, a.router, st);
  cuda::route_sigmoid_topk(a.router, L.router_bias, n, E, K, a.expert_ids, a.expert_w, st);
  if (slots <= cuda::kExpertSlotsMax) {  // decode: one GEMV per (token, expert) slot
    cuda::expert_matmul_slots(L.w1_table, L.w1_shape, a.expert_ids, slots, a.h, K, a.gate, st);
    cuda::expert_matmul_slots(L.w3_table, L.w3_shape, a.expert_ids, slots, a.h, K, a.up, st);
    cuda::silu_mul(a.gate, a.up, slots * I, a.gate, st);
    cuda::expert_matmul_slots(L.w2_table, L.w2_shape, a.expert_ids, slots, a.gate, 1, a.down, st);
    cuda::moe_combine(a.x, a.down, a.expert_ids, a.expert_w, nullptr, n, K, H, st);
  } else {  // prefill: tokens grouped by expert, each expert's weights read once per row tile
    const int64_t max_tiles = cuda::expert_max_tiles(slots, E);
    cuda::expert_sort(a.expert_ids, slots, E, a.slot_of_pos, a.pos_of_slot, a.tiles, a.n_tiles,
                      a.sort_scratch, st);
    cuda::expert_matmul_grouped(L.w1_table, L.w1_shape, a.tiles, a.n_tiles, max_tiles, a.h,
                                a.slot_of_pos, K, a.gate, st);
    cuda::expert_matmul_grouped(L.w3_table, L.w3_shape, a.tiles, a.n_tiles, max_tiles, a.h,
                                a.slot_of_pos, K, a.up, st);
    cuda::silu_mul(a.gate, a.up, slots * I, a.gate, st);
    cuda::expert_matmul_grouped(L.w2_table, L.w2_shape, a.tiles, a.n_tiles, max_tiles, a.gate,
                                nullptr, 1, a.down, st);
    cuda::moe_combine(a.x, a.down, a.expert_ids, a.expert_w, a.pos_of_slot, n, K, H, st);
  }
}

}  // namespace m2fp4
