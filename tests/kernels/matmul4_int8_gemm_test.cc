// The int8-activation 4-bit prefill GEMM (matmul4_int8_gemm.h): called directly, every (row,
// token) result has the bits of the GEMV tiles (int8_gemv::dot_rows) for row tiles of 4 to
// gemm_tile_rows() rows, ragged chunks and every token tail (its own transposed reduction for
// 4 tokens, _mm512_reduce_add_ps for the rest); through matmul, prefill token counts over several
// token blocks give a token the bits it gets alone (the GEMV), with rows short of a tile and a
// tile holding a non-finite scale (that row NaN or infinite as the twin has it). The GEMM
// against the twin's tolerance: matmul4_int8_test.cc's prefill token counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul4_int8_gemm.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::group_of;
using test::OwnedWeight;
using test::random_floats;
using test::random_weight;
using test::ScopedFourBitActivations;

class Int8Gemm : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(Int8Gemm, SameBitsAsTheGemvTiles) {
  if (!int8_gemv::cpu_supported()) GTEST_SKIP() << "no AVX-512 VNNI/VBMI";
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format);
  // cols: one group, one chunk, chunks plus a ragged tail, wide rows (one quad per call).
  uint32_t seed = 500;
  for (int64_t cols : {g, int64_t{128}, 8 * g + 3 * 128, 3072 + g}) {
    const int64_t groups = cols / g;
    OwnedWeight probe = random_weight(format, 4, cols, seed);
    const int64_t tile = int8_gemv::gemm_tile_rows(probe.w);
    ASSERT_EQ(tile % 4, 0);
    const int64_t rows = tile + 8;
    OwnedWeight o = random_weight(format, rows, cols, seed++);
    // Multipliers of all rows back to back (and 16 finite ones past the end), as the driver
    // decodes them.
    std::vector<float> mult(rows * groups + 16, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t gi = 0; gi < groups; ++gi) mult[r * groups + gi] = o.group_multiplier(r, gi);
    }
    for (int64_t n_tokens : {1, 2, 3, 4, 5, 7, 8, 13}) {
      const std::vector<float> x = random_floats(n_tokens * cols, seed++);
      std::vector<uint8_t> xq(int8_gemv::activation_bytes(cols, n_tokens) + 64);
      uint8_t* xq_aligned =
          xq.data() + (64 - reinterpret_cast<uintptr_t>(xq.data()) % 64) % 64;  // 64-byte aligned
      int8_gemv::quantize(o.w, x.data(), n_tokens, xq_aligned);
      // Reference: the GEMV tiles, 4 rows at a time.
      std::vector<float> ref(n_tokens * rows);
      const uint8_t* codes = static_cast<const uint8_t*>(o.w.data);
      for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        const uint8_t* row_ptrs[4];
        const float* mult_ptrs[4];
        for (int i = 0; i < 4; ++i) {
          row_ptrs[i] = codes + (r0 + i) * (cols / 2);
          mult_ptrs[i] = mult.data() + (r0 + i) * groups;
        }
        int8_gemv::dot_rows(o.w, 4, row_ptrs, mult_ptrs, xq_aligned, n_tokens, ref.data() + r0,
                            rows);
      }
      for (int64_t n_rows : {int64_t{4}, int64_t{8}, tile}) {
        if (n_rows > tile) continue;
        for (int64_t r0 : {int64_t{0}, rows - n_rows}) {
          std::vector<float> got(n_tokens * rows, 12345.0f);
          int8_gemv::gemm_rows(o.w, r0, n_rows, mult.data() + r0 * groups, xq_aligned, n_tokens,
                               got.data() + r0, rows);
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t r = r0; r < r0 + n_rows; ++r) {
              ASSERT_EQ(got[t * rows + r], ref[t * rows + r])
                  << weight_format_name(format) << " cols=" << cols << " n_tokens=" << n_tokens
                  << " n_rows=" << n_rows << " r0=" << r0 << " t=" << t << " r=" << r;
            }
          }
        }
      }
    }
  }
}

TEST_P(Int8Gemm, TokenInPrefillBatchHasItsBitsAlone) {
  // Through matmul: 45 rows (a row tail short of 4 at the end of a thread's share), one row with
  // a non-finite group scale (its tile takes the GEMV tiles and that row scalar::matmul's f32
  // math), wide rows so that 64 and 100 tokens span several token blocks.
  const ScopedFourBitActivations int8_mode(FourBitActivations::kInt8);
  const WeightFormat format = GetParam();
  const int64_t g = group_of(format), rows = 45, cols = 3072 + g, groups = cols / g;
  OwnedWeight o = random_weight(format, rows, cols, 601);
  const int64_t bad_row = 21;
  if (format == WeightFormat::kIq4nl16) {
    o.group_scales[2 * (bad_row * groups + 5) + 1] = 0x7C;  // f16 +inf
  } else {
    o.group_scales[bad_row * groups + 5] = format == WeightFormat::kNvfp4 ? 0x7F : 0xFF;  // NaN
  }
  ThreadPool p1(1), p2(2);
  for (int64_t n_tokens : {9, 13, 64, 100}) {
    const std::vector<float> x = random_floats(n_tokens * cols, 602 + n_tokens);
    std::vector<float> twin(n_tokens * rows);
    scalar::matmul_four_bit_int8(o.w, x.data(), n_tokens, twin.data());
    for (ThreadPool* pool : {&p1, &p2}) {
      test::for_each_simd_target([&] {
        if (!test::int8_activations_active()) return;  // the f32 kernels: matmul4_test.cc
        std::vector<float> batch(n_tokens * rows, 12345.0f);
        matmul(o.w, x.data(), n_tokens, batch.data(), *pool);
        for (int64_t t = 0; t < n_tokens; t += 3) {
          std::vector<float> alone(rows);
          matmul(o.w, x.data() + t * cols, 1, alone.data(), *pool);
          for (int64_t r = 0; r < rows; ++r) {
            const float b = batch[t * rows + r], ref = twin[t * rows + r];
            const std::string where = std::string(weight_format_name(format)) +
                                      " n_tokens=" + std::to_string(n_tokens) +
                                      " threads=" + std::to_string(pool->size()) +
                                      " t=" + std::to_string(t) + " r=" + std::to_string(r);
            if (std::isnan(ref) || std::isinf(ref)) {
              ASSERT_EQ(std::isnan(b), std::isnan(ref)) << where;
              if (std::isinf(ref)) {
                ASSERT_EQ(b, ref) << where;
              }
              continue;
            }
            ASSERT_EQ(b, alone[r]) << where;
          }
        }
      });
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FourBit, Int8Gemm, ::testing::ValuesIn(test::kFourBitFormats),
                         test::format_param_name);

}  // namespace
}  // namespace m2fp4
