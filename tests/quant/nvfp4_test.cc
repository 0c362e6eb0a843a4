// NVFP4 (quant-formats.md §2): the §2.8 worked block byte for byte, the amax 3.0 example, zero
// blocks per convention, the §1.1 ties inside a block, round-trip error bounds, W4A4 activation
// quantization, and input errors.
#include "quant/nvfp4.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/bf16.h"
#include "numerics/e2m1.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

const std::vector<float> kWorkedBlock = {0, .25f, .75f, 1.25f, 1.75f,  2.5f,  3.5f, 5,
                                         6, 6,    -.3f, -.1f,  -1.75f, -5.5f, .5f,  4};
const std::vector<uint8_t> kWorkedPacked = {0x00, 0x22, 0x44, 0x66, 0x77, 0x89, 0xFC, 0x61};

Nvfp4Options modelopt() {
  return Nvfp4Options{};
}
Nvfp4Options compressed_tensors(WorkDtype work = WorkDtype::kBF16) {
  Nvfp4Options o;
  o.convention = Nvfp4Convention::kCompressedTensors;
  o.ct_work_dtype = work;
  return o;
}

std::vector<uint8_t> codes_of(const std::vector<uint8_t>& packed) {
  std::vector<uint8_t> codes;
  for (uint8_t b : packed) {
    codes.push_back(b & 0xF);
    codes.push_back(b >> 4);
  }
  return codes;
}

TEST(Nvfp4, WorkedBlockOfTheSpecBothConventions) {
  for (const Nvfp4Options& options :
       {modelopt(), compressed_tensors(), compressed_tensors(WorkDtype::kF32)}) {
    // Global amax forced to 2688: weight_scale_2 = 1.0 and weight_global_scale = 1.0.
    const Nvfp4Tensor t =
        nvfp4_quantize_weight(ConstMatrix::f32(kWorkedBlock, 1, 16), 2688.0f, options);
    EXPECT_EQ(t.global_scale, 1.0f);
    ASSERT_EQ(t.block_scales.size(), 1u);
    EXPECT_EQ(t.block_scales[0], 0x38);  // block amax 6 -> scale 1.0
    EXPECT_EQ(codes_of(t.packed),
              (std::vector<uint8_t>{0, 0, 2, 2, 4, 4, 6, 6, 7, 7, 9, 8, 12, 15, 1, 6}));
    EXPECT_EQ(t.packed, kWorkedPacked);
    // Decoding gives the grid values back.
    const std::vector<float> back = nvfp4_dequantize(t);
    EXPECT_EQ(back[3], 1.0f);
    EXPECT_EQ(back[13], -6.0f);
  }
}

TEST(Nvfp4, Amax3Example) {
  const float g = nvfp4_global_scale(3.0f, modelopt());
  EXPECT_EQ(g, 3.0f / 2688.0f);
  EXPECT_FLOAT_EQ(g, 0.0011160715f);
  EXPECT_EQ(nvfp4_global_scale(3.0f, compressed_tensors()), 896.0f);
  // Not every amax gives a bf16-representable 2688/amax; the bf16 work dtype rounds it.
  const float ct32 = nvfp4_global_scale(2.9f, compressed_tensors(WorkDtype::kF32));
  const float ct16 = nvfp4_global_scale(2.9f, compressed_tensors(WorkDtype::kBF16));
  EXPECT_EQ(ct32, 2688.0f / 2.9f);
  EXPECT_NE(ct16, ct32);
  EXPECT_EQ(std::bit_cast<uint32_t>(ct16) & 0xFFFFu, 0u);
}

