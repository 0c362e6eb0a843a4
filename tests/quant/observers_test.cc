// Calibration statistics (quant-formats.md §7): amax observation, merging, the §7.2 cold-expert
// fallback, starved experts and the exact JSON round trip resume relies on.
#include "quant/observers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/error.h"

namespace m2fp4 {
namespace {

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(LayerCalibration, RecordsMaxAbsPerSiteAndExpert) {
  LayerCalibration c(3, 4);
  const std::vector<float> x = {0.5f, -2.25f, 1.0f, 0.0f, -0.75f, 2.0f};  // 2 rows x 3
  c.observe_input(InputSite::kQkv, -1, x.data(), 2, 3);
  EXPECT_EQ(c.qkv_input_amax, 2.25f);
  const std::vector<float> y = {-7.5f, 1.0f};
  c.observe_input(InputSite::kExpertW13, 2, y.data(), 1, 2);
  c.observe_input(InputSite::kExpertW13, 2, x.data(), 2, 3);  // a smaller batch later
  EXPECT_EQ(c.w13_input_amax[2], 7.5f);
  EXPECT_EQ(c.observed_rows[2], 3);
  EXPECT_EQ(c.observed_rows[0], 0);
  c.observe_input(InputSite::kExpertW2, 1, y.data(), 1, 2);
  EXPECT_EQ(c.w2_input_amax[1], 7.5f);
  EXPECT_EQ(c.observed_rows[1], 0);  // rows are counted at the w1/w3 input
  c.observe_input(InputSite::kO, -1, y.data(), 1, 2);
  c.observe_input(InputSite::kRouter, -1, x.data(), 1, 3);
  EXPECT_EQ(c.o_input_amax, 7.5f);
  EXPECT_EQ(c.router_input_amax, 2.25f);
  const std::vector<float> k = {1.0f, -3.0f}, v = {0.25f, -0.5f};
  c.observe_kv(k.data(), v.data(), 1, 2);
  EXPECT_EQ(c.k_amax, 3.0f);
  EXPECT_EQ(c.v_amax, 0.5f);
  const int64_t counts[4] = {5, 0, 2, 1};
  c.observe_routing(counts, 4);
  c.observe_routing(counts, 4);
  EXPECT_EQ(c.routed_tokens, (std::vector<int64_t>{10, 0, 4, 2}));
  EXPECT_THROW(c.observe_routing(counts, 3), Error);
  EXPECT_THROW(c.observe_input(InputSite::kExpertW13, 4, y.data(), 1, 2), Error);
}

TEST(LayerCalibration, NanAndInfinityAreErrors) {
  LayerCalibration c(0, 1);
  const std::vector<float> nan = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  const std::vector<float> inf = {-std::numeric_limits<float>::infinity(), 1.0f};
  EXPECT_THROW(c.observe_input(InputSite::kQkv, -1, nan.data(), 1, 2), Error);
  EXPECT_THROW(c.observe_kv(inf.data(), nan.data(), 1, 2), Error);
}

TEST(LayerCalibration, MergeTakesMaxAndSums) {
  LayerCalibration a(1, 2), b(1, 2);
  a.qkv_input_amax = 1.0f;
  b.qkv_input_amax = 3.0f;
  a.w2_input_amax = {4.0f, 0.0f};
  b.w2_input_amax = {1.0f, 2.0f};
  a.routed_tokens = {1, 2};
  b.routed_tokens = {10, 20};
  a.tokens = 7;
  b.tokens = 5;
  a.merge(b);
  EXPECT_EQ(a.qkv_input_amax, 3.0f);
  EXPECT_EQ(a.w2_input_amax, (std::vector<float>{4.0f, 2.0f}));
  EXPECT_EQ(a.routed_tokens, (std::vector<int64_t>{11, 22}));
  EXPECT_EQ(a.tokens, 12);
  EXPECT_THROW(a.merge(LayerCalibration(2, 2)), Error);
  EXPECT_THROW(a.merge(LayerCalibration(1, 3)), Error);
}

TEST(LayerCalibration, JsonRoundTripIsBitExact) {
  LayerCalibration c(5, 3);
  c.tokens = 123456789012;
  c.qkv_input_amax = 0.1f;           // not a short decimal
  c.o_input_amax = 1.17549435e-38f;  // smallest normal
  c.router_input_amax = 1.4e-45f;    // smallest subnormal
  c.k_amax = 3.40282347e38f;         // largest finite
  c.v_amax = 1.0f / 3.0f;
  c.w13_input_amax = {0.0f, 2.7182817f, 1e-20f};
  c.w2_input_amax = {123.456f, 0.0f, 7.0f};
  c.observed_rows = {0, 4, 9};
  c.routed_tokens = {1, 0, 5};
  const nlohmann::json j = nlohmann::json::parse(c.to_json().dump());
  const LayerCalibration r = LayerCalibration::from_json(j, 5, 3, "test");
  EXPECT_EQ(r.tokens, c.tokens);
  EXPECT_EQ(bits(r.qkv_input_amax), bits(c.qkv_input_amax));
  EXPECT_EQ(bits(r.o_input_amax), bits(c.o_input_amax));
  EXPECT_EQ(bits(r.router_input_amax), bits(c.router_input_amax));
  EXPECT_EQ(bits(r.k_amax), bits(c.k_amax));
  EXPECT_EQ(bits(r.v_amax), bits(c.v_amax));
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(bits(r.w13_input_amax[e]), bits(c.w13_input_amax[e]));
    EXPECT_EQ(bits(r.w2_input_amax[e]), bits(c.w2_input_amax[e]));
  }
  EXPECT_EQ(r.observed_rows, c.observed_rows);
  EXPECT_EQ(r.routed_tokens, c.routed_tokens);
}

TEST(LayerCalibration, FromJsonRejectsDamagedStatistics) {
  const nlohmann::json good = LayerCalibration(2, 2).to_json();
  EXPECT_NO_THROW(LayerCalibration::from_json(good, 2, 2, "x"));
  EXPECT_THROW(LayerCalibration::from_json(good, 3, 2, "x"), Error);  // other layer
  EXPECT_THROW(LayerCalibration::from_json(good, 2, 3, "x"), Error);  // other expert count
  nlohmann::json bad = good;
  bad["k_amax"] = -1.0;
  EXPECT_THROW(LayerCalibration::from_json(bad, 2, 2, "x"), Error);
  bad = good;
  bad.erase("w2_input_amax");
  EXPECT_THROW(LayerCalibration::from_json(bad, 2, 2, "x"), Error);
  bad = good;
  bad["routed_tokens"] = {1, -1};
  EXPECT_THROW(LayerCalibration::from_json(bad, 2, 2, "x"), Error);
  EXPECT_THROW(LayerCalibration::from_json(nlohmann::json::array(), 2, 2, "x"), Error);
}

TEST(ExpertInputAmax, UncalibratedExpertsGetTheLayerMax) {
  LayerCalibration c(0, 4);
  c.w13_input_amax = {1.5f, 0.0f, 4.0f, 0.0f};
  c.w2_input_amax = {9.0f, 0.0f, 2.0f, 0.0f};
  c.observed_rows = {3, 0, 1, 0};
  const ExpertInputAmax r = resolve_expert_input_amax(c);
  EXPECT_EQ(r.w13, (std::vector<float>{1.5f, 4.0f, 4.0f, 4.0f}));
  EXPECT_EQ(r.w2, (std::vector<float>{9.0f, 9.0f, 2.0f, 9.0f}));
  EXPECT_EQ(r.filled, (std::vector<int64_t>{1, 3}));
}

TEST(StarvedExperts, BelowTheThreshold) {
  LayerCalibration c(0, 5);
  c.observed_rows = {0, 7, 8, 100, 3};
  c.routed_tokens = {50, 50, 50, 50, 50};  // routing alone does not calibrate an expert
  EXPECT_EQ(starved_experts(c, 8), (std::vector<int64_t>{0, 1, 4}));
  EXPECT_EQ(starved_experts(c, 1), (std::vector<int64_t>{0}));
  EXPECT_TRUE(starved_experts(c, 0).empty());
}

}  // namespace
}  // namespace m2fp4
