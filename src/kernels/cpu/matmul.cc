// Public matmul entry point. Initially forwards to the scalar reference (temporary).
#include "kernels/cpu/matmul.h"

namespace m2fp4 {

void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  (void)pool;
  scalar::matmul(w, x, n_tokens, y);
}

}  // namespace m2fp4
