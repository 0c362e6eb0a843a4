#include "quant/nvfp4.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "base/error.h"
#include "numerics/bf16.h"
#include "numerics/e2m1.h"
#include "numerics/fp8_e4m3.h"
#include "quant/block_kernels.h"
#include "quant/nvfp4_simd.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {
namespace {

constexpr uint8_t kE4m3Eighth = 0x20;  // 0.125: compressed-tensors' scale for a zero scale
constexpr float kE4m3MinSubnormal = 1.0f / 512.0f;

float work_round(float x, WorkDtype dtype) {
  return dtype == WorkDtype::kBF16 ? round_to_bf16(x) : x;
}

}  // namespace

float nvfp4_global_scale(float amax, const Nvfp4Options& options) {
  M2_CHECK(std::isfinite(amax) && amax >= 0.0f, "NVFP4: amax must be finite and >= 0, got ", amax);
  if (options.convention == Nvfp4Convention::kModelopt) return amax / kNvfp4ScaleDenominator;
  float g = kNvfp4ScaleDenominator / std::max(amax, FLT_MIN);
  g = work_round(g, options.ct_work_dtype);
  return std::isfinite(g) ? g : 1.0f;
}

uint8_t nvfp4_block_scale(float block_amax, float global_scale, const Nvfp4Options& options) {
  if (options.convention == Nvfp4Convention::kModelopt) {
    const float t = 6.0f * global_scale;
    float s = t > 0.0f ? block_amax / t : 0.0f;  // t == 0 only for an all-zero tensor
    if (s == 0.0f) s = 1.0f;
    if (options.modelopt_clamp_block_scale) s = std::clamp(s, kE4m3MinSubnormal, 448.0f);
    return f32_to_e4m3(s, Fp8Overflow::kNan);
  }
  const float b = work_round(block_amax / 6.0f, options.ct_work_dtype);
  const float s = std::clamp(global_scale * b, -448.0f, 448.0f);
  const uint8_t code = f32_to_e4m3(s, Fp8Overflow::kNan);
  return e4m3_to_f32(code) == 0.0f ? kE4m3Eighth : code;
}

float nvfp4_block_divisor(uint8_t block_scale, float global_scale, Nvfp4Convention convention) {
  const float scale = e4m3_to_f32(block_scale);
  return convention == Nvfp4Convention::kModelopt ? scale * global_scale : scale / global_scale;
}

Nvfp4Tensor nvfp4_quantize_weight(const ConstMatrix& w, float amax, const Nvfp4Options& options) {
  check_blocked_shape(w, kNvfp4Block, "NVFP4");
  Nvfp4Tensor out;
  out.rows = w.rows;
  out.cols = w.cols;
  out.convention = options.convention;
  out.global_scale = nvfp4_global_scale(amax, options);
  out.packed.resize(static_cast<size_t>(w.rows * w.cols / 2));
  out.block_scales.resize(static_cast<size_t>(w.rows * (w.cols / kNvfp4Block)));
  const int64_t blocks_per_row = w.cols / kNvfp4Block;
  const float global = out.global_scale;
  // The SIMD scales assume a finite, non-negative global scale (nvfp4_global_scale gives one).
  const bool simd =
      options.allow_simd && nvfp4_simd_available() && std::isfinite(global) && global >= 0.0f;

  parallel_rows(w.rows, row_grain(w.cols), [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    std::vector<float> bmax(static_cast<size_t>(blocks_per_row));
    std::vector<float> divisor(static_cast<size_t>(blocks_per_row));
    for (int64_t r = begin; r < end; ++r) {
      w.load(r, 0, w.cols, row.data());
      quant_detail::sub_block_abs_max(row.data(), blocks_per_row, bmax.data());
      uint8_t* scales = out.block_scales.data() + r * blocks_per_row;
      // NaN when a block holds NaN or inf: the scalar loop below names the block.
      const bool checked = quant_detail::abs_max(bmax.data(), blocks_per_row) <= amax;
      if (simd && checked) {
        nvfp4_block_scales_simd(bmax.data(), blocks_per_row, global, options, scales,
                                divisor.data());
      } else {
        for (int64_t b = 0; b < blocks_per_row; ++b) {
          M2_CHECK(bmax[b] <= amax, "NVFP4: row ", r, " block ", b, " has max |w| ", bmax[b],
                   " above the given amax ", amax,
                   " (NaN/inf, or amax not taken over this tensor)");
          scales[b] = nvfp4_block_scale(bmax[b], global, options);
          divisor[b] = nvfp4_block_divisor(scales[b], global, options.convention);
        }
      }
      // Both producers divide (true division, not a reciprocal multiply: §8.7). The
      // compressed-tensors clamp to [-6, 6] before the cast is implied by saturation.
      quant_detail::encode_e2m1_rne(row.data(), divisor.data(), blocks_per_row,
                                    out.packed.data() + r * (w.cols / 2));
    }
  });
  return out;
}

