// Matrix multiply against a stored-format weight: y[t, r] = sum_c W[r, c] * x[t, c].
// x is [n_tokens, W.cols] f32, y is [n_tokens, W.rows] f32, both row-major and dense.
#pragma once

#include <cstdint>

#include "base/thread_pool.h"
#include "kernels/weight.h"

namespace m2fp4 {

// Fast path: SIMD (runtime-dispatched), split across the pool's threads by weight rows so each
// thread streams a disjoint slice of the weight once for all tokens.
void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

namespace scalar {
// Plain reference: decode each weight element and accumulate in float32, one thread.
void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y);
}  // namespace scalar

}  // namespace m2fp4
