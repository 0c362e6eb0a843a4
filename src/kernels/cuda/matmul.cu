// Matmul kernels of the CUDA backend for every WeightFormat, weights decoded in registers by
// decode_chunk() (weight_decode_hd.h, host-tested against the scalar decode):
// - GEMV, a warp per kGemvRowsPerWarp weight rows, for decode (few tokens), and its per-expert-slot
//   variant;
// - a shared-memory tiled GEMM for prefill, and its grouped variant over the tiles of the
//   tokens routed to each expert.
// Every output is a sum of fmaf(W[r, c], x[t, c]) over c; only the summation order differs from
// scalar::matmul (lane-strided then a warp tree in the GEMV, in column order in the GEMM).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/algorithms_hd.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/weight_decode_hd.h"

namespace m2fp4::cuda {
namespace {

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

struct GemvArgs {
  Weight w;             // plain launch: blockIdx.y is a tile of kGemvTokens tokens
  const Weight* table;  // expert launch: blockIdx.y is a slot, weight table[ids[slot]]
  const int32_t* expert_ids;
  const float* x;
  int64_t x_div;  // expert launch: x row of slot s is s / x_div
  int64_t n_tokens;
  float* y;
};

__global__ void __launch_bounds__(kGemvWarps* kWarp) gemv_kernel(GemvArgs a) {
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const Weight w = a.table ? a.table[a.expert_ids[blockIdx.y]] : a.w;
  // This warp's rows r0 .. r0 + nr - 1.
  const int64_t r0 = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp) * kGemvRowsPerWarp;
  if (r0 >= w.rows) return;  // the whole warp leaves together; no block barrier below
  const int nr = static_cast<int>(min(static_cast<int64_t>(kGemvRowsPerWarp), w.rows - r0));

  const float* xs[kGemvTokens];
  int nt = 1;
  int64_t y_row0 = blockIdx.y;
  if (a.table) {
    xs[0] = a.x + (static_cast<int64_t>(blockIdx.y) / a.x_div) * w.cols;
    for (int t = 1; t < kGemvTokens; ++t) xs[t] = xs[0];
  } else {
    y_row0 = static_cast<int64_t>(blockIdx.y) * kGemvTokens;
    nt = static_cast<int>(min(static_cast<int64_t>(kGemvTokens), a.n_tokens - y_row0));
    for (int t = 0; t < kGemvTokens; ++t) xs[t] = a.x + (y_row0 + (t < nt ? t : 0)) * w.cols;
  }

