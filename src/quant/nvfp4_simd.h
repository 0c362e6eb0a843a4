// NVFP4 block scales of 16 blocks at once (one block per AVX-512 lane), bit-identical to the
// scalar twins nvfp4_block_scale / nvfp4_block_divisor (nvfp4.cc) on every block. The per-block
// scalar calls took ~15% of an NVFP4 quantize run.
#pragma once

#include <cstdint>

#include "quant/nvfp4.h"

namespace m2fp4 {

// Whether this CPU runs nvfp4_block_scales_simd (AVX-512F).
bool nvfp4_simd_available();

// For b < n: scales[b] = nvfp4_block_scale(block_amax[b], global_scale, options) and
// divisor[b] = nvfp4_block_divisor(scales[b], global_scale, options.convention). The block
// amaxes must be finite and >= 0 and global_scale finite and >= 0 (as nvfp4_global_scale
// gives). Only when nvfp4_simd_available().
void nvfp4_block_scales_simd(const float* block_amax, int64_t n, float global_scale,
                             const Nvfp4Options& options, uint8_t* scales, float* divisor);

}  // namespace m2fp4
