// Bit-exact comparison of src/quant against tests/quant/quant_reference.py, an independent
// numpy + ml_dtypes implementation of quant-formats.md §2.2, §2.7, §3 and §5: codes, scales and
// global scales byte for byte on Gaussian, heavy-tailed, bf16-rounded, wide-range and
// hand-built edge matrices (odd row counts, zero / tiny / tie blocks).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "numerics/bf16.h"
#include "quant/fp8.h"
#include "quant/iq4nl16.h"
#include "quant/matrix.h"
#include "quant/mxfp4.h"
#include "quant/nvfp4.h"
#include "support/python_peer.h"

namespace m2fp4 {
namespace {

struct Case {
  Case(std::string case_name, int64_t n_rows, int64_t n_cols)
      : name(std::move(case_name)), rows(n_rows), cols(n_cols) {}

  std::string name;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;
  bool bf16_source = false;  // hand the C++ side bf16 bits (values are bf16-exact)
  std::vector<uint16_t> bits;

  ConstMatrix matrix() const {
    return bf16_source ? ConstMatrix::bf16(bits, rows, cols) : ConstMatrix::f32(values, rows, cols);
  }
  float amax() const {
    float a = 0;
    for (float v : values) a = std::max(a, std::fabs(v));
    return a;
  }
};

Case gaussian_case(const std::string& name, int64_t rows, int64_t cols, float sigma,
                   uint64_t seed) {
  Case c{name, rows, cols};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  for (int64_t i = 0; i < rows * cols; ++i) c.values.push_back(normal(rng));
  return c;
}

Case heavy_tailed_case() {
  Case c{"heavy", 23, 512};
  std::mt19937_64 rng(7);
  std::student_t_distribution<float> t(2.0f);
  for (int64_t i = 0; i < c.rows * c.cols; ++i) c.values.push_back(0.01f * t(rng));
  return c;
}

Case bf16_case() {
  Case c = gaussian_case("bf16", 41, 384, 0.03f, 11);
  c.bf16_source = true;
  for (float& v : c.values) {
    c.bits.push_back(f32_to_bf16(v));
    v = bf16_to_f32(c.bits.back());
  }
  return c;
}

// Rows of very different magnitudes (log-uniform 1e-8 .. 1e4): tiny E4M3 block scales, fp16
// subnormal IQ4 scales, MX exponents over a wide range.
Case wide_range_case() {
  Case c{"wide", 15, 256};
  std::mt19937_64 rng(13);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-8.0f, 4.0f);
  for (int64_t r = 0; r < c.rows; ++r) {
    const float scale = std::pow(10.0f, log_scale(rng));
    for (int64_t i = 0; i < c.cols; ++i) c.values.push_back(scale * normal(rng));
  }
  return c;
}

// Hand-built blocks: zeros, signed zeros, the §2.8 block, E2M1 ties relative to the block max,
// a lone element, tiny blocks next to big ones.
Case edge_case() {
  Case c{"edge", 9, 128};
  c.values.assign(static_cast<size_t>(c.rows * c.cols), 0.0f);
  auto at = [&](int64_t r, int64_t col) -> float& {
    return c.values[static_cast<size_t>(r * c.cols + col)];
  };
  const float worked[16] = {0, .25f, .75f, 1.25f, 1.75f,  2.5f,  3.5f, 5,
                            6, 6,    -.3f, -.1f,  -1.75f, -5.5f, .5f,  4};
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // row 0 stays all zero.
  for (int i = 0; i < 16; ++i) at(1, 16 + i) = worked[i];
  for (int i = 0; i < 16; ++i) at(1, 32 + i) = 1e-9f * normal(rng);
  for (int i = 0; i < 16; ++i) at(1, 48 + i) = 0.01f * worked[i];
  at(1, 64 + 5) = -3.0f;  // a lone element
  for (int i = 0; i < 16; ++i) at(1, 80 + i) = -0.001f * static_cast<float>(i + 1);
  for (int i = 0; i < 16; ++i) at(1, 96 + i) = (i % 2) ? -0.0f : 0.0f;
  at(1, 96 + 7) = 1.0f;
  for (int i = 0; i < 16; ++i) at(1, 112 + i) = 1000.0f * normal(rng);
  // rows 2..8: the worked block and its ties at many scales (incl. MX-style 32-blocks).
  for (int64_t r = 2; r < c.rows; ++r) {
    const float scale = std::ldexp(1.0f, static_cast<int>(3 * r - 14));
    for (int64_t col = 0; col < c.cols; ++col) {
      at(r, col) = scale * ((col / 16) % 2 ? worked[col % 16] : normal(rng));
    }
  }
  return c;
}

std::string hex_bits(float x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", std::bit_cast<uint32_t>(x));
  return buf;
}

template <typename T>
void expect_equal(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t mismatches = 0;
  size_t first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && mismatches++ == 0) first = i;
  }
  EXPECT_EQ(mismatches, 0u) << what << ": " << mismatches << " of " << got.size()
                            << " differ, first at " << first << " (got " << +got[first] << ", want "
                            << +want[first] << ")";
}