  float acc[kGemvRowsPerWarp][kGemvTokens];
#pragma unroll
  for (int i = 0; i < kGemvRowsPerWarp; ++i)
#pragma unroll
    for (int t = 0; t < kGemvTokens; ++t) acc[i][t] = 0.0f;
  const int64_t n_chunks = w.cols / kChunk;
  for (int64_t ch = lane; ch < n_chunks; ch += kWarp) {
    // The input chunk once per token, then every row's weights against it.
    float xv[kGemvTokens][kChunk];
#pragma unroll
    for (int t = 0; t < kGemvTokens; ++t) {
      if (t < nt) {
        const float4 lo = *reinterpret_cast<const float4*>(xs[t] + ch * kChunk);
        const float4 hi = *reinterpret_cast<const float4*>(xs[t] + ch * kChunk + 4);
        xv[t][0] = lo.x, xv[t][1] = lo.y, xv[t][2] = lo.z, xv[t][3] = lo.w;
        xv[t][4] = hi.x, xv[t][5] = hi.y, xv[t][6] = hi.z, xv[t][7] = hi.w;
      }
    }
    float wv[kGemvRowsPerWarp][kChunk];
#pragma unroll
    for (int i = 0; i < kGemvRowsPerWarp; ++i) {
      if (i < nr) decode_chunk(w, r0 + i, ch * kChunk, wv[i]);
    }
#pragma unroll
    for (int i = 0; i < kGemvRowsPerWarp; ++i) {
#pragma unroll
      for (int t = 0; t < kGemvTokens; ++t) {
        if (i < nr && t < nt) {
          float s = acc[i][t];
#pragma unroll
          for (int k = 0; k < kChunk; ++k) s = fmaf(wv[i][k], xv[t][k], s);
          acc[i][t] = s;
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kGemvRowsPerWarp; ++i) {
#pragma unroll
    for (int t = 0; t < kGemvTokens; ++t) {
      if (i < nr && t < nt) {  // nr and nt are uniform over the warp
        const float v = warp_sum(acc[i][t]);
        if (lane == 0) a.y[(y_row0 + t) * w.rows + r0 + i] = v;
      }
    }
  }
}

struct GemmArgs {
  Weight w;             // plain launch: blockIdx.y is a tile of kGemmTileTokens tokens
  const Weight* table;  // grouped launch: blockIdx.y indexes tiles (expert, first, count)
  const int32_t* tiles;
  const int32_t* n_tiles;
  const float* x;
  const int32_t* slot_of_pos;  // grouped: x row of position p is slot_of_pos[p] / x_div
  int64_t x_div;
  int64_t n_tokens;
  float* y;
};

__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(GemmArgs a) {
  static_assert(kGemmTileRows == 64 && kGemmTileTokens == 64 && kGemmTileK == 4 * kChunk &&
                    kGemmThreads == 256,
                "the loader maps 256 threads to 64 rows x 4 chunks");
  __shared__ float ws[kGemmTileK][kGemmTileRows + 1];
  __shared__ float xs[kGemmTileK][kGemmTileTokens + 1];

  Weight w;
  int64_t first = 0, count = 0;
  if (a.tiles) {
    if (static_cast<int>(blockIdx.y) >= *a.n_tiles) return;  // uniform over the block
    const int32_t* tile = a.tiles + 3 * static_cast<int64_t>(blockIdx.y);
    w = a.table[tile[0]];
    first = tile[1];
    count = tile[2];
  } else {
    w = a.w;
    first = static_cast<int64_t>(blockIdx.y) * kGemmTileTokens;
    count = min(static_cast<int64_t>(kGemmTileTokens), a.n_tokens - first);
  }
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kGemmTileRows;
  const int tid = static_cast<int>(threadIdx.x);

  // Loader role: one 8-column chunk of one weight row and of one token's input per step.
  const int load_row = tid / 4, load_chunk = tid % 4;
  const int64_t wr = row0 + load_row;
  const float* x_src = nullptr;
  if (load_row < count) {
    const int64_t p = first + load_row;
    const int64_t xr = a.slot_of_pos ? a.slot_of_pos[p] / a.x_div : p;
    x_src = a.x + xr * w.cols;
  }
  // Compute role: rows tr + 16 i, tokens tc + 16 j of the tile.
  const int tr = tid % 16, tc = tid / 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int64_t k0 = 0; k0 < w.cols; k0 += kGemmTileK) {
    const int64_t c0 = k0 + load_chunk * kChunk;
    const bool in_cols = c0 < w.cols;  // cols % kChunk == 0: a chunk is all in or all out
    float v[kChunk];
    if (wr < w.rows && in_cols) {
      decode_chunk(w, wr, c0, v);
    } else {
#pragma unroll
      for (int k = 0; k < kChunk; ++k) v[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kChunk; ++k) ws[load_chunk * kChunk + k][load_row] = v[k];
    if (x_src && in_cols) {
      const float4 lo = *reinterpret_cast<const float4*>(x_src + c0);
      const float4 hi = *reinterpret_cast<const float4*>(x_src + c0 + 4);
      v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
      v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
    } else {
#pragma unroll
      for (int k = 0; k < kChunk; ++k) v[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kChunk; ++k) xs[load_chunk * kChunk + k][load_row] = v[k];
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kGemmTileK; ++kk) {
      float wv[4], xv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) wv[i] = ws[kk][tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) xv[j] = xs[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + tr + 16 * i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t t = tc + 16 * j;
      if (r < w.rows && t < count) a.y[(first + t) * w.rows + r] = acc[i][j];
    }
  }
}

__global__ void sort_slots_kernel(const int32_t* expert_ids, int64_t n_slots, int64_t n_experts,
                                  int32_t* slot_of_pos, int32_t* pos_of_slot, int32_t* tiles,
                                  int32_t* n_tiles, int32_t* scratch) {
  sort_slots(expert_ids, n_slots, n_experts, slot_of_pos, pos_of_slot, tiles, n_tiles, scratch);
}

}  // namespace

void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, Stream stream) {
  check_matmul(w, n_tokens, "cuda::matmul");
  if (n_tokens == 0) return;
  if (use_gemv(n_tokens)) {
    const Grid g = gemv_grid(w.rows, n_tokens);
    GemvArgs a{w, nullptr, nullptr, x, 1, n_tokens, y};
    gemv_kernel<<<grid3(g.x, g.y, 1), g.threads, 0, to_stream(stream)>>>(a);
  } else {
    const Grid g = gemm_grid(w.rows, n_tokens);
    GemmArgs a{w, nullptr, nullptr, nullptr, x, nullptr, 1, n_tokens, y};
    gemm_kernel<<<grid3(g.x, g.y, 1), g.threads, 0, to_stream(stream)>>>(a);
  }
  M2_CUDA_LAUNCHED("matmul");
}

void expert_matmul_slots(const Weight* table, const Weight& shape, const int32_t* expert_ids,
                         int64_t n_slots, const float* x, int64_t x_div, float* y, Stream stream) {
  check_matmul(shape, n_slots, "cuda::expert_matmul_slots");
  M2_CHECK(n_slots <= kExpertSlotsMax, "cuda::expert_matmul_slots: ", n_slots, " slots (at most ",
           kExpertSlotsMax, "; use expert_matmul_grouped)");
  M2_CHECK(x_div >= 1, "cuda::expert_matmul_slots: x_div must be positive");
  if (n_slots == 0) return;
  const Grid g = gemv_grid(shape.rows, 1);
  GemvArgs a{shape, table, expert_ids, x, x_div, n_slots, y};
  gemv_kernel<<<grid3(g.x, n_slots, 1), g.threads, 0, to_stream(stream)>>>(a);
  M2_CUDA_LAUNCHED("expert_matmul_slots");
}

void expert_matmul_grouped(const Weight* table, const Weight& shape, const int32_t* tiles,
                           const int32_t* n_tiles, int64_t max_tiles, const float* x,
                           const int32_t* slot_of_pos, int64_t x_div, float* y, Stream stream) {
  check_matmul(shape, max_tiles * kGemmTileTokens, "cuda::expert_matmul_grouped");
  M2_CHECK(max_tiles >= 0 && max_tiles <= 65535, "cuda::expert_matmul_grouped: ", max_tiles,
           " tiles exceed the grid limit");
  M2_CHECK(x_div >= 1, "cuda::expert_matmul_grouped: x_div must be positive");
  if (max_tiles == 0) return;
  const Grid g = gemm_grid(shape.rows, 1);
  GemmArgs a{shape, table, tiles, n_tiles, x, slot_of_pos, x_div, 0, y};
  gemm_kernel<<<grid3(g.x, max_tiles, 1), g.threads, 0, to_stream(stream)>>>(a);
  M2_CUDA_LAUNCHED("expert_matmul_grouped");
}

void expert_sort(const int32_t* expert_ids, int64_t n_slots, int64_t n_experts,
                 int32_t* slot_of_pos, int32_t* pos_of_slot, int32_t* tiles, int32_t* n_tiles,
                 int32_t* scratch, Stream stream) {
  M2_CHECK(n_slots >= 0 && n_experts >= 1, "cuda::expert_sort: bad sizes");
  sort_slots_kernel<<<1, 1, 0, to_stream(stream)>>>(expert_ids, n_slots, n_experts, slot_of_pos,
                                                    pos_of_slot, tiles, n_tiles, scratch);
  M2_CUDA_LAUNCHED("expert_sort");
}

}  // namespace m2fp4::cuda
