#include "quant/export_layout.h"

#include <cstring>

#include "base/error.h"
#include "numerics/bf16.h"
#include "quant/fp8.h"
#include "quant/iq4nl16.h"
#include "quant/mxfp4.h"

namespace m2fp4 {
namespace {

constexpr float kLastResortInputAmax = 0.5f;  // modelopt set_expert_quantizer_amax

template <typename T>
std::vector<std::byte> to_bytes(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<std::byte> f32_bytes(float value) {
  std::vector<std::byte> out(4);
  std::memcpy(out.data(), &value, 4);
  return out;
}

std::string packed_name(const std::string& module, ExportLayout layout) {
  return module + (layout == ExportLayout::kModelopt ? ".weight" : ".weight_packed");
}

}  // namespace

std::vector<TensorSpec> quantized_linear_specs(const std::string& module, int64_t rows,
                                               int64_t cols, WeightScheme scheme,
                                               ExportLayout layout, bool input_scale) {
  const int64_t block = scheme_block(scheme);
  M2_CHECK(block > 0, module, ": not a quantized scheme");
  M2_CHECK(rows > 0 && cols > 0 && (cols % block == 0 || !scheme_needs_whole_blocks(scheme)),
           module, ": input width ", cols, " is not a multiple of the ", scheme_name(scheme),
           " block of ", block);
  M2_CHECK(!input_scale || scheme == WeightScheme::kNvfp4, module,
           ": static input scales exist only for NVFP4");
  std::vector<TensorSpec> specs;
  if (scheme == WeightScheme::kFp8Block128) {
    // E4M3 codes under the plain `weight` name; the f32 multiplier per 128x128 block is
    // `weight_scale_inv` in the MiniMax / DeepSeek release layout (modelopt export) and
    // `weight_scale` in compressed-tensors' float-quantized block format.
    const std::vector<int64_t> scale_shape = {(rows + 127) / 128, (cols + 127) / 128};
    specs.push_back({module + ".weight", DType::kF8E4M3, {rows, cols}});
    specs.push_back(
        {module + (layout == ExportLayout::kModelopt ? ".weight_scale_inv" : ".weight_scale"),
         DType::kF32, scale_shape});
    return specs;
  }
  specs.push_back({packed_name(module, layout), DType::kU8, {rows, cols / 2}});
  switch (scheme) {
    case WeightScheme::kNvfp4:
      specs.push_back({module + ".weight_scale", DType::kF8E4M3, {rows, cols / 16}});
      if (layout == ExportLayout::kModelopt) {
        specs.push_back({module + ".weight_scale_2", DType::kF32, {}});
        if (input_scale) specs.push_back({module + ".input_scale", DType::kF32, {}});
      } else {
        specs.push_back({module + ".weight_global_scale", DType::kF32, {1}});
        if (input_scale) specs.push_back({module + ".input_global_scale", DType::kF32, {1}});
      }
      break;
    case WeightScheme::kMxfp4:
      specs.push_back({module + ".weight_scale", DType::kU8, {rows, cols / 32}});
      break;
    case WeightScheme::kIq4nl16:
      specs.push_back({module + ".weight_scale", DType::kF16, {rows, cols / 16}});
      break;
    case WeightScheme::kNone:
    case WeightScheme::kFp8Block128:
      break;
  }
  return specs;
}

TensorSpec kv_scale_spec(int64_t layer, char which, ExportLayout layout, DType model_dtype) {
  M2_CHECK(which == 'k' || which == 'v', "KV scale: which must be 'k' or 'v'");
  const std::string attn = "model.layers." + std::to_string(layer) + ".self_attn.";
  const std::string w(1, which);
  if (layout == ExportLayout::kModelopt) {
    return {attn + w + "_proj." + w + "_scale", DType::kF32, {}};
  }
  M2_CHECK(model_dtype == DType::kBF16 || model_dtype == DType::kF32,
           "KV scale: model dtype must be BF16 or F32");
  return {attn + w + "_scale", model_dtype, {1}};
}

std::vector<std::byte> kv_scale_bytes(float amax, DType dtype) {
  const float scale = fp8_kv_scale(amax);
  if (dtype == DType::kF32) return f32_bytes(scale);
  M2_CHECK(dtype == DType::kBF16, "KV scale: dtype must be BF16 or F32");
  const uint16_t bits = f32_to_bf16(scale);
  std::vector<std::byte> out(2);
  std::memcpy(out.data(), &bits, 2);
  return out;
}

float nvfp4_input_scale_value(float input_amax, const LinearEncodeOptions& options) {
  Nvfp4Options o;
  o.convention = options.layout == ExportLayout::kModelopt ? Nvfp4Convention::kModelopt
                                                           : Nvfp4Convention::kCompressedTensors;
  o.ct_work_dtype = options.ct_work_dtype;
  return nvfp4_global_scale(input_amax > 0.0f ? input_amax : kLastResortInputAmax, o);
}

std::vector<EncodedTensor> encode_quantized_linear(const std::string& module, const ConstMatrix& w,
                                                   WeightScheme scheme,
                                                   const LinearEncodeOptions& options,
                                                   float weight_amax,
                                                   std::optional<float> input_amax) {
  std::vector<TensorSpec> specs = quantized_linear_specs(module, w.rows, w.cols, scheme,
                                                         options.layout, input_amax.has_value());
  std::vector<std::vector<std::byte>> data;
  switch (scheme) {
    case WeightScheme::kNvfp4: {
      Nvfp4Options o;
      o.convention = options.layout == ExportLayout::kModelopt
                         ? Nvfp4Convention::kModelopt
                         : Nvfp4Convention::kCompressedTensors;
      o.ct_work_dtype = options.ct_work_dtype;
      const Nvfp4Tensor t = nvfp4_quantize_weight(w, weight_amax, o);
      data.push_back(to_bytes(t.packed));
      data.push_back(to_bytes(t.block_scales));
      data.push_back(f32_bytes(t.global_scale));
      if (input_amax) data.push_back(f32_bytes(nvfp4_input_scale_value(*input_amax, options)));
      break;
    }
    case WeightScheme::kMxfp4: {
      const Mxfp4Rule rule = options.layout == ExportLayout::kModelopt
                                 ? Mxfp4Rule::kModelopt
                                 : Mxfp4Rule::kCompressedTensors;
      const Mxfp4Tensor t = mxfp4_quantize(w, rule);
      data.push_back(to_bytes(t.packed));
      data.push_back(to_bytes(t.scales));
      break;
    }
    case WeightScheme::kIq4nl16: {
      // Codes straight into the output bytes (a copy of the whole tensor otherwise: ~60 MB per
      // layer of the bench preset); the scales, a fifth of that, through their own vector.
      std::vector<std::byte> packed(static_cast<size_t>(w.rows * w.cols / 2));
      std::vector<uint16_t> scales(static_cast<size_t>(w.rows * (w.cols / kIq4nl16Block)));
      iq4nl16_quantize_into(w, Iq4nl16Options{}, reinterpret_cast<uint8_t*>(packed.data()),
                            scales.data());
      data.push_back(std::move(packed));
      data.push_back(to_bytes(scales));
      break;
    }
    case WeightScheme::kFp8Block128: {
      const Fp8Tensor t = fp8_quantize(w, Fp8Options{Fp8Granularity::kBlock, 128, 128});
      data.push_back(to_bytes(t.codes));
      data.push_back(to_bytes(t.scales));
      break;
    }
    case WeightScheme::kNone:
      fail(module, ": not a quantized scheme");
  }
  M2_CHECK(data.size() == specs.size(), module, ": encoder produced ", data.size(),
           " tensors, the layout declares ", specs.size());
  std::vector<EncodedTensor> out;
  for (size_t i = 0; i < specs.size(); ++i) {
    M2_CHECK(data[i].size() == tensor_nbytes(specs[i].dtype, specs[i].shape), specs[i].name,
             ": encoder produced ", data[i].size(), " bytes for ", dtype_name(specs[i].dtype), " ",
             shape_string(specs[i].shape));
    out.push_back({std::move(specs[i]), std::move(data[i])});
  }
  return out;
}

}  // namespace m2fp4
