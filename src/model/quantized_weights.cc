#include "model/quantized_weights.h"

#include <cstring>

#include "base/error.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"

namespace m2fp4 {
namespace {

bool shape_is(const TensorView& t, std::initializer_list<int64_t> want) {
  return t.shape() == std::vector<int64_t>(want);
}

std::string shape_of(const TensorView& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape().size(); ++i) {
    s += (i ? ", " : "") + std::to_string(t.shape()[i]);
  }
  return s + "]";
}

}  // namespace

float read_scalar_tensor(const Checkpoint& ckpt, const std::string& name) {
  const TensorView t = ckpt.tensor(name);
  M2_CHECK(t.numel() == 1, "tensor ", name, " should hold one value, has shape ", shape_of(t));
  switch (t.dtype()) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, t.data, 4);
      return v;
    }
    case DType::kBF16:
    case DType::kF16: {
      uint16_t bits;
      std::memcpy(&bits, t.data, 2);
      return t.dtype() == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
    }
    default:
      fail("tensor ", name, " has dtype ", dtype_name(t.dtype()), ", expected F32, BF16 or F16");
  }
}

bool load_four_bit_linear(const Checkpoint& ckpt, const std::string& module, int64_t rows,
                          int64_t cols, Weight& out) {
  const bool compressed = ckpt.has(module + ".weight_packed");
  std::string codes_name = compressed ? module + ".weight_packed" : module + ".weight";
  if (!ckpt.has(codes_name)) return false;
  const TensorView codes = ckpt.tensor(codes_name);
  if (!compressed && codes.dtype() != DType::kU8) return false;  // plain float / FP8 module
  M2_CHECK(codes.dtype() == DType::kU8 && shape_is(codes, {rows, cols / 2}) && cols % 2 == 0,
           "tensor ", codes_name, " should be packed 4-bit codes U8 [", rows, ", ", cols / 2,
           "], is ", dtype_name(codes.dtype()), " ", shape_of(codes));
  const std::string scale_name = module + ".weight_scale";
  M2_CHECK(ckpt.has(scale_name), "tensor ", codes_name, " is packed 4-bit but ", scale_name,
           " is missing");
  const TensorView scale = ckpt.tensor(scale_name);

  out = Weight{};
  out.rows = rows;
  out.cols = cols;
  out.data = codes.data;
  out.group_scale = reinterpret_cast<const uint8_t*>(scale.data);
  if (scale.dtype() == DType::kF8E4M3 && cols % 16 == 0 && shape_is(scale, {rows, cols / 16})) {
    out.format = WeightFormat::kNvfp4;
    out.group_size = 16;
    if (compressed) {
      // compressed-tensors stores the quant multiplier 2688/amax; decoding divides by it.
      const float global = read_scalar_tensor(ckpt, module + ".weight_global_scale");
      M2_CHECK(global > 0.0f, "tensor ", module, ".weight_global_scale must be positive");
      out.global_scale = 1.0f / global;
      if (ckpt.has(module + ".input_global_scale")) {
        out.input_scale = 1.0f / read_scalar_tensor(ckpt, module + ".input_global_scale");
      }
    } else {
      out.global_scale = read_scalar_tensor(ckpt, module + ".weight_scale_2");
      if (ckpt.has(module + ".input_scale")) {
        out.input_scale = read_scalar_tensor(ckpt, module + ".input_scale");
      }
    }
    return true;
  }
  if ((scale.dtype() == DType::kU8 || scale.dtype() == DType::kF8E8M0) && cols % 32 == 0 &&
      shape_is(scale, {rows, cols / 32})) {
    out.format = WeightFormat::kMxfp4;
    out.group_size = 32;
    return true;
  }
  if (scale.dtype() == DType::kF16 && cols % 16 == 0 && shape_is(scale, {rows, cols / 16})) {
    out.format = WeightFormat::kIq4nl16;
    out.group_size = 16;
    return true;
  }
  fail("tensor ", scale_name, " (", dtype_name(scale.dtype()), " ", shape_of(scale),
       ") matches no 4-bit format: expected F8_E4M3 [", rows, ", ", cols / 16, "] (NVFP4), U8 [",
       rows, ", ", cols / 32, "] (MXFP4) or F16 [", rows, ", ", cols / 16, "] (IQ4_NL x16)");
}

void load_kv_scales(const Checkpoint& ckpt, int64_t layer, float& k_scale, float& v_scale) {
  const std::string p = "model.layers." + std::to_string(layer) + ".self_attn.";
  auto find = [&](const char* which) -> float {
    const std::string w = which;
    for (const std::string& name : {p + w + "_proj." + w + "_scale", p + w + "_scale",
                                    p + "attn." + w + "_scale", p + "qkv_proj." + w + "_scale"}) {
      if (ckpt.has(name)) return read_scalar_tensor(ckpt, name);
    }
    if (ckpt.has(p + "kv_scale")) return read_scalar_tensor(ckpt, p + "kv_scale");
    return -1.0f;
  };
  k_scale = find("k");
  v_scale = find("v");
}

}  // namespace m2fp4