std::vector<float> nvfp4_dequantize(const Nvfp4Tensor& tensor) {
  M2_CHECK(tensor.cols % kNvfp4Block == 0 &&
               tensor.packed.size() == static_cast<size_t>(tensor.rows * tensor.cols / 2) &&
               tensor.block_scales.size() ==
                   static_cast<size_t>(tensor.rows * tensor.cols / kNvfp4Block),
           "NVFP4 tensor ", tensor.rows, "x", tensor.cols, " has inconsistent buffers");
  std::vector<float> out(static_cast<size_t>(tensor.rows * tensor.cols));
  const int64_t n_blocks = tensor.rows * tensor.cols / kNvfp4Block;
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const float d = nvfp4_block_divisor(tensor.block_scales[static_cast<size_t>(blk)],
                                        tensor.global_scale, tensor.convention);
    const uint8_t* packed = tensor.packed.data() + blk * kNvfp4Block / 2;
    float* y = out.data() + blk * kNvfp4Block;
    for (int64_t j = 0; j < kNvfp4Block / 2; ++j) {
      y[2 * j] = e2m1_to_f32(packed[j] & 0xF) * d;
      y[2 * j + 1] = e2m1_to_f32(packed[j] >> 4) * d;
    }
  }
  return out;
}

float nvfp4_activation_global(float stored_input_scale, Nvfp4Convention convention) {
  M2_CHECK(std::isfinite(stored_input_scale) && stored_input_scale > 0.0f,
           "NVFP4: activation scale must be finite and > 0, got ", stored_input_scale);
  return convention == Nvfp4Convention::kModelopt ? 1.0f / stored_input_scale : stored_input_scale;
}

Nvfp4Activation nvfp4_quantize_activation(const ConstMatrix& x, float global) {
  check_blocked_shape(x, kNvfp4Block, "NVFP4 activation");
  M2_CHECK(std::isfinite(global) && global > 0.0f,
           "NVFP4: activation global scale must be finite and > 0, got ", global);
  Nvfp4Activation out;
  out.rows = x.rows;
  out.cols = x.cols;
  out.global = global;
  out.packed.resize(static_cast<size_t>(x.rows * x.cols / 2));
  out.block_scales.resize(static_cast<size_t>(x.rows * (x.cols / kNvfp4Block)));
  const int64_t blocks_per_row = x.cols / kNvfp4Block;
  constexpr float kOneSixth = 1.0f / 6.0f;  // the kernels multiply by f32(1/6), not divide by 6
  std::vector<float> row(static_cast<size_t>(x.cols));
  std::vector<float> vmax(static_cast<size_t>(blocks_per_row));
  std::vector<float> output_scale(static_cast<size_t>(blocks_per_row));
  for (int64_t r = 0; r < x.rows; ++r) {
    x.load(r, 0, x.cols, row.data());
    quant_detail::sub_block_abs_max(row.data(), blocks_per_row, vmax.data());
    uint8_t* scales = out.block_scales.data() + r * blocks_per_row;
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      scales[b] = f32_to_e4m3(global * (vmax[b] * kOneSixth), Fp8Overflow::kSaturate);
      const float scale_value = e4m3_to_f32(scales[b]);
      output_scale[b] = scale_value != 0.0f ? global / scale_value : 0.0f;
    }
    quant_detail::encode_e2m1_rne_mul(row.data(), output_scale.data(), blocks_per_row,
                                      out.packed.data() + r * (x.cols / 2));
  }
  return out;
}

std::vector<float> nvfp4_activation_unscaled(const Nvfp4Activation& activation) {
  std::vector<float> out(static_cast<size_t>(activation.rows * activation.cols));
  for (size_t i = 0; i < out.size(); i += 2) {
    const float scale = e4m3_to_f32(activation.block_scales[i / kNvfp4Block]);
    const uint8_t byte = activation.packed[i / 2];
    out[i] = e2m1_to_f32(byte & 0xF) * scale;
    out[i + 1] = e2m1_to_f32(byte >> 4) * scale;
  }
  return out;
}

}  // namespace m2fp4
