#include "quant/mxfp4.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "base/error.h"
#include "numerics/e2m1.h"
#include "numerics/e8m0.h"
#include "quant/block_kernels.h"
#include "quant/nibble_pack.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {
namespace {

constexpr int kE2m1MaxExponent = 2;  // 6 = 1.5 * 2^2

// compressed-tensors round_to_power_2 on float32 bits: add half of the E2M1 mantissa step below
// the top mantissa bit (bit 21) and keep sign+exponent, i.e. round up iff mantissa >= 1.75.
int ct_power_of_two_exponent(float amax) {
  const uint32_t bits = std::bit_cast<uint32_t>(amax);
  const uint32_t rounded = (bits + 0x200000u) & 0xFF800000u;
  if (rounded == 0) return kE8m0MinExponent - kE2m1MaxExponent;  // log2(0) = -inf, clamps low
  return static_cast<int>(rounded >> 23) - 127;
}

}  // namespace

uint8_t mxfp4_scale_code(float amax, Mxfp4Rule rule) {
  M2_CHECK(std::isfinite(amax) && amax >= 0.0f, "MXFP4: block amax must be finite, got ", amax);
  switch (rule) {
    case Mxfp4Rule::kOcp:
    case Mxfp4Rule::kLlamaCpp:
      if (amax == 0.0f) return 0;
      return e8m0_from_exponent(floor_log2(amax) - kE2m1MaxExponent);
    case Mxfp4Rule::kCompressedTensors:
      if (amax == 0.0f) return 127;
      return e8m0_from_exponent(ct_power_of_two_exponent(amax) - kE2m1MaxExponent);
    case Mxfp4Rule::kModelopt: {
      const float descale = amax / 6.0f;
      if (descale == 0.0f) return 0;  // max(log2(0), -127)
      return e8m0_from_exponent(ceil_log2(descale));
    }
  }
  fail("MXFP4: unknown rule");
}

uint8_t mxfp4_element_code(float scaled, Mxfp4Rule rule) {
  switch (rule) {
    case Mxfp4Rule::kOcp:
    case Mxfp4Rule::kCompressedTensors:
      return f32_to_e2m1(scaled);
    case Mxfp4Rule::kLlamaCpp:
      return f32_to_e2m1_ties_toward_zero(scaled, E2m1ZeroSign::kNeverNegZero);
    case Mxfp4Rule::kModelopt:
      return f32_to_e2m1_ties_toward_zero(scaled, E2m1ZeroSign::kNonPositiveInput);
  }
  fail("MXFP4: unknown rule");
}

Mxfp4Tensor mxfp4_quantize(const ConstMatrix& w, Mxfp4Rule rule) {
  check_blocked_shape(w, kMxfp4Block, "MXFP4");
  Mxfp4Tensor out;
  out.rows = w.rows;
  out.cols = w.cols;
  out.packed.resize(static_cast<size_t>(w.rows * w.cols / 2));
  out.scales.resize(static_cast<size_t>(w.rows * (w.cols / kMxfp4Block)));
  const int64_t blocks_per_row = w.cols / kMxfp4Block;
  const int64_t sub_blocks = w.cols / quant_detail::kSubBlock;
  parallel_rows(w.rows, row_grain(w.cols), [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    std::vector<float> sub_amax(static_cast<size_t>(sub_blocks));
    std::vector<float> divisor(static_cast<size_t>(sub_blocks));
    for (int64_t r = begin; r < end; ++r) {
      w.load(r, 0, w.cols, row.data());
      quant_detail::sub_block_abs_max(row.data(), sub_blocks, sub_amax.data());
      for (int64_t b = 0; b < blocks_per_row; ++b) {
        const float a0 = sub_amax[2 * b];
        const float a1 = sub_amax[2 * b + 1];
        M2_CHECK(!std::isnan(a0) && !std::isnan(a1), "MXFP4: row ", r, " block ", b,
                 " holds NaN or infinity");
        const uint8_t scale = mxfp4_scale_code(std::max(a0, a1), rule);
        out.scales[static_cast<size_t>(r * blocks_per_row + b)] = scale;
        divisor[2 * b] = divisor[2 * b + 1] = e8m0_to_f32(scale);
      }
      uint8_t* packed = out.packed.data() + r * (w.cols / 2);
      switch (rule) {
        case Mxfp4Rule::kOcp:
        case Mxfp4Rule::kCompressedTensors:
          quant_detail::encode_e2m1_rne(row.data(), divisor.data(), sub_blocks, packed);
          break;
        case Mxfp4Rule::kLlamaCpp:
          quant_detail::encode_e2m1_toward_zero(row.data(), divisor.data(), sub_blocks,
                                                E2m1ZeroSign::kNeverNegZero, packed);
          break;
        case Mxfp4Rule::kModelopt:
          quant_detail::encode_e2m1_toward_zero(row.data(), divisor.data(), sub_blocks,
                                                E2m1ZeroSign::kNonPositiveInput, packed);
          break;
      }
    }
  });
  return out;
}

