// attention_batch (flash-style prefill attention over several queries per sequence): against a
// double-precision reference and the scalar twin across depths, GQA ratios, head sizes, page
// sizes, causal edges at the key-block boundaries, unordered query positions and the E4M3
// cache; bit-identical whatever the page size, thread count or batch company.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "kernels/test_util.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4 {
namespace {

using test::kF32Eps;
using test::random_floats;

// One sequence's cache (contiguous rows, f32 or E4M3 codes) and its queries' visible lengths.
struct SeqData {
  int64_t length = 0;
  std::vector<float> k, v;
  std::vector<uint8_t> k8, v8;
  std::vector<int64_t> n_ctx;
  std::vector<int64_t> tokens;  // batch rows
  std::vector<float> k_pool, v_pool;
  std::vector<uint8_t> k8_pool, v8_pool;
  std::vector<const float*> kb, vb;
  std::vector<const uint8_t*> k8b, v8b;
};

// Random E4M3 codes, NaN codes (0x7F, 0xFF) excluded.
std::vector<uint8_t> random_codes(int64_t n, uint32_t seed) {
  std::vector<float> r = random_floats(n, seed);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    // |r| < ~4 spread over the finite codes of both signs: 0x00..0x77 (up to 240) and the same
    // with the sign bit, but keep magnitudes moderate so softmax is neither flat nor one-hot.
    const auto mag =
        static_cast<uint8_t>(std::min<int>(0x57, static_cast<int>(std::fabs(r[i]) * 24)));
    codes[static_cast<size_t>(i)] = static_cast<uint8_t>(mag | (r[i] < 0 ? 0x80 : 0));
  }
  return codes;
}

// Rows of a contiguous [length][stride] array copied into blocks of block_size rows at shuffled
// slots of a pool; returns the block addresses in position order.
template <typename T>
std::vector<const T*> scatter(const std::vector<T>& rows, int64_t length, int64_t stride,
                              int64_t block_size, std::vector<T>& pool) {
  const int64_t n_blocks = (length + block_size - 1) / block_size;
  pool.assign(static_cast<size_t>((n_blocks + 1) * block_size * stride), T{});
  std::vector<const T*> table;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t slot = b % 2 == 0 ? n_blocks - b / 2 : (b - 1) / 2;  // distinct, shuffled
    T* dst = pool.data() + slot * block_size * stride;
    const int64_t rows_here = std::min(block_size, length - b * block_size);
    std::copy_n(rows.data() + b * block_size * stride, rows_here * stride, dst);
    table.push_back(dst);
  }
  return table;
}

