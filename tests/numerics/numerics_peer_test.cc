// Independent peer check: the same float32 inputs converted by ml_dtypes / numpy (PyPI) and by
// src/numerics, code for code. Inputs: uniformly random bit patterns, Gaussians at several scales,
// and the edge values of each format (grid points, midpoints and their float32 neighbours).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "numerics/bf16.h"
#include "numerics/e2m1.h"
#include "numerics/e8m0.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"
#include "support/python_peer.h"

namespace m2fp4 {
namespace {

constexpr const char* kPeerScript = R"PY(
import sys
import numpy as np
import ml_dtypes

x = np.fromfile(sys.argv[1], dtype=np.float32)
out = sys.argv[2]
with np.errstate(all="ignore"):
    x.astype(ml_dtypes.bfloat16).view(np.uint16).tofile(out + ".bf16")
    x.astype(np.float16).view(np.uint16).tofile(out + ".f16")
    x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8).tofile(out + ".e4m3")
    x.astype(ml_dtypes.float4_e2m1fn).view(np.uint8).tofile(out + ".e2m1")
    x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8).tofile(out + ".e8m0")
)PY";

void add_neighbourhood(std::vector<float>& v, float x) {
  for (float s : {1.0f, -1.0f}) {
    v.push_back(s * x);
    v.push_back(s * std::nextafter(x, 0.0f));
    v.push_back(s * std::nextafter(x, INFINITY));
  }
}

std::vector<float> peer_inputs() {
  std::vector<float> v;
  std::mt19937_64 rng(20260807);
  for (int i = 0; i < 1 << 20; ++i) v.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float scale : {1e-6f, 1e-3f, 0.02f, 1.0f, 3.0f, 100.0f, 1e4f}) {
    for (int i = 0; i < 1 << 17; ++i) v.push_back(scale * normal(rng));
  }
  // E4M3 grid points and midpoints (the top midpoint is 464, past it 480).
  for (int c = 0; c < 0x7F; ++c) {
    const float value = e4m3_to_f32(static_cast<uint8_t>(c));
    const float next = c < 0x7E ? e4m3_to_f32(static_cast<uint8_t>(c + 1)) : 480.0f;
    add_neighbourhood(v, value);
    add_neighbourhood(v, (value + next) / 2);
  }
  // E2M1 grid points and midpoints.
  for (float x : {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f, 2.0f, 2.5f, 3.0f, 3.5f, 4.0f,
                  5.0f, 6.0f, 7.0f, 8.0f}) {
    add_neighbourhood(v, x);
  }
  // Powers of two and the 1.5x ties between them (E8M0), over the whole exponent range.
  for (int e = -126; e <= 127; ++e) {
    add_neighbourhood(v, std::ldexp(1.0f, e));
    add_neighbourhood(v, std::ldexp(1.5f, e));
  }
  // F16 / BF16 extremes.
  for (float x : {65504.0f, 65520.0f, 65536.0f, std::ldexp(1.0f, -14), std::ldexp(1.0f, -24),
                  std::ldexp(1.0f, -25), 3.3895314e38f, 3.4028235e38f, INFINITY}) {
    add_neighbourhood(v, x);
  }
  return v;
}

bool is_f32_subnormal(float x) {
  return x != 0.0f && std::fabs(x) < std::ldexp(1.0f, -126);
}

