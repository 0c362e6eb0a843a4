// GPU tests of the CUDA kernels against the CPU scalar twins. They need a CUDA device and skip
// (with the reason) where there is none or the build has no CUDA; scripts/gpu_check.sh runs them
// on a GPU machine.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/cuda/algorithms_hd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/device_weights.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/test_util.h"

namespace m2fp4 {
namespace {

using cuda::DeviceBuffer;

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda::device_count(&why) == 0) GTEST_SKIP() << "no CUDA device (" << why << ")";
    stream_ = cuda::stream_create();
  }
  void TearDown() override { cuda::stream_destroy(stream_); }

  template <class T>
  DeviceBuffer up(const std::vector<T>& v) {
    DeviceBuffer b(static_cast<int64_t>(v.size() * sizeof(T)));
    cuda::copy_to_device(b.get(), v.data(), b.bytes(), stream_);
    return b;
  }
  template <class T>
  std::vector<T> down(const DeviceBuffer& b, int64_t n) {
    std::vector<T> v(static_cast<size_t>(n));
    cuda::copy_to_host(v.data(), b.get(), n * static_cast<int64_t>(sizeof(T)), stream_);
    cuda::stream_sync(stream_);
    return v;
  }

  cuda::Stream stream_ = nullptr;
};

const WeightFormat kFormats[] = {
    WeightFormat::kF32,   WeightFormat::kBF16,  WeightFormat::kF16,    WeightFormat::kFp8Block128,
    WeightFormat::kNvfp4, WeightFormat::kMxfp4, WeightFormat::kIq4nl16};

// Every output against the double-precision sum of the independently decoded terms, with the
// f32 bound of any summation order (n + 1) u sum |terms|; and against scalar::matmul.
void expect_matmul_close(const test::OwnedWeight& o, const std::vector<float>& x, int64_t n,
                         const std::vector<float>& got, const std::string& what) {
  const int64_t rows = o.w.rows, cols = o.w.cols;
  std::vector<float> ref(static_cast<size_t>(n * rows));
  scalar::matmul(o.w, x.data(), n, ref.data());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0, sum_abs = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double term = o.at(r, c) * x[t * cols + c];
        sum += term;
        sum_abs += std::abs(term);
      }
      const double bound = (cols + 1) * test::kF32Eps * sum_abs;
      ASSERT_NEAR(got[t * rows + r], sum, bound) << what << " t=" << t << " r=" << r;
      ASSERT_NEAR(got[t * rows + r], ref[t * rows + r], 2 * bound) << what;
    }
  }
}

TEST_F(CudaKernels, MatmulEveryFormatGemvAndTiledGemm) {
  for (WeightFormat format : kFormats) {
    for (int64_t rows : {1, 130}) {
      test::OwnedWeight o = test::random_weight(format, rows, 256, 3);
      cuda::DeviceWeightArena dw({&o.w}, stream_);
      for (int64_t n : {1, 2, 4, 5, 8, 9, 70}) {
        const std::vector<float> x = test::random_floats(n * 256, 17 + n);
        DeviceBuffer dx = up(x), dy(n * rows * 4);
        cuda::matmul(dw[0], dx.as<float>(), n, dy.as<float>(), stream_);
        expect_matmul_close(o, x, n, down<float>(dy, n * rows),
                            std::string(weight_format_name(format)) +
                                " rows=" + std::to_string(rows) + " n=" + std::to_string(n));
      }
    }
  }
}

