// f32_to_f16_16 (the hardware conversion of a row's 16 IQ4_NL x16 scales) against the scalar
// f32_to_f16, bit for bit: every sign/exponent/upper-mantissa pattern with the low 13 bits at the
// rounding boundaries (0, 1, below half, half, above half, all ones), the low bits around the
// subnormal results' varying rounding positions, NaNs with payloads, and random patterns.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "numerics/f16.h"
#include "quant/iq4nl16_simd.h"

namespace m2fp4 {
namespace {

TEST(Iq4nl16F16, HardwareConversionMatchesScalarTwin) {
  if (!iq4nl16_simd_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::vector<uint32_t> patterns;
  for (uint32_t high = 0; high < (1u << 19); ++high) {
    for (uint32_t low : {0x0u, 0x1u, 0xFFFu, 0x1000u, 0x1001u, 0x1FFFu}) {
      patterns.push_back(high << 13 | low);
    }
  }
  // Subnormal f16 results round at bit 14..24 of the f32 mantissa: every boundary there.
  for (uint32_t exp = 100; exp <= 113; ++exp) {
    for (uint32_t bit = 0; bit < 23; ++bit) {
      for (uint32_t sign : {0u, 0x80000000u}) {
        const uint32_t base = sign | exp << 23 | 0x2A0000u;
        const uint32_t half = 1u << bit;
        for (uint32_t p : {base | half, (base & ~(2 * half - 1)) | half,
                           (base & ~(2 * half - 1)) | (half - 1), base | (2 * half - 1)}) {
          patterns.push_back(p);
        }
      }
    }
  }
  std::mt19937 rng(3);
  for (int i = 0; i < (1 << 20); ++i) patterns.push_back(static_cast<uint32_t>(rng()));
  while (patterns.size() % 16) patterns.push_back(0x7FC00001u);  // a quiet NaN with a payload
  float in[16];
  uint16_t out[16];
  for (size_t i = 0; i < patterns.size(); i += 16) {
    std::memcpy(in, &patterns[i], sizeof(in));
    f32_to_f16_16(in, out);
    for (int k = 0; k < 16; ++k) {
      ASSERT_EQ(out[k], f32_to_f16(in[k])) << std::hex << "f32 bits 0x" << patterns[i + k];
    }
  }
}

}  // namespace
}  // namespace m2fp4