namespace {

void check_tensor(const Mxfp4Tensor& t) {
  M2_CHECK(t.rows > 0 && t.cols > 0 && t.cols % kMxfp4Block == 0 &&
               t.packed.size() == static_cast<size_t>(t.rows * t.cols / 2) &&
               t.scales.size() == static_cast<size_t>(t.rows * t.cols / kMxfp4Block),
           "MXFP4 tensor ", t.rows, "x", t.cols, " has inconsistent buffers");
}

}  // namespace

std::vector<float> mxfp4_dequantize(const Mxfp4Tensor& tensor) {
  check_tensor(tensor);
  std::vector<float> out(static_cast<size_t>(tensor.rows * tensor.cols));
  for (size_t i = 0; i < out.size(); i += 2) {
    const float scale = e8m0_to_f32(tensor.scales[i / kMxfp4Block]);
    const uint8_t byte = tensor.packed[i / 2];
    out[i] = e2m1_to_f32(byte & 0xF) * scale;
    out[i + 1] = e2m1_to_f32(byte >> 4) * scale;
  }
  return out;
}

std::vector<uint8_t> mxfp4_to_ggml_blocks(const Mxfp4Tensor& tensor) {
  check_tensor(tensor);
  const size_t n_blocks = tensor.scales.size();
  std::vector<uint8_t> blocks(n_blocks * kGgmlMxfp4BlockBytes);
  uint8_t codes[kMxfp4Block];
  for (size_t b = 0; b < n_blocks; ++b) {
    uint8_t* out = blocks.data() + b * kGgmlMxfp4BlockBytes;
    out[0] = tensor.scales[b];
    unpack_nibbles(std::span(tensor.packed).subspan(b * kMxfp4Block / 2, kMxfp4Block / 2), codes);
    pack_nibbles_split_halves(codes, kMxfp4Block, std::span(out + 1, kMxfp4Block / 2));
  }
  return blocks;
}

Mxfp4Tensor mxfp4_from_ggml_blocks(std::span<const uint8_t> blocks, int64_t rows, int64_t cols) {
  M2_CHECK(rows > 0 && cols > 0 && cols % kMxfp4Block == 0, "MXFP4: bad shape ", rows, "x", cols);
  const size_t n_blocks = static_cast<size_t>(rows * cols / kMxfp4Block);
  M2_CHECK(blocks.size() == n_blocks * kGgmlMxfp4BlockBytes, "MXFP4: ", blocks.size(),
           " bytes of ggml blocks for a ", rows, "x", cols, " tensor, want ",
           n_blocks * kGgmlMxfp4BlockBytes);
  Mxfp4Tensor out;
  out.rows = rows;
  out.cols = cols;
  out.packed.resize(static_cast<size_t>(rows * cols / 2));
  out.scales.resize(n_blocks);
  uint8_t codes[kMxfp4Block];
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint8_t* in = blocks.data() + b * kGgmlMxfp4BlockBytes;
    out.scales[b] = in[0];
    unpack_nibbles_split_halves(std::span(in + 1, kMxfp4Block / 2), kMxfp4Block, codes);
    pack_nibbles(codes, std::span(out.packed).subspan(b * kMxfp4Block / 2, kMxfp4Block / 2));
  }
  return out;
}

}  // namespace m2fp4