TEST_F(CudaKernels, ExpertSlotsAndGroupedMatchPerExpertScalar) {
  const int64_t E = 5, K = 2, rows = 72, cols = 64;
  for (WeightFormat format : {WeightFormat::kNvfp4, WeightFormat::kFp8Block128, WeightFormat::kBF16,
                              WeightFormat::kIq4nl16}) {
    std::vector<test::OwnedWeight> experts;
    std::vector<const Weight*> ptrs;
    for (int64_t e = 0; e < E; ++e)
      experts.push_back(test::random_weight(format, rows, cols, 40 + e));
    for (auto& o : experts) ptrs.push_back(&o.w);
    cuda::DeviceWeightArena dw(ptrs, stream_);
    std::vector<Weight> table(dw.size());
    for (size_t i = 0; i < dw.size(); ++i) table[i] = dw[i];
    DeviceBuffer dtable(static_cast<int64_t>(table.size() * sizeof(Weight)));
    cuda::copy_to_device(dtable.get(), table.data(), dtable.bytes(), stream_);

    for (int64_t n : {1, 3, 90}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      std::vector<int32_t> ids;
      for (int64_t t = 0; t < n; ++t) {
        const int32_t a = static_cast<int32_t>(rng() % E);
        ids.push_back(a);
        ids.push_back(static_cast<int32_t>((a + 1 + rng() % (E - 1)) % E));
      }
      const int64_t slots = n * K;
      const std::vector<float> x = test::random_floats(n * cols, 5);
      DeviceBuffer dx = up(x), dids = up(ids), dy(slots * rows * 4);
      std::vector<int32_t> slot_of_pos(slots, -1);
      if (slots <= cuda::kExpertSlotsMax) {
        cuda::expert_matmul_slots(dtable.as<Weight>(), table[0], dids.as<int32_t>(), slots,
                                  dx.as<float>(), K, dy.as<float>(), stream_);
      } else {
        const int64_t max_tiles = cuda::expert_max_tiles(slots, E);
        DeviceBuffer sop(slots * 4), pos(slots * 4), tiles(3 * max_tiles * 4), nt(4),
            scratch(2 * E * 4);
        cuda::expert_sort(dids.as<int32_t>(), slots, E, sop.as<int32_t>(), pos.as<int32_t>(),
                          tiles.as<int32_t>(), nt.as<int32_t>(), scratch.as<int32_t>(), stream_);
        cuda::expert_matmul_grouped(dtable.as<Weight>(), table[0], tiles.as<int32_t>(),
                                    nt.as<int32_t>(), max_tiles, dx.as<float>(), sop.as<int32_t>(),
                                    K, dy.as<float>(), stream_);
        slot_of_pos = down<int32_t>(sop, slots);
      }
      const std::vector<float> y = down<float>(dy, slots * rows);
      for (int64_t p = 0; p < slots; ++p) {
        const int64_t s = slots <= cuda::kExpertSlotsMax ? p : slot_of_pos[p];
        const test::OwnedWeight& o = experts[ids[s]];
        const std::vector<float> xs(x.begin() + (s / K) * cols, x.begin() + (s / K + 1) * cols);
        const std::vector<float> ys(y.begin() + p * rows, y.begin() + (p + 1) * rows);
        expect_matmul_close(o, xs, 1, ys,
                            std::string(weight_format_name(format)) + " slot " + std::to_string(s));
      }
    }
  }
}

TEST_F(CudaKernels, ExpertSortOnDeviceEqualsHostSort) {
  const int64_t E = 256, n_slots = 4096;
  std::mt19937 rng(1);
  std::vector<int32_t> ids(n_slots);
  for (auto& i : ids) i = static_cast<int32_t>(rng() % 40);  // crowded: multi-tile experts
  const int64_t max_tiles = cuda::expert_max_tiles(n_slots, E);
  std::vector<int32_t> sop(n_slots), pos(n_slots), tiles(3 * max_tiles), scratch(2 * E);
  int32_t n_tiles = 0;
  cuda::sort_slots(ids.data(), n_slots, E, sop.data(), pos.data(), tiles.data(), &n_tiles,
                   scratch.data());
  DeviceBuffer dids = up(ids), dsop(n_slots * 4), dpos(n_slots * 4), dtiles(3 * max_tiles * 4),
               dnt(4), dscratch(2 * E * 4);
  cuda::expert_sort(dids.as<int32_t>(), n_slots, E, dsop.as<int32_t>(), dpos.as<int32_t>(),
                    dtiles.as<int32_t>(), dnt.as<int32_t>(), dscratch.as<int32_t>(), stream_);
  EXPECT_EQ(down<int32_t>(dsop, n_slots), sop);
  EXPECT_EQ(down<int32_t>(dpos, n_slots), pos);
  EXPECT_EQ(down<int32_t>(dnt, 1)[0], n_tiles);
  std::vector<int32_t> got_tiles = down<int32_t>(dtiles, 3 * n_tiles);
  EXPECT_TRUE(std::equal(got_tiles.begin(), got_tiles.end(), tiles.begin()));
}

