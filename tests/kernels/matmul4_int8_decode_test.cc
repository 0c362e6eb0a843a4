// The decode kernel of the int8-activation 4-bit GEMV (int8_gemv::decode_rows): the same bits as
// the general kernel (int8_gemv::dot_rows, fed multipliers the tests decode from the format's
// definition) for every (row, token) at 1-8 tokens, row ranges that start and end inside row
// tiles, ragged last chunks, E8M0 0 (2^-127); the tiles it hands back (non-finite scales) and
// nothing else; and through matmul, a token alone against the same token among 8.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::group_of;
using test::kFourBitFormats;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;
using test::ScopedFourBitActivations;

bool kernels_available() {
  return int8_gemv::cpu_supported();
}

// Rows [r0, r1) by dot_rows one row at a time, multipliers from the tests' own decoding (plus the
// 16 readable finite floats past the last group that dot_rows needs).
std::vector<float> general_kernel(const OwnedWeight& o, const std::vector<uint8_t>& xq,
                                  int64_t n_tokens, int64_t r0, int64_t r1) {
  const Weight& w = o.w;
  const int64_t groups = w.cols / w.group_size;
  std::vector<float> y(n_tokens * w.rows, 0.0f);
  for (int64_t r = r0; r < r1; ++r) {
    std::vector<float> mult(groups + 16, 0.0f);
    for (int64_t g = 0; g < groups; ++g) mult[g] = o.group_multiplier(r, g);
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (w.cols / 2);
    const float* m = mult.data();
    int8_gemv::dot_rows(w, 1, &row, &m, xq.data(), n_tokens, y.data() + r, w.rows);
  }
  return y;
}

std::vector<uint8_t> quantized(const Weight& w, const std::vector<float>& x, int64_t n_tokens) {
  std::vector<uint8_t> xq(int8_gemv::activation_bytes(w.cols, n_tokens));
  int8_gemv::quantize(w, x.data(), n_tokens, xq.data());
  return xq;
}

class Int8DecodeKernel : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(Int8DecodeKernel, SameBitsAsTheGeneralKernel) {
  if (!kernels_available()) GTEST_SKIP() << "no AVX-512 VNNI/VBMI";
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format);
  // Rows: several tiles and a partial one; cols: whole chunks, a ragged chunk, one group.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {13, 256}, {9, 384 + g}, {6, g}, {17, 1024}, {5, 128 + 2 * g}};
  uint32_t seed = 500;
  for (auto [rows, cols] : shapes) {
    OwnedWeight o = random_weight(format, rows, cols, seed++);
    ASSERT_TRUE(int8_gemv::decode_supported(o.w));
    for (int64_t n_tokens = 1; n_tokens <= 8; ++n_tokens) {
      const std::vector<uint8_t> xq =
          quantized(o.w, random_floats(n_tokens * cols, seed++), n_tokens);
      for (auto [r0, r1] : std::vector<std::pair<int64_t, int64_t>>{{0, rows}, {1, rows - 2}}) {
        if (r0 >= r1) continue;
        const std::vector<float> ref = general_kernel(o, xq, n_tokens, r0, r1);
        std::vector<float> y(n_tokens * rows, 0.0f);
        ASSERT_EQ(int8_gemv::decode_rows(o.w, r0, r1, xq.data(), n_tokens, y.data(), rows), r1);
        for (int64_t i = 0; i < n_tokens * rows; ++i) {
          ASSERT_EQ(std::memcmp(&y[i], &ref[i], sizeof(float)), 0)
              << weight_format_name(format) << " [" << rows << " x " << cols
              << "] n_tokens=" << n_tokens << " rows " << r0 << ".." << r1 << " t=" << i / rows
              << " r=" << i % rows << ": " << y[i] << " vs " << ref[i];
        }
      }
    }
  }
}

