// Scalar reference matmul: decodes every weight element exactly to f32 and accumulates in f32,
// one token and one row at a time. The fast kernels are tested against this.
#include <cstdint>

#include "base/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_check.h"
#include "kernels/cpu/weight_decode.h"

namespace m2fp4::scalar {

void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  check_matmul_args(w, x, n_tokens, y);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += weight_element(w, r, c) * xt[c];
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
