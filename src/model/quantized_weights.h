// Linear weights stored in the 4-bit layouts users publish (quant-formats.md §2.5, 2.6, 3.2,
// 3.4), recognised per module from the tensors present, and the per-layer FP8 KV-cache scales
// under any of their five spellings (§4.2).
#pragma once

#include <cstdint>
#include <string>

#include "io/checkpoint.h"
#include "kernels/weight.h"

namespace m2fp4 {

// If `module` (e.g. "model.layers.0.block_sparse_moe.experts.3.w1") is stored in a 4-bit
// layout, fills `out` (pointing into the checkpoint) and returns true:
//   compressed-tensors: weight_packed U8 [rows, cols/2] + weight_scale, whose dtype and shape
//     say the format: F8_E4M3 [rows, cols/16] NVFP4 (with weight_global_scale = 2688/amax and
//     optional input_global_scale), U8/F8_E8M0 [rows, cols/32] MXFP4, F16 [rows, cols/16]
//     IQ4_NL x16 ("mxfp4_16");
//   modelopt: weight U8 [rows, cols/2] + weight_scale F8_E4M3 [rows, cols/16] + weight_scale_2
//     (amax/2688) and optional input_scale (NVFP4), or weight_scale U8 [rows, cols/32] (MXFP4).
// Returns false for a plain (float or FP8-block) module. Inconsistent tensors throw.
bool load_four_bit_linear(const Checkpoint& ckpt, const std::string& module, int64_t rows,
                          int64_t cols, Weight& out);

// The layer's FP8 KV scales (k_scale, v_scale), -1 where absent: modelopt
// self_attn.{k,v}_proj.{k,v}_scale, compressed-tensors self_attn.{k,v}_scale, vLLM
// self_attn.attn.{k,v}_scale, self_attn.qkv_proj.{k,v}_scale, and the deprecated
// self_attn.kv_scale (both).
void load_kv_scales(const Checkpoint& ckpt, int64_t layer, float& k_scale, float& v_scale);

// A scalar tensor ([], [1]) of F32, BF16 or F16 as f32.
float read_scalar_tensor(const Checkpoint& ckpt, const std::string& name);

}  // namespace m2fp4
