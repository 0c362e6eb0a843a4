// The IQ4_NL x16 export (encode_quantized_linear, which encodes straight into its output bytes
// through iq4nl16_quantize_into) against the scalar twin's tensor: the packed codes and the fp16
// scales byte for byte, for a bf16 and a float32 source with a scalar tail of blocks.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "numerics/bf16.h"
#include "quant/export_layout.h"
#include "quant/iq4nl16.h"

namespace m2fp4 {
namespace {

void expect_export_matches_scalar_twin(const ConstMatrix& m) {
  Iq4nl16Options scalar;
  scalar.allow_simd = false;
  const Iq4nl16Tensor ref = iq4nl16_quantize(m, scalar);
  LinearEncodeOptions options;
  const std::vector<EncodedTensor> t =
      encode_quantized_linear("m", m, WeightScheme::kIq4nl16, options, 0.0f, std::nullopt);
  ASSERT_EQ(t.size(), 2u);
  ASSERT_EQ(t[0].bytes.size(), ref.packed.size());
  EXPECT_EQ(std::memcmp(t[0].bytes.data(), ref.packed.data(), ref.packed.size()), 0);
  ASSERT_EQ(t[1].bytes.size(), ref.scales.size() * 2);
  EXPECT_EQ(std::memcmp(t[1].bytes.data(), ref.scales.data(), ref.scales.size() * 2), 0);
}

TEST(Iq4nl16Export, EncodedBytesEqualTheScalarTwin) {
  const int64_t rows = 9, cols = 16 * 16 * 2 + 16 * 3;  // two SIMD groups and a scalar tail
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> f32(static_cast<size_t>(rows * cols));
  std::vector<uint16_t> bf16(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) {
    bf16[i] = f32_to_bf16(normal(rng));
    f32[i] = bf16_to_f32(bf16[i]) * 1.5f;
  }
  expect_export_matches_scalar_twin(ConstMatrix::bf16(bf16, rows, cols));
  expect_export_matches_scalar_twin(ConstMatrix::f32(f32, rows, cols));
}

}  // namespace
}  // namespace m2fp4
