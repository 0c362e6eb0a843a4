// CPU-side tests of the CUDA backend: they run everywhere (no GPU needed). The decode, routing,
// sorting and encoding functions here are the very functions the kernels run on the device
// (written for both compilers), checked against the scalar twins; plus launch grids, argument
// checks, the upload layout and the decode-graph bookkeeping.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/cuda/algorithms_hd.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_plan.h"
#include "kernels/cuda/weight_decode_hd.h"
#include "kernels/test_util.h"
#include "numerics/e2m1.h"
#include "numerics/e8m0.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"
#include "numerics/iq4nl.h"

namespace m2fp4 {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Same value, or both NaN (NaN payloads are not part of any format's contract).
void expect_same_float(float got, float want, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what;
  } else {
    EXPECT_EQ(bits_of(got), bits_of(want)) << what << ": got " << got << " want " << want;
  }
}

TEST(CudaDecode, EveryCodeOfEveryElementFormatMatchesNumerics) {
  for (uint32_t c = 0; c < 256; ++c) {
    expect_same_float(cuda::e4m3_value(c), e4m3_to_f32(static_cast<uint8_t>(c)),
                      "e4m3 " + std::to_string(c));
    expect_same_float(cuda::e8m0_value(c), e8m0_to_f32(static_cast<uint8_t>(c)),
                      "e8m0 " + std::to_string(c));
  }
  for (uint32_t c = 0; c < 16; ++c) {
    expect_same_float(cuda::e2m1_value(c), e2m1_to_f32(static_cast<uint8_t>(c)),
                      "e2m1 " + std::to_string(c));
    expect_same_float(cuda::iq4nl_value(c), iq4nl_level(static_cast<uint8_t>(c)),
                      "iq4nl " + std::to_string(c));
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    expect_same_float(cuda::f16_value(h), f16_to_f32(static_cast<uint16_t>(h)),
                      "f16 " + std::to_string(h));
    expect_same_float(cuda::bf16_value(h), bf16_to_f32(static_cast<uint16_t>(h)),
                      "bf16 " + std::to_string(h));
  }
  // -0 of E2M1 keeps its sign.
  EXPECT_TRUE(std::signbit(cuda::e2m1_value(8)));
}

class CudaDecodeChunk : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(CudaDecodeChunk, EqualsWeightElementBitForBit) {
  const WeightFormat format = GetParam();
  // 256 columns: two FP8 128-column blocks, several 4-bit groups; 130 rows: two FP8 row blocks.
  test::OwnedWeight o = test::random_weight(format, 130, 256, 7);
  cuda::check_weight(o.w, "test");
  for (int64_t r = 0; r < o.w.rows; ++r) {
    for (int64_t c0 = 0; c0 < o.w.cols; c0 += cuda::kChunk) {
      float chunk[cuda::kChunk];
      cuda::decode_chunk(o.w, r, c0, chunk);
      for (int k = 0; k < cuda::kChunk; ++k) {
        const float want = weight_element(o.w, r, c0 + k);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(chunk[k]));
        } else {
          ASSERT_EQ(bits_of(chunk[k]), bits_of(want))
              << weight_format_name(format) << " r=" << r << " c=" << c0 + k;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, CudaDecodeChunk,
                         ::testing::Values(WeightFormat::kF32, WeightFormat::kBF16,
                                           WeightFormat::kF16, WeightFormat::kFp8Block128,
                                           WeightFormat::kNvfp4, WeightFormat::kMxfp4,
                                           WeightFormat::kIq4nl16),
                         [](const auto& info) {
                           std::string name = weight_format_name(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(CudaDecode, Nvfp4GroupScaleIsRoundedOnceAsTheScalarDecode) {
  // e4m3(S) * global rounded to f32, then times the element: a hand-checked case.
  const uint8_t codes[4] = {0x71, 0x00, 0x00, 0x00};  // col 0: code 1 (0.5), col 1: code 7 (6)
  const uint8_t scale = 0x38;                         // e4m3 1.0
  Weight w;
  w.format = WeightFormat::kNvfp4;
  w.rows = 1;
  w.cols = 8;
  w.data = codes;
  w.group_scale = &scale;
  w.group_size = 8;
  w.global_scale = 0.25f;
  float out[cuda::kChunk];
  cuda::decode_chunk(w, 0, 0, out);
  EXPECT_EQ(out[0], 0.125f);
  EXPECT_EQ(out[1], 1.5f);
  EXPECT_EQ(out[2], 0.0f);
}

TEST(CudaFp8Encode, MatchesSaturatingEncoderOnEdgesAndRandomBits) {
  std::vector<float> values = {0.0f,        -0.0f,     448.0f, 464.0f,     464.1f,     -1e9f,
                               INFINITY,    -INFINITY, NAN,    1.0f / 512, 1.5f / 512, 2.5f / 512,
                               0.00390625f, 3.0e-5f,   240.0f, 17.0f,      -0.75f};
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t b = rng();
    float f;
    std::memcpy(&f, &b, 4);
    values.push_back(f);
    values.push_back(std::ldexp(static_cast<float>(rng() % 100000) / 1000.0f, -12));
  }
  for (float v : values) {
    ASSERT_EQ(cuda::e4m3_encode_satfinite(v), f32_to_e4m3(v, Fp8Overflow::kSaturate)) << v;
  }
}

TEST(CudaRouting, RouteTokenMatchesScalarRouter) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n_experts = 8 + trial % 250, top_k = 1 + trial % 8;
    std::vector<float> logits = test::random_floats(n_experts, 100 + trial, 2.0f);
    std::vector<float> bias = test::random_floats(n_experts, 900 + trial, 0.1f);
    if (trial % 7 == 0) std::fill(logits.begin(), logits.begin() + 4, 0.5f);  // ties
    const float* b = trial % 3 == 0 ? nullptr : bias.data();
    std::vector<int32_t> ids(top_k), want_ids(top_k);
    std::vector<float> w(top_k), want_w(top_k);
    cuda::route_token(logits.data(), b, n_experts, top_k, ids.data(), w.data());
    scalar::route_sigmoid_topk(logits.data(), b, n_experts, top_k, want_ids.data(), want_w.data());
    EXPECT_EQ(ids, want_ids) << "trial " << trial;
    EXPECT_EQ(w, want_w) << "trial " << trial;
  }
}

TEST(CudaRouting, SiluMulMatchesScalar) {
  std::vector<float> g = test::random_floats(1000, 1, 4.0f), u = test::random_floats(1000, 2);
  std::vector<float> want(1000);
  scalar::silu_mul(g.data(), u.data(), 1000, want.data());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(cuda::silu_mul_value(g[i], u[i]), want[i]);
}

TEST(CudaExpertSort, StableByExpertWithTilesCoveringEveryPosition) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t n_experts = 1 + trial * 5, top_k = std::min<int64_t>(8, n_experts);
    const int64_t n_tokens = 1 + (trial * 37) % 700;
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < n_tokens; ++t) {
      // Distinct experts per token, skewed so some experts get more than one tile.
      std::vector<int32_t> all(n_experts);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin() + std::min<int64_t>(2, n_experts), all.end(), rng);
      if (rng() % 4 == 0) std::shuffle(all.begin(), all.end(), rng);
      ids.insert(ids.end(), all.begin(), all.begin() + top_k);
    }
    const int64_t n_slots = n_tokens * top_k;
    const int64_t max_tiles = cuda::expert_max_tiles(n_slots, n_experts);
    std::vector<int32_t> slot_of_pos(n_slots), pos_of_slot(n_slots), tiles(3 * max_tiles),
        scratch(2 * n_experts);
    int32_t n_tiles = -1;
    cuda::sort_slots(ids.data(), n_slots, n_experts, slot_of_pos.data(), pos_of_slot.data(),
                     tiles.data(), &n_tiles, scratch.data());
    std::vector<int32_t> want(n_slots);
    std::iota(want.begin(), want.end(), 0);
    std::stable_sort(want.begin(), want.end(),
                     [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
    EXPECT_EQ(slot_of_pos, want);
    for (int64_t s = 0; s < n_slots; ++s) EXPECT_EQ(slot_of_pos[pos_of_slot[s]], s);
    ASSERT_LE(n_tiles, max_tiles);
    std::vector<int> covered(n_slots, 0);
    for (int32_t i = 0; i < n_tiles; ++i) {
      const int32_t e = tiles[3 * i], first = tiles[3 * i + 1], count = tiles[3 * i + 2];
      ASSERT_GE(count, 1);
      ASSERT_LE(count, cuda::kGemmTileTokens);
      for (int32_t p = first; p < first + count; ++p) {
        ++covered[p];
        EXPECT_EQ(ids[slot_of_pos[p]], e);
      }
    }
    EXPECT_TRUE(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
  }
}

TEST(CudaExpertSort, CombineOrderIsAscendingExpert) {
  const int32_t ids[5] = {7, 2, 9, 0, 3};
  int32_t order[5];
  cuda::combine_order(ids, 5, order);
  const int32_t want[5] = {3, 1, 4, 0, 2};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(order[i], want[i]);
}

TEST(CudaLaunchPlan, GridsCoverEveryRowAndToken) {
  for (int64_t rows : {1, 7, 8, 9, 1536, 3072, 200064}) {
    for (int64_t n : {1, 3, 4, 5, 8, 9, 64, 65, 512}) {
      const cuda::Grid v = cuda::gemv_grid(rows, n);
      EXPECT_GE(v.x * cuda::kGemvRowsPerBlock, rows);
      EXPECT_LT((v.x - 1) * cuda::kGemvRowsPerBlock, rows);
      EXPECT_GE(v.y * cuda::kGemvTokens, n);
      EXPECT_EQ(v.threads * cuda::kGemvRowsPerWarp, cuda::kGemvRowsPerBlock * cuda::kWarp);
      const cuda::Grid m = cuda::gemm_grid(rows, n);
      EXPECT_GE(m.x * cuda::kGemmTileRows, rows);
      EXPECT_GE(m.y * cuda::kGemmTileTokens, n);
      EXPECT_LT((m.y - 1) * cuda::kGemmTileTokens, n);
    }
  }
  EXPECT_TRUE(cuda::use_gemv(1));
  EXPECT_TRUE(cuda::use_gemv(cuda::kGemvMaxTokens));
  EXPECT_FALSE(cuda::use_gemv(cuda::kGemvMaxTokens + 1));
  bool blocked = true;
  cuda::Grid a = cuda::attention_grid(1, 48, 128, &blocked);
  EXPECT_FALSE(blocked);
  EXPECT_EQ(a.x, 48);
  EXPECT_EQ(a.y, 1);
  a = cuda::attention_grid(512, 48, 128, &blocked);
  EXPECT_TRUE(blocked);
  EXPECT_EQ(a.y, 512 / cuda::kAttnQueryTile);
  a = cuda::attention_grid(5, 4, 256, &blocked);  // too wide for the blocked kernel's tiles
  EXPECT_FALSE(blocked);
  EXPECT_EQ(a.y, 5);
}

TEST(CudaLaunchPlan, BadWeightsAndShapesFailWithClearMessages) {
  test::OwnedWeight o = test::random_weight(WeightFormat::kNvfp4, 16, 64, 1);
  auto expect_error = [](const Weight& w, const char* fragment) {
    try {
      cuda::check_matmul(w, 1, "q_proj");
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("q_proj"), std::string::npos) << e.what();
    }
  };
  Weight w = o.w;
  w.group_scale = nullptr;
  expect_error(w, "no group scales");
  w = o.w;
  w.group_size = 12;
  expect_error(w, "group size 12");
  w = o.w;
  w.cols = 60;
  expect_error(w, "divisible by 8");
  w = o.w;
  w.data = nullptr;
  expect_error(w, "no data");
  test::OwnedWeight f = test::random_weight(WeightFormat::kFp8Block128, 8, 256, 1);
  w = f.w;
  w.scale_cols = 1;
  expect_error(w, "scale_cols 1");
  w = f.w;
  w.block_scale = nullptr;
  expect_error(w, "no block scales");
  EXPECT_NO_THROW(cuda::check_matmul(o.w, 1, "ok"));
  EXPECT_THROW(cuda::check_matmul(o.w, -1, "neg"), Error);
  EXPECT_THROW(cuda::check_attention(1, 64, 6, 4, 16), Error);   // heads not a multiple
  EXPECT_THROW(cuda::check_attention(1, 64, 8, 4, 512), Error);  // head_dim too wide
  EXPECT_THROW(cuda::check_attention(1, 32, 8, 4, 16), Error);   // stride too small
  EXPECT_NO_THROW(cuda::check_attention(1, 1024, 48, 8, 128));
  EXPECT_THROW(cuda::check_route(8, 9), Error);
  EXPECT_THROW(cuda::check_route(256, cuda::kMaxTopK + 1), Error);
  EXPECT_NO_THROW(cuda::check_route(256, 8));
}

TEST(CudaLaunchPlan, UploadPlanAlignsAndSeparatesEveryPiece) {
  std::vector<test::OwnedWeight> owned;
  owned.push_back(test::random_weight(WeightFormat::kBF16, 3, 8, 1));
  owned.push_back(test::random_weight(WeightFormat::kFp8Block128, 130, 136, 2));
  owned.push_back(test::random_weight(WeightFormat::kNvfp4, 5, 32, 3));
  owned.push_back(test::random_weight(WeightFormat::kIq4nl16, 7, 48, 4));
  owned.push_back(test::random_weight(WeightFormat::kMxfp4, 2, 64, 5));
  std::vector<const Weight*> ws;
  for (auto& o : owned) ws.push_back(&o.w);
  const cuda::UploadPlan plan = cuda::plan_upload(ws);
  ASSERT_EQ(plan.slots.size(), ws.size());
  // Pieces in order, each aligned, none overlapping, all inside the arena.
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (size_t i = 0; i < ws.size(); ++i) {
    pieces.emplace_back(plan.slots[i].data_offset, cuda::weight_data_bytes(*ws[i]));
    if (plan.slots[i].scale_offset >= 0)
      pieces.emplace_back(plan.slots[i].scale_offset, cuda::weight_scale_bytes(*ws[i]));
  }
  EXPECT_EQ(plan.slots[0].scale_offset, -1);  // bf16: no scales
  EXPECT_EQ(cuda::weight_data_bytes(*ws[1]), 130 * 136);
  EXPECT_EQ(cuda::weight_scale_bytes(*ws[1]), 2 * 2 * 4);
  EXPECT_EQ(cuda::weight_scale_bytes(*ws[3]), 7 * 3 * 2);
  EXPECT_EQ(cuda::weight_data_bytes(*ws[4]), 2 * 64 / 2);
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].first % cuda::kUploadAlign, 0);
    if (i + 1 < pieces.size()) {
      EXPECT_GE(pieces[i + 1].first, pieces[i].first + pieces[i].second);
    }
    EXPECT_LE(pieces[i].first + pieces[i].second, plan.total_bytes);
  }
  // Device descriptors point into the arena at the planned offsets and keep shape and scalars.
  char arena[1];
  const Weight d = cuda::device_weight(*ws[1], plan.slots[1], arena);
  EXPECT_EQ(d.data, arena + plan.slots[1].data_offset);
  EXPECT_EQ(static_cast<const void*>(d.block_scale), arena + plan.slots[1].scale_offset);
  EXPECT_EQ(d.rows, 130);
  EXPECT_EQ(d.scale_cols, 2);
  const Weight n = cuda::device_weight(*ws[2], plan.slots[2], arena);
  EXPECT_EQ(static_cast<const void*>(n.group_scale), arena + plan.slots[2].scale_offset);
  EXPECT_EQ(n.global_scale, ws[2]->global_scale);
  EXPECT_EQ(n.block_scale, nullptr);
}

