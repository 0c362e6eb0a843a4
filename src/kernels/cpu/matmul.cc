// Public matmul entry point: validates, then runs the best SIMD target's kernel
// (matmul-inl.cc, compiled once per target by Highway and chosen at runtime).
#include "kernels/cpu/matmul.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul-inl.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.cc"

#if HWY_ONCE
#include <algorithm>
#include <vector>

#include "kernels/cpu/matmul_check.h"

namespace m2fp4 {

HWY_EXPORT(MatmulBatchImpl);

namespace {
// Validates every job; returns the ones with work, zero-filling outputs of zero-width weights.
// The returned list is per thread and reused (no allocation per call).
const std::vector<MatmulJob>& jobs_with_work(const MatmulJob* jobs, int64_t n_jobs) {
  M2_CHECK(n_jobs >= 0 && (jobs != nullptr || n_jobs == 0), "matmul_batch: bad job list");
  thread_local std::vector<MatmulJob> work;
  work.clear();
  for (int64_t i = 0; i < n_jobs; ++i) {
    const MatmulJob& job = jobs[i];
    M2_CHECK(job.w != nullptr, "matmul_batch: job ", i, " has no weight");
    check_matmul_args(*job.w, job.x, job.n_tokens, job.y);
    if (job.w->rows == 0 || job.n_tokens == 0) continue;
    if (job.w->cols == 0) {
      std::fill(job.y, job.y + job.w->rows * job.n_tokens, 0.0f);
      continue;
    }
    work.push_back(job);
  }
  return work;
}
}  // namespace

void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  const MatmulJob job{&w, x, n_tokens, y};
  matmul_batch(&job, 1, pool);
}

void matmul_batch(const MatmulJob* jobs, int64_t n_jobs, ThreadPool& pool) {
  const std::vector<MatmulJob>& work = jobs_with_work(jobs, n_jobs);
  if (work.empty()) return;
  HWY_DYNAMIC_DISPATCH(MatmulBatchImpl)(work.data(), static_cast<int64_t>(work.size()), pool);
}

}  // namespace m2fp4
#endif  // HWY_ONCE