TEST_F(CudaKernels, RmsNormRopeSiluRouteMatchScalar) {
  const int64_t n = 3, width = 6144;
  const std::vector<float> x = test::random_floats(n * width, 1, 3.0f);
  const std::vector<float> w = test::random_floats(width, 2);
  std::vector<float> want(n * width);
  scalar::rms_norm(x.data(), w.data(), n, width, 1e-6f, want.data());
  DeviceBuffer dx = up(x), dw = up(w);
  cuda::rms_norm(dx.as<float>(), dw.as<float>(), n, width, 1e-6f, dx.as<float>(), stream_);
  std::vector<float> got = down<float>(dx, n * width);
  for (int64_t i = 0; i < n * width; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * std::abs(want[i]));

  // RoPE: 48 heads of 128, 64 rotated, three positions far apart.
  const std::vector<int32_t> positions = {0, 17, 150000};
  std::vector<float> q = test::random_floats(n * width, 3);
  DeviceBuffer dq = up(q), dpos = up(positions);
  cuda::rope_neox(dq.as<float>(), n, 48, 128, 64, dpos.as<int32_t>(), 5e6, stream_);
  got = down<float>(dq, n * width);
  for (int64_t t = 0; t < n; ++t)
    scalar::rope_neox(q.data() + t * width, 48, 128, 64, positions[t], 5e6);
  for (int64_t i = 0; i < n * width; ++i) ASSERT_NEAR(got[i], q[i], 1e-6f * (1 + std::abs(q[i])));

  const std::vector<float> g = test::random_floats(1000, 4, 4.0f), u = test::random_floats(1000, 5);
  std::vector<float> want_s(1000);
  scalar::silu_mul(g.data(), u.data(), 1000, want_s.data());
  DeviceBuffer dg = up(g), du = up(u);
  cuda::silu_mul(dg.as<float>(), du.as<float>(), 1000, dg.as<float>(), stream_);
  got = down<float>(dg, 1000);
  for (int i = 0; i < 1000; ++i) ASSERT_NEAR(got[i], want_s[i], 1e-6f * (1 + std::abs(want_s[i])));

  // Router: 256 experts, top 8, with bias, against the scalar router.
  const int64_t E = 256, K = 8, tokens = 40;
  const std::vector<float> logits = test::random_floats(tokens * E, 6, 2.0f);
  const std::vector<float> bias = test::random_floats(E, 7, 0.05f);
  DeviceBuffer dl = up(logits), db = up(bias), dids(tokens * K * 4), dwt(tokens * K * 4);
  cuda::route_sigmoid_topk(dl.as<float>(), db.as<float>(), tokens, E, K, dids.as<int32_t>(),
                           dwt.as<float>(), stream_);
  const std::vector<int32_t> ids = down<int32_t>(dids, tokens * K);
  const std::vector<float> wts = down<float>(dwt, tokens * K);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> want_ids(K);
    std::vector<float> want_w(K);
    scalar::route_sigmoid_topk(logits.data() + t * E, bias.data(), E, K, want_ids.data(),
                               want_w.data());
    // Skip a token whose choices (score + bias, sorted) have two within 1e-5 of each other
    // around the cut: there the device's expf (2 ulp) may legitimately order them otherwise.
    std::vector<float> choice(E);
    for (int64_t e = 0; e < E; ++e)
      choice[e] = 1.0f / (1.0f + std::exp(-logits[t * E + e])) + bias[e];
    std::sort(choice.begin(), choice.end(), std::greater<float>());
    bool near_tie = false;
    for (int64_t j = 0; j < K; ++j) near_tie = near_tie || choice[j] - choice[j + 1] < 1e-5f;
    if (near_tie) continue;
    for (int64_t j = 0; j < K; ++j) {
      EXPECT_EQ(ids[t * K + j], want_ids[j]) << "token " << t;
      EXPECT_NEAR(wts[t * K + j], want_w[j], 1e-6f);
    }
  }
}

