// On-disk tensors of a quantized Linear in the two export layouts (quant-formats.md §2.5, §2.6,
// §3.2, §3.4) and of the FP8 KV-cache scales (§4.2), plus the encoder that turns a source weight
// into exactly those tensors.
//
//   scheme   layout               tensors of module X
//   NVFP4    modelopt             X.weight U8 [o, i/2], X.weight_scale F8_E4M3 [o, i/16],
//                                 X.weight_scale_2 F32 [] (amax/2688), X.input_scale F32 []
//   NVFP4    compressed-tensors   X.weight_packed U8 [o, i/2], X.weight_scale F8_E4M3 [o, i/16],
//                                 X.weight_global_scale F32 [1] (2688/amax),
//                                 X.input_global_scale F32 [1]
//   MXFP4    compressed-tensors   X.weight_packed U8 [o, i/2], X.weight_scale U8 [o, i/32] (E8M0)
//   MXFP4    modelopt             X.weight U8 [o, i/2], X.weight_scale U8 [o, i/32] (modelopt's
//                                 MXFP4QTensor export: ceil exponent, ties toward zero)
//   IQ4NL16  compressed-tensors   X.weight_packed U8 [o, i/2], X.weight_scale F16 [o, i/16]
//   FP8 128  compressed-tensors   X.weight F8_E4M3 [o, i], X.weight_scale F32 [o/128, i/128]
//                                 (float-quantized, block strategy; divisions round up)
//   FP8 128  modelopt             X.weight F8_E4M3 [o, i], X.weight_scale_inv F32 [o/128, i/128]
//                                 (the official MiniMax FP8 release's names, §5)
//   KV       modelopt             model.layers.L.self_attn.{k_proj.k_scale, v_proj.v_scale} F32 []
//   KV       compressed-tensors   model.layers.L.self_attn.{k_scale, v_scale} model dtype [1]
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/matrix.h"
#include "quant/nvfp4.h"
#include "quant/recipe.h"

namespace m2fp4 {

// The tensors a quantized Linear `module` (weight [rows, cols]) is written as, in order.
// `input_scale`: NVFP4 W4A4 static activation global scale. Throws if cols is not a multiple of
// the scheme's block or the scheme has no tensors in this layout.
std::vector<TensorSpec> quantized_linear_specs(const std::string& module, int64_t rows,
                                               int64_t cols, WeightScheme scheme,
                                               ExportLayout layout, bool input_scale);

// FP8 KV-cache scale of layer `layer` (which = 'k' or 'v'). modelopt: F32 []; compressed-tensors:
// the model dtype (BF16 or F32) [1].
TensorSpec kv_scale_spec(int64_t layer, char which, ExportLayout layout, DType model_dtype);
// Bytes of the stored scale amax / 448 (1.0 for amax 0) in that spec's dtype.
std::vector<std::byte> kv_scale_bytes(float amax, DType dtype);

struct EncodedTensor {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};

struct LinearEncodeOptions {
  ExportLayout layout = ExportLayout::kCompressedTensors;
  // compressed-tensors NVFP4 intermediates (§2.2): bf16 for a bf16 model (and for an FP8 source,
  // dequantized to bf16), f32 for a float32 model.
  WorkDtype ct_work_dtype = WorkDtype::kBF16;
};

// Quantizes w into the tensors quantized_linear_specs() declares. `weight_amax` is max |W| over
// the fused group sharing the NVFP4 global scale (q/k/v, w1/w3; §2.3); `input_amax` the
// calibrated group input amax, required when the scheme carries an input scale. An input amax of
// 0 (an input never seen non-zero) is stored as modelopt's last-resort amax 0.5 so that the
// scale stays finite and positive.
std::vector<EncodedTensor> encode_quantized_linear(const std::string& module, const ConstMatrix& w,
                                                   WeightScheme scheme,
                                                   const LinearEncodeOptions& options,
                                                   float weight_amax,
                                                   std::optional<float> input_amax);

// The stored NVFP4 activation global scale for a calibrated input amax in a layout.
float nvfp4_input_scale_value(float input_amax, const LinearEncodeOptions& options);

}  // namespace m2fp4
