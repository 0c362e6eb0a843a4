// The CUDA backend's host interface: device memory, one stream, graph capture, and the kernels
// of the MiniMax-M2 forward. Plain C++ (no CUDA types), so the model and the command line compile
// the same with or without nvcc; without it (M2FP4_WITH_CUDA undefined) every call but the
// queries throws "built without CUDA". All pointers passed to kernels are device pointers; a
// Weight passed to a kernel has its data/scales on the device (upload_weight below). Kernels are
// enqueued on the stream and do not synchronise.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/weight.h"

namespace m2fp4::cuda {

// ---- device, memory, stream, graphs ---------------------------------------------------------

bool built_with_cuda();
// Number of usable devices: 0 when built without CUDA, when the driver is missing or sees no
// device (never throws). `why` (optional) receives the reason when it is 0.
int device_count(std::string* why = nullptr);
// Throws m2fp4::Error "built without CUDA" / "no CUDA device: <reason>" unless a device is usable.
void require_device();
std::string device_name();

using Stream = void*;  // cudaStream_t
Stream stream_create();
void stream_destroy(Stream stream);
void stream_sync(Stream stream);

void* device_alloc(int64_t bytes);  // 256-byte aligned; throws on failure
void device_free(void* p);
void copy_to_device(void* dst, const void* src, int64_t bytes, Stream stream);
void copy_to_host(void* dst, const void* src, int64_t bytes, Stream stream);
void device_memset(void* dst, int value, int64_t bytes, Stream stream);

// Owned device memory.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t bytes)
      : bytes_(bytes), ptr_(bytes > 0 ? device_alloc(bytes) : nullptr) {}
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : bytes_(o.bytes_), ptr_(o.ptr_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(ptr_);
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void* get() const { return ptr_; }
  int64_t bytes() const { return bytes_; }

 private:
  int64_t bytes_ = 0;
  void* ptr_ = nullptr;
};

// Stream capture into a CUDA graph (the decode step), and replay.
using GraphExec = void*;  // cudaGraphExec_t
void capture_begin(Stream stream);
GraphExec capture_end(Stream stream);
void graph_launch(GraphExec graph, Stream stream);
void graph_destroy(GraphExec graph);

// ---- kernels ----------------------------------------------------------------------------------

// y[t, r] = sum_c W[r, c] x[t, c] (kernels/cpu/matmul.h's contract). GEMV (a warp per 4 rows) for
// few tokens, a shared-memory tiled GEMM otherwise; 4-bit weights decoded in registers.
void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, Stream stream);

// Experts of one MoE projection. `table` is a device array of n_experts Weights of one shape
// (`shape` is a host copy of any of them, for the launch). Slot s = token * top_k + j routes
// token s / top_k to expert expert_ids[s].
//
// Per slot (decode: few tokens): y[s] = W[expert_ids[s]] x[s / x_div], one GEMV per slot.
void expert_matmul_slots(const Weight* table, const Weight& shape, const int32_t* expert_ids,
                         int64_t n_slots, const float* x, int64_t x_div, float* y, Stream stream);

// Grouped (prefill): the slots sorted by expert (expert_sort), then one tiled GEMM per expert
// over its rows: y[p] = W[e(p)] x[row(p)], p the sorted position, row(p) = slot_of_pos[p] / x_div
// when slot_of_pos is given, else p. `tiles` / `n_tiles` as expert_sort leaves them;
// max_tiles = expert_max_tiles(n_slots, n_experts).
void expert_matmul_grouped(const Weight* table, const Weight& shape, const int32_t* tiles,
                           const int32_t* n_tiles, int64_t max_tiles, const float* x,
                           const int32_t* slot_of_pos, int64_t x_div, float* y, Stream stream);

// Counting sort of slots by expert, stable (the CPU path's per-expert token order):
// slot_of_pos [n_slots], pos_of_slot [n_slots], tiles [3 * expert_max_tiles] (expert, first
// position, count <= kGemmTileTokens), n_tiles [1], scratch [2 * n_experts] int32.
void expert_sort(const int32_t* expert_ids, int64_t n_slots, int64_t n_experts,
                 int32_t* slot_of_pos, int32_t* pos_of_slot, int32_t* tiles, int32_t* n_tiles,
                 int32_t* scratch, Stream stream);

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight (statistic in double); out may
// alias x.
void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out,
              Stream stream);

// Partial NeoX RoPE on n_tokens rows of n_heads * head_dim at positions[t] (device array).
void rope_neox(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, double theta, Stream stream);

// Sigmoid scores, top_k by score + bias (bias may be null), weights renormalised; per token.
void route_sigmoid_topk(const float* logits, const float* bias, int64_t n_tokens, int64_t n_experts,
                        int64_t top_k, int32_t* expert_ids, float* expert_weights, Stream stream);

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out, Stream stream);

// x[t, :] += sum over the token's top_k slots in ascending expert order of
// weights[s] * down[row(s), :], row(s) = pos_of_slot ? pos_of_slot[s] : s.
void moe_combine(float* x, const float* down, const int32_t* expert_ids, const float* weights,
                 const int32_t* pos_of_slot, int64_t n_tokens, int64_t top_k, int64_t width,
                 Stream stream);

// y[i] += x[i].
void add_inplace(float* y, const float* x, int64_t n, Stream stream);

// out[t, :] = row tokens[t] of `table` (any format) decoded to f32.
void embed_rows(const Weight& table, const int32_t* tokens, int64_t n_tokens, float* out,
                Stream stream);

// dst[i, :] = src[rows[i], :].
void gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t width, float* dst,
                 Stream stream);

// Writes token t's k/v rows [n_tokens, width] into the cache rows positions[t] (row stride
// `width`): f32 copy (k_scale = v_scale = 0) or E4M3 of x / scale, saturating (kv_store_fp8).
void kv_store(const float* k, const float* v, int64_t n_tokens, int64_t width,
              const int32_t* positions, void* k_cache, void* v_cache, bool fp8, float k_scale,
              float v_scale, Stream stream);

// Causal GQA attention of n_tokens queries of one sequence over its cache: query t sees cached
// rows 0..positions[t]. q [n_tokens, n_heads * head_dim]; k/v caches [rows][kv_row_stride] f32
// or E4M3 bytes (fp8: decoded as e4m3 * scale); out like q. Scale 1/sqrt(head_dim), online
// softmax in f32. Blocked (K/V tiles in shared memory shared by 16 queries) when n_tokens > 1.
void attention(const float* q, const void* k_cache, const void* v_cache, bool fp8, float k_scale,
               float v_scale, const int32_t* positions, int64_t n_tokens, int64_t kv_row_stride,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float* out, Stream stream);

}  // namespace m2fp4::cuda