TEST(Nvfp4, AllZeroBlocksPerConvention) {
  std::vector<float> w(2 * 32, 0.0f);
  w[16] = 2.0f;  // row 0: block 0 zero, block 1 not
  const ConstMatrix m = ConstMatrix::f32(w, 2, 32);
  const Nvfp4Tensor mo = nvfp4_quantize_weight(m, 2.0f, modelopt());
  const Nvfp4Tensor ct = nvfp4_quantize_weight(m, 2.0f, compressed_tensors());
  EXPECT_EQ(mo.block_scales[0], 0x38);
  EXPECT_EQ(ct.block_scales[0], 0x20);
  EXPECT_EQ(mo.block_scales[2], 0x38);
  EXPECT_EQ(ct.block_scales[3], 0x20);
  for (const Nvfp4Tensor* t : {&mo, &ct}) {
    const std::vector<float> back = nvfp4_dequantize(*t);
    for (size_t i = 0; i < back.size(); ++i) EXPECT_EQ(back[i], w[i]) << i;
  }
  // An all-zero tensor: modelopt would divide by zero; here global 0 and zeros come back. CT
  // clamps amax to FLT_MIN, 2688/FLT_MIN overflows, and the global falls back to 1.0.
  const std::vector<float> zeros(16, 0.0f);
  const Nvfp4Tensor z_mo = nvfp4_quantize_weight(ConstMatrix::f32(zeros, 1, 16), 0.0f, modelopt());
  const Nvfp4Tensor z_ct =
      nvfp4_quantize_weight(ConstMatrix::f32(zeros, 1, 16), 0.0f, compressed_tensors());
  EXPECT_EQ(z_mo.global_scale, 0.0f);
  EXPECT_EQ(z_mo.block_scales[0], 0x38);
  EXPECT_EQ(z_ct.global_scale, 1.0f);
  EXPECT_EQ(z_ct.block_scales[0], 0x20);
  for (float v : nvfp4_dequantize(z_mo)) EXPECT_EQ(v, 0.0f);
  for (float v : nvfp4_dequantize(z_ct)) EXPECT_EQ(v, 0.0f);
}

TEST(Nvfp4, TiesOfSection11InsideABlock) {
  // Scale 1 (block amax 6, global amax 2688): elements are rounded as they are.
  const std::vector<float> block = {6,      0.25f,  0.75f,  1.25f,  1.75f, 2.5f,  3.5f,  5.0f,
                                    -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f, -0.0f};
  const Nvfp4Tensor t = nvfp4_quantize_weight(ConstMatrix::f32(block, 1, 16), 2688.0f, modelopt());
  EXPECT_EQ(codes_of(t.packed),
            (std::vector<uint8_t>{7, 0, 2, 2, 4, 4, 6, 6, 8, 10, 10, 12, 12, 14, 14, 0}));
}

TEST(Nvfp4, ModeloptBlockScaleClampAvoidsZeroScales) {
  // A block 1e-5 of the tensor amax: s = block_amax / (6 g) ~ 4.5e-3 * ... < 2^-10.
  std::vector<float> w(32, 0.0f);
  w[0] = 1000.0f;
  for (int i = 16; i < 32; ++i) w[i] = 1e-4f * static_cast<float>(i - 15);
  Nvfp4Options old = modelopt();
  old.modelopt_clamp_block_scale = false;
  const Nvfp4Tensor unclamped = nvfp4_quantize_weight(ConstMatrix::f32(w, 1, 32), 1000.0f, old);
  const Nvfp4Tensor clamped =
      nvfp4_quantize_weight(ConstMatrix::f32(w, 1, 32), 1000.0f, modelopt());
  EXPECT_EQ(unclamped.block_scales[1], 0x00);  // scale 0: the block decodes to zeros
  EXPECT_EQ(clamped.block_scales[1], 0x01);    // 2^-9
  for (int i = 16; i < 32; ++i) EXPECT_EQ(nvfp4_dequantize(unclamped)[i], 0.0f);
  EXPECT_GT(nvfp4_dequantize(clamped)[31], 0.0f);
}

TEST(Nvfp4, RoundTripErrorIsWithinOneGridStepOfEachBlock) {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int64_t rows = 63, cols = 512;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = normal(rng);
  const ConstMatrix m = ConstMatrix::f32(w, rows, cols);
  const float amax = matrix_amax(m);
  for (const Nvfp4Options& options : {modelopt(), compressed_tensors()}) {
    const Nvfp4Tensor t = nvfp4_quantize_weight(m, amax, options);
    const std::vector<float> back = nvfp4_dequantize(t);
    double err2 = 0, ref2 = 0;
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float d =
          nvfp4_block_divisor(t.block_scales[i / 16], t.global_scale, options.convention);
      // Largest gap of the E2M1 grid is 2 (4 -> 6) and the block max maps to <= 6 * 1.07:
      // every element is within one divisor of its decoded value.
      ASSERT_LE(std::fabs(w[i] - back[i]), d) << i;
      err2 += std::pow(w[i] - back[i], 2);
      ref2 += std::pow(w[i], 2);
    }
    const double rel_rms = std::sqrt(err2 / ref2);
    EXPECT_GT(rel_rms, 0.08);  // §2.2: ~0.095 on Gaussian weights
    EXPECT_LT(rel_rms, 0.11);
  }
}