TEST(NumericsPeer, MatchesMlDtypesCodeForCode) {
  if (!testing::python_available()) GTEST_SKIP() << "M2FP4_PYTHON not found: " << M2FP4_PYTHON;
  testing::TempDir dir;
  const std::vector<float> x = peer_inputs();
  testing::write_binary(dir.file("x.f32"), x);
  const auto run =
      testing::run_python_script(dir, kPeerScript, {dir.file("x.f32"), dir.file("out")});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto bf16 = testing::read_binary<uint16_t>(dir.file("out.bf16"));
  const auto f16 = testing::read_binary<uint16_t>(dir.file("out.f16"));
  const auto e4m3 = testing::read_binary<uint8_t>(dir.file("out.e4m3"));
  const auto e2m1 = testing::read_binary<uint8_t>(dir.file("out.e2m1"));
  const auto e8m0 = testing::read_binary<uint8_t>(dir.file("out.e8m0"));
  ASSERT_EQ(bf16.size(), x.size());
  ASSERT_EQ(f16.size(), x.size());
  ASSERT_EQ(e4m3.size(), x.size());
  ASSERT_EQ(e2m1.size(), x.size());
  ASSERT_EQ(e8m0.size(), x.size());

  int failures = 0;
  auto report = [&](const char* format, size_t i, int got, int want) {
    if (++failures <= 20) {
      ADD_FAILURE() << format << " x=" << x[i] << " (bits " << std::hex
                    << std::bit_cast<uint32_t>(x[i]) << ") got " << got << " want " << want;
    }
  };
  size_t compared_e8m0 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float xi = x[i];
    if (std::isnan(xi)) {
      if (!std::isnan(bf16_to_f32(f32_to_bf16(xi))) || !std::isnan(bf16_to_f32(bf16[i]))) {
        report("bf16 nan", i, f32_to_bf16(xi), bf16[i]);
      }
      if ((f32_to_e4m3(xi, Fp8Overflow::kNan) & 0x7F) != 0x7F || (e4m3[i] & 0x7F) != 0x7F) {
        report("e4m3 nan", i, f32_to_e4m3(xi, Fp8Overflow::kNan), e4m3[i]);
      }
      continue;
    }
    if (f32_to_bf16(xi) != bf16[i]) report("bf16", i, f32_to_bf16(xi), bf16[i]);
    if (f32_to_f16(xi) != f16[i]) report("f16", i, f32_to_f16(xi), f16[i]);
    // ml_dtypes' float8_e4m3fn cast is the non-saturating one (like torch): compare that mode.
    if (f32_to_e4m3(xi, Fp8Overflow::kNan) != e4m3[i]) {
      report("e4m3", i, f32_to_e4m3(xi, Fp8Overflow::kNan), e4m3[i]);
    }
    // ml_dtypes keeps the sign of -0.0 (code 8); §1.1's producers give code 0 for it.
    const uint8_t want_e2m1 = (xi == 0.0f) ? 0 : e2m1[i];
    if (f32_to_e2m1(xi) != want_e2m1) report("e2m1", i, f32_to_e2m1(xi), want_e2m1);
    // For float32 subnormal inputs ml_dtypes' e8m0 rounding differs (see e8m0.h); skip those.
    if (!is_f32_subnormal(xi)) {
      ++compared_e8m0;
      if (f32_to_e8m0_nearest(xi) != e8m0[i]) report("e8m0", i, f32_to_e8m0_nearest(xi), e8m0[i]);
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(compared_e8m0, x.size() * 9 / 10);
}

// The satfinite mode is not in ml_dtypes; it must agree with the torch-style mode wherever that
// one is not NaN, and give +-448 exactly where the torch-style cast overflows.
TEST(NumericsPeer, E4m3SatfiniteDiffersFromTorchCastOnlyOnOverflow) {
  for (float x : peer_inputs()) {
    if (std::isnan(x)) continue;
    const uint8_t torch_cast = f32_to_e4m3(x, Fp8Overflow::kNan);
    const uint8_t sat = f32_to_e4m3(x, Fp8Overflow::kSaturate);
    if ((torch_cast & 0x7F) == 0x7F) {
      ASSERT_EQ(sat, (std::signbit(x) ? 0x80 : 0) | 0x7E) << x;
      ASSERT_GT(std::fabs(x), 464.0f);
    } else {
      ASSERT_EQ(sat, torch_cast) << x;
    }
  }
}

}  // namespace
}  // namespace m2fp4
