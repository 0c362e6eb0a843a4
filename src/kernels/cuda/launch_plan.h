// Host-side launch logic of the CUDA kernels: tile shapes, grid sizes, the checks a weight or a
// shape must pass before a launch (a clear m2fp4::Error instead of a fault on the device), the
// layout of weights uploaded to device memory, and the decode-graph bookkeeping. Plain C++,
// compiled and tested with or without nvcc.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/weight.h"

namespace m2fp4::cuda {

// GEMV: each warp owns kGemvRowsPerWarp weight rows (the input chunk a lane loads is reused for
// all of them, and their loads are in flight together), kGemvWarps warps per block, up to
// kGemvTokens tokens per block held in registers. Used while n_tokens <= kGemvMaxTokens.
inline constexpr int kWarp = 32;
inline constexpr int kGemvWarps = 4;
inline constexpr int kGemvRowsPerWarp = 4;
inline constexpr int kGemvRowsPerBlock = kGemvWarps * kGemvRowsPerWarp;
inline constexpr int kGemvTokens = 2;
inline constexpr int64_t kGemvMaxTokens = 8;
// Tiled GEMM: a block computes kGemmTileRows x kGemmTileTokens outputs, kGemmTileK columns of the
// weight decoded into shared memory per step, 256 threads each owning 4 x 4 outputs.
inline constexpr int kGemmTileRows = 64;
inline constexpr int kGemmTileTokens = 64;
inline constexpr int kGemmTileK = 32;
inline constexpr int kGemmThreads = 256;
// Expert slots up to this many take the per-slot GEMV path, more the grouped GEMM.
inline constexpr int64_t kExpertSlotsMax = 64;
inline constexpr int64_t kMaxTopK = 16;
// Attention: decode kernel (one block of kAttnWarps warps per query and head) up to
// kAttnMaxHeadDim; the blocked prefill kernel (kAttnQueryTile queries share K/V tiles of
// kAttnKeyTile positions in shared memory) up to kAttnBlockedMaxHeadDim.
inline constexpr int kAttnWarps = 4;
inline constexpr int kAttnMaxHeadDim = 256;
inline constexpr int kAttnBlockedMaxHeadDim = 128;
inline constexpr int kAttnQueryTile = 16;
inline constexpr int kAttnKeyTile = 32;
inline constexpr int kRowThreads = 256;  // one block per row (norms, embedding, combine)

struct Grid {
  int64_t x = 1, y = 1, z = 1;
  int threads = 1;
};

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

Grid gemv_grid(int64_t rows, int64_t n_tokens);
Grid gemm_grid(int64_t rows, int64_t n_tokens);
bool use_gemv(int64_t n_tokens);
// Upper bound of the grouped GEMM's tiles: every expert's last tile may be partial.
int64_t expert_max_tiles(int64_t n_slots, int64_t n_experts);
Grid attention_grid(int64_t n_tokens, int64_t n_heads, int64_t head_dim, bool* blocked);

// A weight the CUDA kernels can take: known format, cols % 8 == 0 (8-column chunks, aligned
// vector loads), 4-bit group size a multiple of 8 dividing cols, scales present, FP8 scale grid
// ceil(cols / 128) wide. Throws m2fp4::Error naming `what` otherwise.
void check_weight(const Weight& w, const char* what);
// Shapes of a matmul launch (weight checked as above; n_tokens >= 0; grid limits).
void check_matmul(const Weight& w, int64_t n_tokens, const char* what);
void check_attention(int64_t n_tokens, int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                     int64_t head_dim);
void check_route(int64_t n_experts, int64_t top_k);

// Bytes of a weight's element data and of its scales (block scales f32, or group scale bytes).
int64_t weight_data_bytes(const Weight& w);
int64_t weight_scale_bytes(const Weight& w);

// Layout of many weights in one device arena: each weight's data then its scales, every piece at
// a kUploadAlign-aligned offset.
inline constexpr int64_t kUploadAlign = 256;
struct UploadSlot {
  int64_t data_offset = 0;
  int64_t scale_offset = -1;  // -1: no scales
};
struct UploadPlan {
  std::vector<UploadSlot> slots;
  int64_t total_bytes = 0;
};
UploadPlan plan_upload(const std::vector<const Weight*>& weights);
// The device-side description of `host`: same shape and format, pointers into the arena at
// `base` as `slot` places them.
Weight device_weight(const Weight& host, const UploadSlot& slot, void* base);

// The decode step's CUDA graph is captured once and replayed while what it baked in (buffer
// addresses, kernel shapes) stays the same; anything else recaptures.
struct GraphKey {
  int64_t n_tokens = 0;
  int64_t buffers_generation = 0;  // bumped whenever activation buffers are reallocated
  bool operator==(const GraphKey& o) const {
    return n_tokens == o.n_tokens && buffers_generation == o.buffers_generation;
  }
};
class DecodeGraphBook {
 public:
  // Whether a captured graph for `key` exists (replay), else the caller captures and calls
  // captured(key).
  bool can_replay(const GraphKey& key) const { return valid_ && key == key_; }
  void captured(const GraphKey& key) {
    key_ = key;
    valid_ = true;
    ++captures_;
  }
  void invalidate() { valid_ = false; }
  int64_t captures() const { return captures_; }

 private:
  GraphKey key_;
  bool valid_ = false;
  int64_t captures_ = 0;
};

}  // namespace m2fp4::cuda