TEST_F(CudaKernels, EmbedGatherCombineAndKvStore) {
  for (WeightFormat format : kFormats) {
    test::OwnedWeight o = test::random_weight(format, 50, 64, 9);
    cuda::DeviceWeightArena dw({&o.w}, stream_);
    const std::vector<int32_t> tokens = {3, 49, 0, 3};
    DeviceBuffer dt = up(tokens), out(4 * 64 * 4);
    cuda::embed_rows(dw[0], dt.as<int32_t>(), 4, out.as<float>(), stream_);
    const std::vector<float> got = down<float>(out, 4 * 64);
    std::vector<float> row(64);
    for (int i = 0; i < 4; ++i) {
      decode_weight_row(o.w, tokens[i], row.data());
      for (int c = 0; c < 64; ++c) {
        if (std::isnan(row[c])) continue;
        ASSERT_EQ(got[i * 64 + c], row[c]) << weight_format_name(format);
      }
    }
  }
  // Gather rows 2, 0.
  const std::vector<float> src = test::random_floats(3 * 8, 1);
  const std::vector<int32_t> rows = {2, 0};
  DeviceBuffer ds = up(src), dr = up(rows), dd(2 * 8 * 4);
  cuda::gather_rows(ds.as<float>(), dr.as<int32_t>(), 2, 8, dd.as<float>(), stream_);
  const std::vector<float> gathered = down<float>(dd, 16);
  for (int c = 0; c < 8; ++c) {
    EXPECT_EQ(gathered[c], src[16 + c]);
    EXPECT_EQ(gathered[8 + c], src[c]);
  }
  // Combine: 2 tokens, top 3, expert outputs in slot order and through pos_of_slot.
  const int64_t K = 3, W = 40;
  const std::vector<int32_t> ids = {4, 1, 2, 0, 7, 3};
  const std::vector<float> wts = {0.5f, 0.25f, 0.25f, 0.1f, 0.6f, 0.3f};
  const std::vector<float> dn = test::random_floats(6 * W, 2);
  const std::vector<float> x = test::random_floats(2 * W, 3);
  const std::vector<int32_t> pos_of_slot = {5, 0, 3, 1, 4, 2};
  std::vector<float> dn_permuted(6 * W);
  for (int s = 0; s < 6; ++s)
    std::copy_n(dn.begin() + s * W, W, dn_permuted.begin() + pos_of_slot[s] * W);
  for (int variant = 0; variant < 2; ++variant) {
    DeviceBuffer dx = up(x), ddn = up(variant ? dn_permuted : dn), di = up(ids), dwt = up(wts),
                 dp = up(pos_of_slot);
    cuda::moe_combine(dx.as<float>(), ddn.as<float>(), di.as<int32_t>(), dwt.as<float>(),
                      variant ? dp.as<int32_t>() : nullptr, 2, K, W, stream_);
    const std::vector<float> got = down<float>(dx, 2 * W);
    for (int t = 0; t < 2; ++t) {
      // The CPU adds experts in ascending index order.
      std::vector<int> order = {0, 1, 2};
      std::sort(order.begin(), order.end(),
                [&](int a, int b) { return ids[t * K + a] < ids[t * K + b]; });
      for (int c = 0; c < W; ++c) {
        float want = x[t * W + c];
        for (int j : order) want += wts[t * K + j] * dn[(t * K + j) * W + c];
        EXPECT_EQ(got[t * W + c], want) << "variant " << variant;
      }
    }
  }
  // KV store, f32 and FP8 (exactly scalar::kv_store_fp8).
  const int64_t KW = 64;
  const std::vector<float> k = test::random_floats(2 * KW, 4, 30.0f),
                           v = test::random_floats(2 * KW, 5, 30.0f);
  const std::vector<int32_t> at = {5, 6};
  DeviceBuffer dk = up(k), dv = up(v), dat = up(at), kc(8 * KW * 4), vc(8 * KW * 4);
  cuda::kv_store(dk.as<float>(), dv.as<float>(), 2, KW, dat.as<int32_t>(), kc.get(), vc.get(),
                 false, 0, 0, stream_);
  std::vector<float> kf = down<float>(kc, 8 * KW);
  for (int i = 0; i < 2 * KW; ++i) EXPECT_EQ(kf[5 * KW + i], k[i]);
  cuda::kv_store(dk.as<float>(), dv.as<float>(), 2, KW, dat.as<int32_t>(), kc.get(), vc.get(), true,
                 0.07f, 0.3f, stream_);
  std::vector<uint8_t> k8 = down<uint8_t>(kc, 8 * KW), v8 = down<uint8_t>(vc, 8 * KW);
  std::vector<uint8_t> want_k(2 * KW), want_v(2 * KW);
  scalar::kv_store_fp8(k.data(), 2 * KW, 0.07f, want_k.data());
  scalar::kv_store_fp8(v.data(), 2 * KW, 0.3f, want_v.data());
  for (int i = 0; i < 2 * KW; ++i) {
    EXPECT_EQ(k8[5 * KW + i], want_k[i]);
    EXPECT_EQ(v8[5 * KW + i], want_v[i]);
  }
}

