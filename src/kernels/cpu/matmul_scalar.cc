// Scalar reference matmul: decodes every weight element exactly to f32 and accumulates in f32,
// one token and one row at a time. The fast kernels are tested against this.
#include <cstdint>

#include "base/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_check.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

namespace m2fp4::scalar {
namespace {

float decode_weight(const Weight& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.format) {
    case WeightFormat::kF32:
      return static_cast<const float*>(w.data)[i];
    case WeightFormat::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightFormat::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightFormat::kFp8Block128:
      return e4m3_to_f32(static_cast<const uint8_t*>(w.data)[i]) *
             w.block_scale[(r / 128) * w.scale_cols + c / 128];
  }
  return 0.0f;
}

}  // namespace

void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  check_matmul_args(w, x, n_tokens, y);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += decode_weight(w, r, c) * xt[c];
      y[t * w.rows + r] = acc;
    }
  }
}

void matmul_batch(const MatmulJob* jobs, int64_t n_jobs) {
  M2_CHECK(n_jobs >= 0 && (jobs != nullptr || n_jobs == 0), "matmul_batch: bad job list");
  for (int64_t i = 0; i < n_jobs; ++i) {
    M2_CHECK(jobs[i].w != nullptr, "matmul_batch: job ", i, " has no weight");
    matmul(*jobs[i].w, jobs[i].x, jobs[i].n_tokens, jobs[i].y);
  }
}

}  // namespace m2fp4::scalar
