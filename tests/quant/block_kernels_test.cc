// The vectorizable quantizer loops (quant/block_kernels.h) against the scalar conversions of
// src/numerics they must equal, on strided sweeps of all float32 bit patterns.
#include "quant/block_kernels.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "numerics/bf16.h"
#include "numerics/e2m1.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4::quant_detail {
namespace {

// Every 4099th float32 pattern (NaN and inf included), padded to a multiple of 16.
std::vector<float> sweep() {
  std::vector<float> x;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4099) {
    x.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  }
  for (float v : {0.0f, -0.0f, 464.0f, -464.0f, 448.0f, INFINITY, -INFINITY, NAN}) x.push_back(v);
  while (x.size() % 16 != 0) x.push_back(1.0f);
  return x;
}

TEST(BlockKernels, E4m3EqualsTheScalarTorchCast) {
  const std::vector<float> x = sweep();
  for (float divisor : {1.0f, 0.37f, 3.0e-5f, 1e6f}) {
    std::vector<uint8_t> codes(x.size());
    encode_e4m3_div(x.data(), divisor, static_cast<int64_t>(x.size()), codes.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(codes[i], f32_to_e4m3(x[i] / divisor, Fp8Overflow::kNan))
          << std::hex << std::bit_cast<uint32_t>(x[i]) << " / " << divisor;
    }
  }
  // A length that is not a multiple of 16 takes the scalar tail.
  const float tail[5] = {0.1f, 500.0f, -0.001f, 3.0f, -448.0f};
  uint8_t codes[5];
  encode_e4m3_div(tail, 1.0f, 5, codes);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(codes[i], f32_to_e4m3(tail[i], Fp8Overflow::kNan)) << i;
}

TEST(BlockKernels, E2m1EncodersEqualTheScalarOnes) {
  const std::vector<float> x = sweep();
  const int64_t n_blocks = static_cast<int64_t>(x.size()) / 16;
  std::vector<float> factor(static_cast<size_t>(n_blocks));
  for (int64_t b = 0; b < n_blocks; ++b) factor[b] = std::ldexp(1.0f + (b % 7) / 8.0f, b % 41 - 20);
  std::vector<uint8_t> packed(x.size() / 2);
  auto check = [&](auto scalar) {
    for (size_t i = 0; i < x.size(); ++i) {
      const uint8_t code = (i % 2) ? packed[i / 2] >> 4 : packed[i / 2] & 0xF;
      ASSERT_EQ(code, scalar(x[i], factor[i / 16])) << std::hex << std::bit_cast<uint32_t>(x[i]);
    }
  };
  encode_e2m1_rne(x.data(), factor.data(), n_blocks, packed.data());
  check([](float v, float d) { return f32_to_e2m1(v / d); });
  encode_e2m1_rne_mul(x.data(), factor.data(), n_blocks, packed.data());
  check([](float v, float m) { return f32_to_e2m1(v * m); });
  for (E2m1ZeroSign rule : {E2m1ZeroSign::kNegativeInput, E2m1ZeroSign::kNeverNegZero,
                            E2m1ZeroSign::kNonPositiveInput}) {
    encode_e2m1_toward_zero(x.data(), factor.data(), n_blocks, rule, packed.data());
    check([rule](float v, float d) { return f32_to_e2m1_ties_toward_zero(v / d, rule); });
  }
}

TEST(BlockKernels, AbsMaxAndBf16Load) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>((i * 37) % 64 - 32) * 0.25f;
  std::vector<float> amax(4);
  sub_block_abs_max(x.data(), 4, amax.data());
  for (int b = 0; b < 4; ++b) {
    float want = 0;
    for (int i = 0; i < 16; ++i) want = std::max(want, std::fabs(x[b * 16 + i]));
    EXPECT_EQ(amax[b], want) << b;
  }
  EXPECT_EQ(abs_max(x.data(), 64), 8.0f);
  float want7 = 0;
  for (int i = 0; i < 7; ++i) want7 = std::max(want7, std::fabs(x[i]));
  EXPECT_EQ(abs_max(x.data(), 7), want7);  // shorter than one sub-block: the scalar tail
  x[20] = NAN;
  x[50] = -INFINITY;
  sub_block_abs_max(x.data(), 4, amax.data());
  EXPECT_FALSE(std::isnan(amax[0]));
  EXPECT_TRUE(std::isnan(amax[1]));
  EXPECT_TRUE(std::isnan(amax[3]));
  EXPECT_TRUE(std::isnan(abs_max(x.data(), 64)));
  EXPECT_TRUE(std::isnan(abs_max(x.data() + 45, 7)));  // tail path sees the inf at 50

  std::vector<uint16_t> bits(48);
  for (int i = 0; i < 48; ++i) bits[i] = static_cast<uint16_t>(i * 1361 + 7);
  std::vector<float> out(48);
  load_bf16(bits.data(), 48, out.data());
  for (int i = 0; i < 48; ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(bf16_to_f32(bits[i])));
  }
}

// The bf16 magnitude maximum on the bits against abs_max of the decoded values: every bf16
// pattern (NaN and inf give a NaN amax), lengths with and without a tail past 32 lanes.
TEST(BlockKernels, Bf16AbsMaxBitsEqualsAbsMaxOfTheValues) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (int64_t start = 0; start + 77 <= 65536; start += 77 * 13) {
    for (int64_t n : {int64_t{77}, int64_t{64}, int64_t{5}}) {
      std::vector<float> values(static_cast<size_t>(n));
      load_bf16(all.data() + start, n - n % 16, values.data());
      for (int64_t i = n - n % 16; i < n; ++i) values[i] = bf16_to_f32(all[start + i]);
      const float want = abs_max(values.data(), n);
      const uint16_t got = bf16_abs_max_bits(all.data() + start, n);
      if (std::isnan(want)) {
        EXPECT_GE(got, 0x7F80u) << start << " " << n;
      } else {
        EXPECT_LT(got, 0x7F80u) << start << " " << n;
        EXPECT_EQ(bf16_to_f32(got), want) << start << " " << n;
      }
    }
  }
  std::vector<uint16_t> negative = {0x8000, 0xC2F6, 0x42F5, 0x0001, 0x8001};  // -0, -123, 122.5
  EXPECT_EQ(bf16_to_f32(bf16_abs_max_bits(negative.data(), 5)), 123.0f);
}

}  // namespace
}  // namespace m2fp4::quant_detail
