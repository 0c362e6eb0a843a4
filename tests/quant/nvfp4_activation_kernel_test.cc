// The kernels' W4A4 activation emulation (kernels/cpu/nvfp4_activation.h) against the
// quantizer's own NVFP4 activation path (quant/nvfp4.h, §2.7): same block scales and codes, so
// the emulated values e2m1(q) * e4m3(S) / G must agree bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/nvfp4_activation.h"
#include "quant/matrix.h"
#include "quant/nvfp4.h"

namespace m2fp4 {
namespace {

TEST(Nvfp4ActivationKernel, MatchesQuantizerActivationPath) {
  const int64_t rows = 7, cols = 256;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = normal(rng);
  for (size_t i = 0; i < x.size(); i += 29) x[i] *= 1e-5f;
  for (float input_scale : {1.0f / 2688, 4.0f / 2688, 0.02f, 3e-4f}) {
    const float global = nvfp4_activation_global(input_scale, Nvfp4Convention::kModelopt);
    const Nvfp4Activation act = nvfp4_quantize_activation(ConstMatrix::f32(x, rows, cols), global);
    const std::vector<float> unscaled = nvfp4_activation_unscaled(act);
    std::vector<float> out(x.size());
    nvfp4_quantize_activations(x.data(), rows, cols, input_scale, out.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(out[i], unscaled[i] / global) << "input_scale=" << input_scale << " i=" << i;
    }
  }
}

}  // namespace
}  // namespace m2fp4
