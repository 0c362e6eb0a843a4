// The int8-activation 4-bit matmul in plain C++ (the twin the fast kernel is tested against), and
// the process-wide FourBitActivations setting.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul4_int8.h"
#include "kernels/cpu/matmul_check.h"
#include "kernels/cpu/weight_decode.h"
#include "numerics/e2m1.h"
#include "numerics/iq4nl.h"

namespace m2fp4 {

namespace {
FourBitActivations initial_four_bit_activations() {
  const char* env = std::getenv("M2FP4_W4_ACTIVATIONS");
  if (env == nullptr || *env == '\0') return FourBitActivations::kInt8;
  return parse_four_bit_activations(env);
}

std::atomic<FourBitActivations>& four_bit_activations_setting() {
  static std::atomic<FourBitActivations> setting{initial_four_bit_activations()};
  return setting;
}
}  // namespace

FourBitActivations parse_four_bit_activations(const char* name) {
  if (std::strcmp(name, "f32") == 0) return FourBitActivations::kF32;
  if (std::strcmp(name, "int8") == 0) return FourBitActivations::kInt8;
  fail("4-bit activations: expected f32 or int8, got '", name, "'");
}

void set_four_bit_activations(FourBitActivations mode) {
  four_bit_activations_setting().store(mode, std::memory_order_relaxed);
}

FourBitActivations four_bit_activations() {
  return four_bit_activations_setting().load(std::memory_order_relaxed);
}

namespace scalar {

void quantize_activations_int8(const float* x, int64_t cols, int8_t* q, float* d) {
  for (int64_t b = 0; b * kInt8ActivationBlock < cols; ++b) {
    const int64_t c0 = b * kInt8ActivationBlock;
    const int64_t c1 = std::min(cols, c0 + kInt8ActivationBlock);
    float amax = 0.0f;
    for (int64_t c = c0; c < c1; ++c) amax = std::fmax(amax, std::fabs(x[c]));
    // fmax drops NaN: a NaN element makes the block non-finite explicitly.
    for (int64_t c = c0; c < c1; ++c) {
      if (std::isnan(x[c])) amax = x[c];
    }
    const float scale = amax / 127.0f;
    d[b] = scale;
    const bool usable = std::isfinite(scale) && scale != 0.0f;
    for (int64_t c = c0; c < c1; ++c) {
      const float v = usable ? std::nearbyint(x[c] / scale) : 0.0f;
      q[c] = static_cast<int8_t>(std::fmin(127.0f, std::fmax(-127.0f, v)));
    }
  }
}

void matmul_four_bit_int8(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  check_matmul_args(w, x, n_tokens, y);
  M2_CHECK(w.format == WeightFormat::kNvfp4 || w.format == WeightFormat::kMxfp4 ||
               w.format == WeightFormat::kIq4nl16,
           "matmul_four_bit_int8: ", weight_format_name(w.format), " is not a 4-bit format");
  if (w.rows == 0 || n_tokens == 0) return;
  M2_CHECK(w.cols == 0 || kInt8ActivationBlock % w.group_size == 0,
           "matmul_four_bit_int8: group size ", w.group_size,
           " does not divide the activation block of ", kInt8ActivationBlock);
  const int64_t cols = w.cols;
  const bool e2m1 = w.format != WeightFormat::kIq4nl16;
  int code_value[16];
  for (int i = 0; i < 16; ++i) {
    code_value[i] = e2m1 ? static_cast<int>(2.0f * kE2m1Values[static_cast<size_t>(i)])
                         : kIq4nlLevels[static_cast<size_t>(i)];
  }
  const float k = e2m1 ? 0.5f : 1.0f;
  const int64_t groups = cols == 0 ? 0 : cols / w.group_size;
  std::vector<int8_t> q(static_cast<size_t>(cols));
  std::vector<float> d(
      static_cast<size_t>((cols + kInt8ActivationBlock - 1) / kInt8ActivationBlock));
  std::vector<float> mult(static_cast<size_t>(groups));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    quantize_activations_int8(xt, cols, q.data(), d.data());
    for (int64_t r = 0; r < w.rows; ++r) {
      bool finite = true;
      for (int64_t g = 0; g < groups; ++g) {
        mult[g] = group_scale_value(w, r, g);
        finite &= std::isfinite(mult[g]);
      }
      float acc = 0.0f;
      if (!finite) {
        for (int64_t c = 0; c < cols; ++c) acc += weight_element(w, r, c) * xt[c];
        y[t * w.rows + r] = acc;
        continue;
      }
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (cols / 2);
      for (int64_t g = 0; g < groups; ++g) {
        int32_t dot = 0;
        for (int64_t c = g * w.group_size; c < (g + 1) * w.group_size; ++c) {
          dot += code_value[packed_nibble(row, c)] * q[c];
        }
        const float block_scale = d[g * w.group_size / kInt8ActivationBlock];
        acc += static_cast<float>(dot) * (mult[g] * block_scale);
      }
      y[t * w.rows + r] = acc * k;
    }
  }
}

}  // namespace scalar
}  // namespace m2fp4