std::vector<uint32_t> float_bits(const std::vector<float>& v) {
  std::vector<uint32_t> bits;
  for (float x : v) bits.push_back(std::bit_cast<uint32_t>(x));
  return bits;
}

class QuantReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::python_available()) return;
    dir_ = std::make_unique<testing::TempDir>();
    cases_ = {gaussian_case("gauss", 37, 320, 0.02f, 5), heavy_tailed_case(), bf16_case(),
              wide_range_case(), edge_case()};
    std::mt19937_64 rng(23);
    std::uniform_real_distribution<float> importance(0.1f, 2.0f);
    std::string jobs;
    for (const Case& c : cases_) {
      const std::string input = dir_->file(c.name + ".f32");
      testing::write_binary(input, c.values);
      std::vector<float>& imp = importance_[c.name];
      for (int64_t i = 0; i < c.cols; ++i) imp.push_back(importance(rng));
      testing::write_binary(dir_->file(c.name + ".importance"), imp);
      const std::string head = input + " " + std::to_string(c.rows) + " " + std::to_string(c.cols) +
                               " " + dir_->file(c.name) + ".";
      const float amax = c.amax();
      const float fused = amax * 1.7f;
      jobs += "nvfp4-modelopt " + head + "mo amax=" + hex_bits(amax) + "\n";
      jobs += "nvfp4-modelopt " + head + "mo_noclamp amax=" + hex_bits(amax) + " clamp=0\n";
      jobs += "nvfp4-modelopt " + head + "mo_fused amax=" + hex_bits(fused) + "\n";
      jobs += "nvfp4-ct " + head + "ct amax=" + hex_bits(amax) + " work=bf16\n";
      jobs += "nvfp4-ct " + head + "ct_f32 amax=" + hex_bits(amax) + " work=f32\n";
      jobs += "nvfp4-ct " + head + "ct_fused amax=" + hex_bits(fused) + " work=bf16\n";
      jobs += "nvfp4-act " + head + "act global=" + hex_bits(2688.0f / amax) + "\n";
      jobs += "nvfp4-act " + head + "act_sat global=" + hex_bits(2688.0f / (0.25f * amax)) + "\n";
      for (const char* rule : {"ocp", "llamacpp", "ct", "modelopt"}) {
        jobs += std::string("mxfp4-") + rule + " " + head + "mx_" + rule + "\n";
      }
      jobs += "iq4nl16 " + head + "iq4\n";
      jobs += "iq4nl16 " + head + "iq4_recip reciprocal=1\n";
      jobs += "iq4nl16 " + head + "iq4_imp importance=" + dir_->file(c.name + ".importance") + "\n";
      jobs += "fp8 " + head + "fp8_block block_rows=128 block_cols=128\n";
      jobs +=
          "fp8 " + head + "fp8_channel block_rows=1 block_cols=" + std::to_string(c.cols) + "\n";
      jobs += "fp8 " + head + "fp8_tensor block_rows=" + std::to_string(c.rows) +
              " block_cols=" + std::to_string(c.cols) + "\n";
    }
    std::FILE* f = std::fopen(dir_->file("jobs.txt").c_str(), "w");
    std::fputs(jobs.c_str(), f);
    std::fclose(f);
    const auto run = testing::run_python(
        *dir_, {std::string(M2FP4_SOURCE_DIR) + "/tests/quant/quant_reference.py", "jobs",
                dir_->file("jobs.txt")});
    python_ok_ = run.exit_code == 0;
    python_output_ = run.output;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    if (!testing::python_available()) GTEST_SKIP() << "M2FP4_PYTHON not found: " << M2FP4_PYTHON;
    ASSERT_TRUE(python_ok_) << python_output_;
  }

  template <typename T>
  static std::vector<T> ref(const Case& c, const std::string& job, const std::string& name) {
    return testing::read_binary<T>(dir_->file(c.name) + "." + job + "." + name);
  }

  static inline std::unique_ptr<testing::TempDir> dir_;
  static inline std::vector<Case> cases_;
  static inline std::map<std::string, std::vector<float>> importance_;
  static inline bool python_ok_ = false;
  static inline std::string python_output_;
};