TEST_P(Int8DecodeKernel, HandsBackTilesWithScalesItDoesNotDecode) {
  if (!kernels_available()) GTEST_SKIP() << "no AVX-512 VNNI/VBMI";
  const WeightFormat format = GetParam();
  const int64_t rows = 14, cols = 256, groups = cols / group_of(format);
  OwnedWeight o = random_weight(format, rows, cols, 601);
  // Row 5 (second tile from row 0: rows 4..7) gets a scale the kernel leaves to the caller.
  const int64_t i = 5 * groups + 3;
  switch (format) {
    case WeightFormat::kNvfp4:
      o.group_scales[i] = 0xFF;  // E4M3 NaN (negative)
      break;
    case WeightFormat::kMxfp4:
      o.group_scales[i] = 0xFF;  // E8M0 NaN
      break;
    default:
      o.group_scales[2 * i + 1] = 0x7C;  // f16 +inf
      o.group_scales[2 * i] = 0x00;
      break;
  }
  const int64_t n_tokens = 3;
  const std::vector<uint8_t> xq = quantized(o.w, random_floats(n_tokens * cols, 602), n_tokens);
  std::vector<float> y(n_tokens * rows, 7.0f);
  EXPECT_EQ(int8_gemv::decode_rows(o.w, 0, rows, xq.data(), n_tokens, y.data(), rows), 4);
  EXPECT_EQ(int8_gemv::decode_rows(o.w, 8, rows, xq.data(), n_tokens, y.data(), rows), rows);
  // Rows 4..7 were left alone; the others match the general kernel.
  const std::vector<float> ref = general_kernel(o, xq, n_tokens, 0, rows);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      if (r >= 4 && r < 8) {
        EXPECT_EQ(y[t * rows + r], 7.0f) << "t=" << t << " r=" << r;
      } else {
        EXPECT_EQ(y[t * rows + r], ref[t * rows + r]) << "t=" << t << " r=" << r;
      }
    }
  }
  // Tiles count from the range's first row: rows 2..5 hold the scale, rows 6..9 do not.
  EXPECT_EQ(int8_gemv::decode_rows(o.w, 2, rows, xq.data(), n_tokens, y.data(), rows), 2);
  EXPECT_EQ(int8_gemv::decode_rows(o.w, 6, rows, xq.data(), n_tokens, y.data(), rows), rows);
}

TEST_P(Int8DecodeKernel, MatmulTokenAloneAndAmongEightWithAHandedBackTile) {
  // Through matmul (decode kernel plus the generic route for the handed-back tile), 2 threads:
  // each token of a batch of 8 gets the bits it gets alone.
  const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
  const WeightFormat format = GetParam();
  const int64_t rows = 23, cols = 512 + group_of(format), n_tokens = 8;
  OwnedWeight o = random_weight(format, rows, cols, 701);
  const int64_t groups = cols / group_of(format);
  if (format == WeightFormat::kNvfp4) o.group_scales[9 * groups + 1] = 0x7F;  // NaN tile
  if (format == WeightFormat::kMxfp4) o.group_scales[9 * groups + 1] = 0xFF;  // NaN tile
  const std::vector<float> x = random_floats(n_tokens * cols, 702);
  ThreadPool pool(2);
  test::for_each_simd_target([&] {
    // Other targets run the f32 kernels, whose GEMV sums need not match across token counts.
    if (!test::int8_activations_active()) return;
    std::vector<float> batch(n_tokens * rows);
    matmul(o.w, x.data(), n_tokens, batch.data(), pool);
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> alone(rows);
      matmul(o.w, x.data() + t * cols, 1, alone.data(), pool);
      for (int64_t r = 0; r < rows; ++r) {
        const float b = batch[t * rows + r];
        if (std::isnan(b)) {
          EXPECT_TRUE(std::isnan(alone[r])) << "t=" << t << " r=" << r;
        } else {
          EXPECT_EQ(alone[r], b) << "t=" << t << " r=" << r;
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(FourBit, Int8DecodeKernel, ::testing::ValuesIn(kFourBitFormats),
                         test::format_param_name);

}  // namespace
}  // namespace m2fp4
