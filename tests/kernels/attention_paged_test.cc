// Paged attention (rows read through a block table): bit-identical to the contiguous kernels on
// the same rows, and its scalar twin agrees with the scalar contiguous attention; f32 and E4M3.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using test::random_floats;

struct PagedCase {
  int64_t n_ctx, n_heads, n_kv, hd, block_size;
};

const std::vector<PagedCase> kCases = {{1, 4, 1, 8, 16},     {17, 6, 2, 16, 16},
                                       {100, 12, 2, 64, 16}, {300, 16, 4, 64, 7},
                                       {33, 48, 8, 128, 1},  {64, 6, 1, 64, 64}};

// Scatters the rows of a contiguous [n_ctx][stride] array into blocks of a pool, in a shuffled
// block order (slots are distinct: even blocks count down from the top, odd ones up from 0);
// returns the block addresses in position order.
template <typename T>
std::vector<const T*> scatter(const std::vector<T>& rows, int64_t n_ctx, int64_t stride,
                              int64_t block_size, std::vector<T>& pool) {
  const int64_t n_blocks = (n_ctx + block_size - 1) / block_size;
  pool.assign(static_cast<size_t>((n_blocks + 3) * block_size * stride), T{});
  std::vector<const T*> table;
  for (int64_t b = 0; b < n_blocks; ++b) {
    // Reversed, every other block pushed past the middle: neither in order nor contiguous.
    const int64_t slot = b % 2 == 0 ? n_blocks + 2 - b / 2 : (b - 1) / 2;
    T* dst = pool.data() + slot * block_size * stride;
    const int64_t rows_here = std::min(block_size, n_ctx - b * block_size);
    std::copy_n(rows.data() + b * block_size * stride, rows_here * stride, dst);
    table.push_back(dst);
  }
  return table;
}

TEST(AttentionPaged, F32BitIdenticalToContiguous) {
  ThreadPool pool(3);
  for (const auto& c : kCases) {
    const int64_t stride = c.n_kv * c.hd;
    std::vector<float> q = random_floats(c.n_heads * c.hd, 1 + c.n_ctx, 0.3f);
    std::vector<float> k = random_floats(c.n_ctx * stride, 2 + c.n_ctx);
    std::vector<float> v = random_floats(c.n_ctx * stride, 3 + c.n_ctx);
    std::vector<float> k_pool, v_pool;
    const auto kb = scatter(k, c.n_ctx, stride, c.block_size, k_pool);
    const auto vb = scatter(v, c.n_ctx, stride, c.block_size, v_pool);
    const size_t n_out = static_cast<size_t>(c.n_heads * c.hd);
    std::vector<float> ref(n_out), ref_paged(n_out), scratch(c.n_ctx);
    scalar::attention(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd,
                      ref.data(), scratch.data());
    scalar::attention_paged(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride,
                            c.n_heads, c.n_kv, c.hd, ref_paged.data());
    EXPECT_EQ(ref_paged, ref) << "scalar n_ctx=" << c.n_ctx;
    test::for_each_simd_target([&] {
      std::vector<float> fast(n_out), paged(n_out), paged_par(n_out);
      attention(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd, fast.data(),
                scratch.data());
      attention_paged(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride, c.n_heads,
                      c.n_kv, c.hd, paged.data());
      attention_paged_parallel(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride,
                               c.n_heads, c.n_kv, c.hd, paged_par.data(), pool);
      EXPECT_EQ(paged, fast) << "n_ctx=" << c.n_ctx << " block " << c.block_size;
      EXPECT_EQ(paged_par, fast) << "parallel n_ctx=" << c.n_ctx;
    });
  }
}

TEST(AttentionPaged, Fp8BitIdenticalToContiguous) {
  ThreadPool pool(3);
  for (const auto& c : kCases) {
    const int64_t stride = c.n_kv * c.hd;
    std::vector<float> q = random_floats(c.n_heads * c.hd, 11 + c.n_ctx, 0.3f);
    std::vector<float> kf = random_floats(c.n_ctx * stride, 12 + c.n_ctx);
    std::vector<float> vf = random_floats(c.n_ctx * stride, 13 + c.n_ctx);
    std::vector<uint8_t> k(kf.size()), v(vf.size());
    const float k_scale = 0.05f, v_scale = 0.02f;
    kv_store_fp8(kf.data(), static_cast<int64_t>(kf.size()), k_scale, k.data());
    kv_store_fp8(vf.data(), static_cast<int64_t>(vf.size()), v_scale, v.data());
    std::vector<uint8_t> k_pool, v_pool;
    const auto kb = scatter(k, c.n_ctx, stride, c.block_size, k_pool);
    const auto vb = scatter(v, c.n_ctx, stride, c.block_size, v_pool);
    const size_t n_out = static_cast<size_t>(c.n_heads * c.hd);
    std::vector<float> ref(n_out), ref_paged(n_out), scratch(c.n_ctx);
    scalar::attention_fp8(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd,
                          k_scale, v_scale, ref.data(), scratch.data());
    scalar::attention_fp8_paged(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride,
                                c.n_heads, c.n_kv, c.hd, k_scale, v_scale, ref_paged.data());
    EXPECT_EQ(ref_paged, ref) << "scalar n_ctx=" << c.n_ctx;
    test::for_each_simd_target([&] {
      std::vector<float> fast(n_out), paged(n_out), paged_par(n_out);
      attention_fp8(q.data(), k.data(), v.data(), c.n_ctx, stride, c.n_heads, c.n_kv, c.hd, k_scale,
                    v_scale, fast.data(), scratch.data());
      attention_fp8_paged(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride, c.n_heads,
                          c.n_kv, c.hd, k_scale, v_scale, paged.data());
      attention_fp8_paged_parallel(q.data(), kb.data(), vb.data(), c.block_size, c.n_ctx, stride,
                                   c.n_heads, c.n_kv, c.hd, k_scale, v_scale, paged_par.data(),
                                   pool);
      EXPECT_EQ(paged, fast) << "n_ctx=" << c.n_ctx << " block " << c.block_size;
      EXPECT_EQ(paged_par, fast) << "parallel n_ctx=" << c.n_ctx;
    });
  }
}

TEST(AttentionPaged, RejectsBadBlockSize) {
  float buf[64] = {};
  const float* blocks[1] = {buf};
  EXPECT_THROW(attention_paged(buf, blocks, blocks, 0, 1, 8, 2, 2, 4, buf), Error);
}

}  // namespace
}  // namespace m2fp4