TEST(Nvfp4, Bf16SourceGivesTheSameBytesAsItsFloat32Values) {
  std::mt19937_64 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> bits(5 * 64);
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    bits[i] = f32_to_bf16(normal(rng));
    values[i] = bf16_to_f32(bits[i]);
  }
  const float amax = matrix_amax(ConstMatrix::bf16(bits, 5, 64));
  EXPECT_EQ(amax, matrix_amax(ConstMatrix::f32(values, 5, 64)));
  const Nvfp4Tensor a =
      nvfp4_quantize_weight(ConstMatrix::bf16(bits, 5, 64), amax, compressed_tensors());
  const Nvfp4Tensor b =
      nvfp4_quantize_weight(ConstMatrix::f32(values, 5, 64), amax, compressed_tensors());
  EXPECT_EQ(a.packed, b.packed);
  EXPECT_EQ(a.block_scales, b.block_scales);
}

TEST(Nvfp4, BadInputIsAnError) {
  const std::vector<float> w(24, 1.0f);
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(w, 2, 12), 1.0f, modelopt()), Error);
  const std::vector<float> w16(16, 1.0f);
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(w16, 1, 16), 0.5f, modelopt()), Error);
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(w16, 1, 16), -1.0f, modelopt()), Error);
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(w16, 1, 16), NAN, compressed_tensors()),
               Error);
  std::vector<float> with_nan(16, 1.0f);
  with_nan[5] = NAN;
  EXPECT_THROW(matrix_amax(ConstMatrix::f32(with_nan, 1, 16)), Error);
  std::vector<uint16_t> bf16_with_inf(32, f32_to_bf16(1.0f));
  bf16_with_inf[21] = 0xFF80;  // -inf
  EXPECT_THROW(matrix_amax(ConstMatrix::bf16(bf16_with_inf, 2, 16)), Error);
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(with_nan, 1, 16), 1.0f, modelopt()), Error);
  EXPECT_THROW(ConstMatrix::f32(w16, 2, 16), Error);  // size mismatch
}

TEST(Nvfp4Activation, WorkedBlockAndSaturation) {
  // G = 1: S = e4m3_sat(6 * f32(1/6)) = 1.0, so codes are the weight codes of §2.8.
  const Nvfp4Activation a = nvfp4_quantize_activation(ConstMatrix::f32(kWorkedBlock, 1, 16), 1.0f);
  EXPECT_EQ(a.block_scales[0], 0x38);
  EXPECT_EQ(a.packed, kWorkedPacked);
  // Above the calibrated range the block scale caps at 448 and elements at 6.
  std::vector<float> big(16, 1.0f);
  big[0] = 4000.0f;
  big[1] = -3000.0f;
  const Nvfp4Activation s = nvfp4_quantize_activation(ConstMatrix::f32(big, 1, 16), 1.0f);
  EXPECT_EQ(s.block_scales[0], 0x7E);
  EXPECT_EQ(s.packed[0], 0x7 | (0xF << 4));
  // Unscaled decode: e2m1 * e4m3(S).
  const std::vector<float> u = nvfp4_activation_unscaled(s);
  EXPECT_EQ(u[0], 6.0f * 448.0f);
  EXPECT_EQ(u[1], -6.0f * 448.0f);
  // A zero block has scale 0 and output scale 0: all codes 0.
  const std::vector<float> zeros(16, 0.0f);
  const Nvfp4Activation z = nvfp4_quantize_activation(ConstMatrix::f32(zeros, 1, 16), 5.0f);
  EXPECT_EQ(z.block_scales[0], 0x00);
  for (uint8_t b : z.packed) EXPECT_EQ(b, 0);
}

TEST(Nvfp4Activation, GlobalFromStoredScale) {
  EXPECT_EQ(nvfp4_activation_global(0.25f, Nvfp4Convention::kModelopt), 4.0f);
  EXPECT_EQ(nvfp4_activation_global(0.25f, Nvfp4Convention::kCompressedTensors), 0.25f);
  EXPECT_THROW(nvfp4_activation_global(0.0f, Nvfp4Convention::kModelopt), Error);
}

}  // namespace
}  // namespace m2fp4
