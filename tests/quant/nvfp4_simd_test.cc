// The 16-blocks-per-vector NVFP4 block scales against their scalar twins (nvfp4_block_scale,
// nvfp4_block_divisor), bit for bit: a sweep of float32 block amaxes (zero, subnormal, the E4M3
// subnormal/normal boundary, ties of the E4M3 and bf16 roundings, overflow), every convention and
// option, global scales from tiny to huge; and whole tensors with and without the SIMD path.
#include "quant/nvfp4_simd.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/error.h"
#include "numerics/fp8_e4m3.h"
#include "quant/nvfp4.h"

namespace m2fp4 {
namespace {

std::vector<Nvfp4Options> all_options() {
  std::vector<Nvfp4Options> out;
  for (bool clamp : {true, false}) {
    Nvfp4Options o;
    o.modelopt_clamp_block_scale = clamp;
    out.push_back(o);
  }
  for (WorkDtype work : {WorkDtype::kBF16, WorkDtype::kF32}) {
    Nvfp4Options o;
    o.convention = Nvfp4Convention::kCompressedTensors;
    o.ct_work_dtype = work;
    out.push_back(o);
  }
  return out;
}

// Non-negative finite block amaxes: a stride through every float32 exponent, exact E4M3 grid
// points and their midpoints (RNE ties) scaled into each convention's scale range, bf16 ties.
std::vector<float> block_amaxes() {
  std::vector<float> v = {0.0f, -0.0f, 1.4e-45f, 1e-30f, 448.0f, 464.0f, 3.4e38f};
  for (uint32_t bits = 0; bits < 0x7F800000u; bits += 0x00012345u) {
    v.push_back(std::bit_cast<float>(bits));
  }
  for (int code = 0; code < 0x7E; ++code) {  // 0x7F is NaN
    const float s = e4m3_to_f32(static_cast<uint8_t>(code));
    const float next = e4m3_to_f32(static_cast<uint8_t>(code + 1));
    for (float scale : {6.0f, 6.0f * 2688.0f, 1.0f, 0.5f, 3.0f / 448.0f * 6.0f}) {
      v.push_back(s * scale);
      v.push_back(0.5f * (s + next) * scale);
      v.push_back(std::nextafter(0.5f * (s + next) * scale, 0.0f));
      v.push_back(std::nextafter(0.5f * (s + next) * scale, 1e30f));
    }
  }
  for (uint32_t hi = 0x3F00; hi < 0x4100; hi += 7) {  // bf16 ties of amax / 6
    v.push_back(6.0f * std::bit_cast<float>((hi << 16) | 0x8000u));
  }
  return v;
}

TEST(Nvfp4Simd, BlockScalesAreBitIdenticalToScalarTwins) {
  if (!nvfp4_simd_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<float> amaxes = block_amaxes();
  const int64_t n = static_cast<int64_t>(amaxes.size());
  std::vector<uint8_t> scales(amaxes.size());
  std::vector<float> divisor(amaxes.size());
  for (const Nvfp4Options& options : all_options()) {
    for (float tensor_amax : {0.0f, 1e-38f, 1e-6f, 0.02f, 1.0f, 3.0f, 448.0f, 1e30f, 3.4e38f}) {
      const float global = nvfp4_global_scale(tensor_amax, options);
      // Odd lengths leave a partial vector at the end.
      for (int64_t len : {n, n - 5, int64_t{7}}) {
        std::fill(scales.begin(), scales.end(), uint8_t{0xEE});
        nvfp4_block_scales_simd(amaxes.data(), len, global, options, scales.data(), divisor.data());
        for (int64_t b = 0; b < len; ++b) {
          const uint8_t ref = nvfp4_block_scale(amaxes[b], global, options);
          const float ref_divisor = nvfp4_block_divisor(ref, global, options.convention);
          ASSERT_EQ(scales[b], ref) << "amax " << amaxes[b] << " global " << global;
          ASSERT_EQ(std::bit_cast<uint32_t>(divisor[b]), std::bit_cast<uint32_t>(ref_divisor))
              << "amax " << amaxes[b] << " global " << global << " divisor " << divisor[b] << " vs "
              << ref_divisor;
        }
        if (len < n) {
          EXPECT_EQ(scales[len], 0xEE) << "wrote past the end";
        }
      }
    }
  }
}

TEST(Nvfp4Simd, TensorsAreBitIdenticalWithAndWithoutSimd) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 9, cols = 16 * 37;  // two vectors of blocks and a partial one per row
  std::vector<float> w(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int kind = static_cast<int>((i / 16) % 5);
    w[i] = kind == 0 ? 0.0f : kind == 1 ? 1e-41f * normal(rng) : std::ldexp(normal(rng), kind * 3);
  }
  const float amax = matrix_amax(ConstMatrix::f32(w, rows, cols));
  for (Nvfp4Options options : all_options()) {
    Nvfp4Options scalar = options;
    scalar.allow_simd = false;
    const Nvfp4Tensor fast = nvfp4_quantize_weight(ConstMatrix::f32(w, rows, cols), amax, options);
    const Nvfp4Tensor ref = nvfp4_quantize_weight(ConstMatrix::f32(w, rows, cols), amax, scalar);
    EXPECT_EQ(fast.block_scales, ref.block_scales);
    EXPECT_EQ(fast.packed, ref.packed);
  }
  // Above the given amax: still the scalar loop's error, with or without SIMD.
  EXPECT_THROW(nvfp4_quantize_weight(ConstMatrix::f32(w, rows, cols), amax * 0.5f, {}), Error);
}

}  // namespace
}  // namespace m2fp4