TEST_F(QuantReference, Nvfp4WeightsBothConventions) {
  struct Job {
    const char* name;
    Nvfp4Options options;
    float amax_factor;
  };
  Nvfp4Options mo;
  Nvfp4Options mo_noclamp;
  mo_noclamp.modelopt_clamp_block_scale = false;
  Nvfp4Options ct;
  ct.convention = Nvfp4Convention::kCompressedTensors;
  Nvfp4Options ct_f32 = ct;
  ct_f32.ct_work_dtype = WorkDtype::kF32;
  for (const Case& c : cases_) {
    for (const Job& job :
         {Job{"mo", mo, 1.0f}, Job{"mo_noclamp", mo_noclamp, 1.0f}, Job{"mo_fused", mo, 1.7f},
          Job{"ct", ct, 1.0f}, Job{"ct_f32", ct_f32, 1.0f}, Job{"ct_fused", ct, 1.7f}}) {
      SCOPED_TRACE(c.name + " " + job.name);
      const float amax = job.amax_factor == 1.0f ? c.amax() : c.amax() * job.amax_factor;
      const Nvfp4Tensor t = nvfp4_quantize_weight(c.matrix(), amax, job.options);
      expect_equal("packed", t.packed, ref<uint8_t>(c, job.name, "packed"));
      expect_equal("scales", t.block_scales, ref<uint8_t>(c, job.name, "scales"));
      expect_equal("global", float_bits({t.global_scale}),
                   float_bits(ref<float>(c, job.name, "global")));
      expect_equal("dequant", float_bits(nvfp4_dequantize(t)),
                   float_bits(ref<float>(c, job.name, "dequant")));
    }
  }
}

TEST_F(QuantReference, Nvfp4Activations) {
  for (const Case& c : cases_) {
    for (const auto& [job, global] : {std::pair{"act", 2688.0f / c.amax()},
                                      std::pair{"act_sat", 2688.0f / (0.25f * c.amax())}}) {
      SCOPED_TRACE(c.name + " " + job);
      const Nvfp4Activation a = nvfp4_quantize_activation(c.matrix(), global);
      expect_equal("packed", a.packed, ref<uint8_t>(c, job, "packed"));
      expect_equal("scales", a.block_scales, ref<uint8_t>(c, job, "scales"));
    }
  }
}

TEST_F(QuantReference, Mxfp4AllRules) {
  const std::pair<const char*, Mxfp4Rule> rules[] = {{"ocp", Mxfp4Rule::kOcp},
                                                     {"llamacpp", Mxfp4Rule::kLlamaCpp},
                                                     {"ct", Mxfp4Rule::kCompressedTensors},
                                                     {"modelopt", Mxfp4Rule::kModelopt}};
  for (const Case& c : cases_) {
    for (const auto& [name, rule] : rules) {
      SCOPED_TRACE(c.name + " " + name);
      const Mxfp4Tensor t = mxfp4_quantize(c.matrix(), rule);
      const std::string job = std::string("mx_") + name;
      expect_equal("packed", t.packed, ref<uint8_t>(c, job, "packed"));
      expect_equal("scales", t.scales, ref<uint8_t>(c, job, "scales"));
    }
  }
}

TEST_F(QuantReference, Iq4nl16) {
  for (const Case& c : cases_) {
    Iq4nl16Options plain;
    Iq4nl16Options recip;
    recip.multiply_by_reciprocal = true;
    Iq4nl16Options imp;
    imp.importance = importance_[c.name].data();
    for (const auto& [job, options] :
         {std::pair{"iq4", plain}, std::pair{"iq4_recip", recip}, std::pair{"iq4_imp", imp}}) {
      SCOPED_TRACE(c.name + " " + job);
      const Iq4nl16Tensor t = iq4nl16_quantize(c.matrix(), options);
      expect_equal("packed", t.packed, ref<uint8_t>(c, job, "packed"));
      expect_equal("scales", t.scales, ref<uint16_t>(c, job, "scales"));
    }
  }
}

TEST_F(QuantReference, Fp8Granularities) {
  for (const Case& c : cases_) {
    Fp8Options block;
    Fp8Options channel;
    channel.granularity = Fp8Granularity::kPerChannel;
    Fp8Options tensor;
    tensor.granularity = Fp8Granularity::kPerTensor;
    for (const auto& [job, options] :
         {std::pair{"fp8_block", block}, std::pair{"fp8_channel", channel},
          std::pair{"fp8_tensor", tensor}}) {
      SCOPED_TRACE(c.name + " " + job);
      const Fp8Tensor t = fp8_quantize(c.matrix(), options);
      expect_equal("codes", t.codes, ref<uint8_t>(c, job, "codes"));
      expect_equal("scales", float_bits(t.scales), float_bits(ref<float>(c, job, "scales")));
      expect_equal("dequant_bf16", fp8_dequantize_bf16(t), ref<uint16_t>(c, job, "dequant_bf16"));
    }
  }
}

TEST(QuantReferenceSelfTest, WorkedExamplesOfTheSpec) {
  if (!testing::python_available()) GTEST_SKIP() << "M2FP4_PYTHON not found: " << M2FP4_PYTHON;
  testing::TempDir dir;
  const auto run = testing::run_python(
      dir, {std::string(M2FP4_SOURCE_DIR) + "/tests/quant/quant_reference.py", "selftest"});
  EXPECT_EQ(run.exit_code, 0) << run.output;
}

}  // namespace
}  // namespace m2fp4