// Decode (one query) and blocked prefill (many queries at consecutive positions after a cached
// prefix), f32 and FP8 caches, GQA, against scalar::attention / attention_fp8 per query.
TEST_F(CudaKernels, AttentionDecodeAndBlockedPrefillMatchScalar) {
  struct Shape {
    int64_t heads, kv_heads, head_dim, prefix, n;
  };
  for (const Shape& sh :
       {Shape{48, 8, 128, 0, 1}, Shape{48, 8, 128, 300, 1}, Shape{48, 8, 128, 0, 77},
        Shape{6, 2, 16, 5, 40}, Shape{4, 4, 256, 3, 9}}) {
    for (bool fp8 : {false, true}) {
      const int64_t KW = sh.kv_heads * sh.head_dim, QW = sh.heads * sh.head_dim;
      const int64_t ctx = sh.prefix + sh.n;
      const std::vector<float> kf = test::random_floats(ctx * KW, 1, 2.0f),
                               vf = test::random_floats(ctx * KW, 2);
      const std::vector<float> q = test::random_floats(sh.n * QW, 3);
      const float ks = 0.02f, vs = 0.01f;
      std::vector<uint8_t> k8(ctx * KW), v8(ctx * KW);
      scalar::kv_store_fp8(kf.data(), ctx * KW, ks, k8.data());
      scalar::kv_store_fp8(vf.data(), ctx * KW, vs, v8.data());
      std::vector<int32_t> positions(sh.n);
      std::iota(positions.begin(), positions.end(), static_cast<int32_t>(sh.prefix));
      DeviceBuffer dk = fp8 ? up(k8) : up(kf), dv = fp8 ? up(v8) : up(vf), dq = up(q),
                   dpos = up(positions), dout(sh.n * QW * 4);
      cuda::attention(dq.as<float>(), dk.get(), dv.get(), fp8, ks, vs, dpos.as<int32_t>(), sh.n, KW,
                      sh.heads, sh.kv_heads, sh.head_dim, dout.as<float>(), stream_);
      const std::vector<float> got = down<float>(dout, sh.n * QW);
      std::vector<float> want(QW), scratch(ctx);
      for (int64_t t = 0; t < sh.n; ++t) {
        if (fp8) {
          scalar::attention_fp8(q.data() + t * QW, k8.data(), v8.data(), positions[t] + 1, KW,
                                sh.heads, sh.kv_heads, sh.head_dim, ks, vs, want.data(),
                                scratch.data());
        } else {
          scalar::attention(q.data() + t * QW, kf.data(), vf.data(), positions[t] + 1, KW, sh.heads,
                            sh.kv_heads, sh.head_dim, want.data(), scratch.data());
        }
        for (int64_t i = 0; i < QW; ++i) {
          ASSERT_NEAR(got[t * QW + i], want[i], 2e-5f * (1 + std::abs(want[i])))
              << "heads " << sh.heads << " hd " << sh.head_dim << " n " << sh.n << " fp8 " << fp8
              << " t " << t << " i " << i;
        }
      }
    }
  }
}

TEST_F(CudaKernels, CapturedGraphReplaysWithNewInputs) {
  test::OwnedWeight o = test::random_weight(WeightFormat::kNvfp4, 64, 128, 1);
  cuda::DeviceWeightArena dw({&o.w}, stream_);
  DeviceBuffer dx(128 * 4), dy(64 * 4);
  cuda::capture_begin(stream_);
  cuda::matmul(dw[0], dx.as<float>(), 1, dy.as<float>(), stream_);
  cuda::GraphExec graph = cuda::capture_end(stream_);
  for (uint32_t seed : {1u, 2u}) {
    const std::vector<float> x = test::random_floats(128, seed);
    cuda::copy_to_device(dx.get(), x.data(), 128 * 4, stream_);
    cuda::graph_launch(graph, stream_);
    expect_matmul_close(o, x, 1, down<float>(dy, 64), "graph seed " + std::to_string(seed));
  }
  cuda::graph_destroy(graph);
}

}  // namespace
}  // namespace m2fp4