// Double-precision causal GQA attention of one query over rows [0, n_ctx).
std::vector<double> reference(const float* q, const std::vector<double>& k,
                              const std::vector<double>& v, int64_t n_ctx, int64_t stride,
                              int64_t n_heads, int64_t n_kv, int64_t hd) {
  std::vector<double> out(static_cast<size_t>(n_heads * hd)), p(static_cast<size_t>(n_ctx));
  const int64_t group = n_heads / n_kv;
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t base = (h / group) * hd;
    double max_s = -INFINITY;
    for (int64_t j = 0; j < n_ctx; ++j) {
      double s = 0;
      for (int64_t d = 0; d < hd; ++d) s += double{q[h * hd + d]} * k[j * stride + base + d];
      p[j] = s / std::sqrt(static_cast<double>(hd));
      max_s = std::max(max_s, p[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < n_ctx; ++j) sum += (p[j] = std::exp(p[j] - max_s));
    for (int64_t d = 0; d < hd; ++d) {
      double acc = 0;
      for (int64_t j = 0; j < n_ctx; ++j) acc += p[j] * v[j * stride + base + d];
      out[h * hd + d] = acc / sum;
    }
  }
  return out;
}

struct BatchCase {
  int64_t n_heads, n_kv, hd;
  int64_t block_size;  // 0: contiguous (one block)
  bool fp8;
  // Visible lengths of the queries of sequence 0 (flash path: many) and sequence 1 (few).
  std::vector<int64_t> ctx0, ctx1;
};

std::vector<int64_t> causal_run(int64_t depth, int64_t n) {
  std::vector<int64_t> ctx;
  for (int64_t i = 1; i <= n; ++i) ctx.push_back(depth + i);
  return ctx;
}

const float kKScale = 0.5f, kVScale = 0.25f;

class AttentionBatch : public ::testing::TestWithParam<BatchCase> {};

TEST_P(AttentionBatch, MatchesReferenceAndScalarTwin) {
  const BatchCase& c = GetParam();
  const int64_t stride = c.n_kv * c.hd, q_stride = c.n_heads * c.hd;
  std::vector<SeqData> data(2);
  data[0].n_ctx = c.ctx0;
  data[1].n_ctx = c.ctx1;
  // Batch rows interleave the two sequences' queries.
  int64_t n_rows = 0;
  for (size_t i = 0; i < std::max(c.ctx0.size(), c.ctx1.size()); ++i) {
    for (auto& s : data) {
      if (i < s.n_ctx.size()) s.tokens.push_back(n_rows++);
    }
  }
  std::vector<AttentionSequence> seqs(2);
  std::vector<std::vector<double>> kd(2), vd(2);
  for (size_t s = 0; s < 2; ++s) {
    SeqData& d = data[s];
    d.length = *std::max_element(d.n_ctx.begin(), d.n_ctx.end());
    const int64_t bs = c.block_size > 0 ? c.block_size : d.length;
    const auto seed = static_cast<uint32_t>(10 * s + d.length);
    const int64_t n = d.length * stride;
    kd[s].resize(static_cast<size_t>(n));
    vd[s].resize(static_cast<size_t>(n));
    if (c.fp8) {
      d.k8 = random_codes(n, seed + 1);
      d.v8 = random_codes(n, seed + 2);
      for (int64_t i = 0; i < n; ++i) {
        kd[s][i] = double{e4m3_to_f32(d.k8[i]) * kKScale};
        vd[s][i] = double{e4m3_to_f32(d.v8[i]) * kVScale};
      }
      d.k8b = scatter(d.k8, d.length, stride, bs, d.k8_pool);
      d.v8b = scatter(d.v8, d.length, stride, bs, d.v8_pool);
      seqs[s].k8_blocks = d.k8b.data();
      seqs[s].v8_blocks = d.v8b.data();
    } else {
      d.k = random_floats(n, seed + 1);
      d.v = random_floats(n, seed + 2);
      for (int64_t i = 0; i < n; ++i) {
        kd[s][i] = d.k[i];
        vd[s][i] = d.v[i];
      }
      d.kb = scatter(d.k, d.length, stride, bs, d.k_pool);
      d.vb = scatter(d.v, d.length, stride, bs, d.v_pool);
      seqs[s].k_blocks = d.kb.data();
      seqs[s].v_blocks = d.vb.data();
    }
    seqs[s].tokens = d.tokens.data();
    seqs[s].n_ctx = d.n_ctx.data();
    seqs[s].n_tokens = static_cast<int64_t>(d.tokens.size());
    seqs[s].block_size = bs;
  }
  const AttentionShape shape{stride, c.n_heads, c.n_kv, c.hd, kKScale, kVScale};
  const std::vector<float> q = random_floats(n_rows * q_stride, 7, 0.3f);
  const size_t n_out = static_cast<size_t>(n_rows * q_stride);
  std::vector<float> twin(n_out, NAN);
  scalar::attention_batch(q.data(), seqs.data(), 2, shape, twin.data());

  ThreadPool pool(3), one(1);
  test::for_each_simd_target([&] {
    std::vector<float> fast(n_out, NAN), serial(n_out, NAN), alone(n_out, NAN);
    attention_batch(q.data(), seqs.data(), 2, shape, fast.data(), pool);
    attention_batch(q.data(), seqs.data(), 2, shape, serial.data(), one);
    attention_batch(q.data(), seqs.data(), 1, shape, alone.data(), pool);
    EXPECT_EQ(serial, fast) << "thread count changed the result";
    for (size_t s = 0; s < 2; ++s) {
      const SeqData& d = data[s];
      for (size_t i = 0; i < d.tokens.size(); ++i) {
        const int64_t row = d.tokens[i], n_ctx = d.n_ctx[i];
        const std::vector<double> expect = reference(q.data() + row * q_stride, kd[s], vd[s], n_ctx,
                                                     stride, c.n_heads, c.n_kv, c.hd);
        // As ops_test's attention bound (f32 dots, n_ctx-long f32 sums), plus the block-wise
        // rescaling (one alpha product per key block) and the vectorised exp (a few ulp).
        const double tol = (c.hd * 5.0 + n_ctx + 8.0 * (n_ctx / 64 + 1)) * kF32Eps * 4 + 1e-6;
        for (int64_t e = 0; e < q_stride; ++e) {
          const size_t at = static_cast<size_t>(row * q_stride + e);
          ASSERT_NEAR(fast[at], expect[e], tol)
              << "seq " << s << " query " << i << " n_ctx " << n_ctx << " elem " << e;
          ASSERT_NEAR(fast[at], twin[at], 2 * tol) << "vs twin, seq " << s << " query " << i;
          if (s == 0) {
            ASSERT_EQ(alone[at], fast[at]) << "batch company changed seq 0";
          }
        }
      }
    }
  });
}

// Sequence 0's queries are the flash path (queries x group >= 16 rows); sequence 1's few
// queries the per-query path, except where group alone makes 16 rows.
INSTANTIATE_TEST_SUITE_P(
    Cases, AttentionBatch,
    ::testing::Values(
        // From position 0, across the 64-key blocks; GQA 4, head 64 (the bench preset).
        BatchCase{16, 4, 64, 16, false, causal_run(0, 70), causal_run(5, 2)},
        // Depth past several key blocks, pages of 7 rows (blocks straddle pages).
        BatchCase{16, 4, 64, 7, false, causal_run(300, 33), causal_run(63, 3)},
        // The real model's heads: GQA 6, head 128; query block of 10 queries.
        BatchCase{48, 8, 128, 16, false, causal_run(130, 23), causal_run(127, 1)},
        // No GQA, head 16, pages of one row; lengths right at the block edges.
        BatchCase{4,
                  4,
                  16,
                  1,
                  false,
                  {63, 64, 65, 127, 128, 129, 1, 2, 64, 64, 3, 200, 5, 6, 7, 8},
                  {64, 65}},
        // GQA 16 (one query alone makes 16 rows), head 20 (vector tail), contiguous cache.
        BatchCase{16, 1, 20, 0, false, causal_run(3, 5), {1}},
        // Unordered, repeated positions; head 8.
        BatchCase{8, 2, 8, 5, false, {9, 1, 33, 33, 70, 2, 64, 65, 17, 4}, {40, 41, 42}},
        // E4M3 cache: bench preset and real heads.
        BatchCase{16, 4, 64, 16, true, causal_run(200, 20), causal_run(10, 2)},
        BatchCase{48, 8, 128, 8, true, causal_run(70, 12), causal_run(1, 1)}));

TEST(AttentionBatchArgs, RejectsBadInput) {
  ThreadPool pool(2);
  float buf[256] = {};
  const float* blocks[1] = {buf};
  const uint8_t bytes[64] = {};
  const uint8_t* blocks8[1] = {bytes};
  const int64_t tokens[1] = {0}, ctx[1] = {1}, no_ctx[1] = {0};
  const AttentionShape shape{8, 2, 2, 4, 1.0f, 1.0f};
  AttentionSequence seq;
  seq.tokens = tokens;
  seq.n_ctx = ctx;
  seq.n_tokens = 1;
  seq.block_size = 4;
  EXPECT_THROW(attention_batch(buf, &seq, 1, shape, buf, pool), Error);  // no block table
  seq.k_blocks = blocks;
  seq.v_blocks = blocks;
  seq.k8_blocks = blocks8;
  seq.v8_blocks = blocks8;
  EXPECT_THROW(attention_batch(buf, &seq, 1, shape, buf, pool), Error);  // both tables
  seq.k8_blocks = seq.v8_blocks = nullptr;
  EXPECT_NO_THROW(attention_batch(buf, &seq, 1, shape, buf, pool));
  seq.n_ctx = no_ctx;
  EXPECT_THROW(attention_batch(buf, &seq, 1, shape, buf, pool), Error);  // n_ctx 0
  EXPECT_THROW(scalar::attention_batch(buf, &seq, 1, shape, buf), Error);
  seq.n_ctx = ctx;
  seq.block_size = 0;
  EXPECT_THROW(attention_batch(buf, &seq, 1, shape, buf, pool), Error);
  seq.block_size = 4;
  const AttentionShape bad_heads{8, 3, 2, 4, 1.0f, 1.0f};
  EXPECT_THROW(attention_batch(buf, &seq, 1, bad_heads, buf, pool), Error);
  seq.k_blocks = seq.v_blocks = nullptr;
  seq.k8_blocks = seq.v8_blocks = blocks8;
  const AttentionShape bad_scale{8, 2, 2, 4, 0.0f, 1.0f};
  EXPECT_THROW(attention_batch(buf, &seq, 1, bad_scale, buf, pool), Error);
}

}  // namespace
}  // namespace m2fp4