TEST(CudaLaunchPlan, DecodeGraphIsReplayedOnlyForTheKeyItWasCapturedWith) {
  cuda::DecodeGraphBook book;
  const cuda::GraphKey one{1, 0};
  EXPECT_FALSE(book.can_replay(one));
  book.captured(one);
  EXPECT_TRUE(book.can_replay(one));
  EXPECT_FALSE(book.can_replay(cuda::GraphKey{2, 0}));
  EXPECT_FALSE(book.can_replay(cuda::GraphKey{1, 1}));  // buffers reallocated
  book.invalidate();
  EXPECT_FALSE(book.can_replay(one));
  book.captured(one);
  EXPECT_EQ(book.captures(), 2);
}

TEST(CudaRuntime, WithoutCudaEveryEntryPointSaysSo) {
#if defined(M2FP4_WITH_CUDA)
  EXPECT_TRUE(cuda::built_with_cuda());
  std::string why;
  if (cuda::device_count(&why) == 0) {
    EXPECT_FALSE(why.empty());
    try {
      cuda::require_device();
      ADD_FAILURE() << "require_device did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
  }
#else
  EXPECT_FALSE(cuda::built_with_cuda());
  EXPECT_EQ(cuda::device_count(), 0);
  try {
    cuda::require_device();
    ADD_FAILURE() << "require_device did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
}  // namespace m2fp4
