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

// One matmul of a batch: y = W x for n_tokens tokens, layouts as in matmul().
struct MatmulJob {
  const Weight* w = nullptr;
  const float* x = nullptr;
  int64_t n_tokens = 0;
  float* y = nullptr;
};

// Runs independent matmuls in ONE parallel region (one synchronisation instead of one per
// matmul): the rows of all jobs are split across the pool's threads in contiguous,
// cost-balanced ranges. For q/k/v projections, the w1/w3 of all experts of a layer, then all
// their w2. Outputs must not overlap each other or any input.
void matmul_batch(const MatmulJob* jobs, int64_t n_jobs, ThreadPool& pool);

namespace scalar {
// Plain reference: decode each weight element and accumulate in float32, one thread.
void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y);
void matmul_batch(const MatmulJob* jobs, int64_t n_jobs);
}  // namespace scalar

}  // namespace m2fp4
