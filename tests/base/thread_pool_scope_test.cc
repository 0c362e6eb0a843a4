// ScopedDefaultPool: default_pool() on the thread that holds one is that pool, on other threads
// the process-wide pool; workers_cpu_seconds() counts the CPU time of the pool's own workers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "base/thread_pool.h"

namespace m2fp4 {
namespace {

TEST(ScopedDefaultPool, OverridesTheDefaultPoolOnItsThreadOnly) {
  ThreadPool& global = default_pool();
  ThreadPool own(2);
  ThreadPool* seen_elsewhere = nullptr;
  {
    const ScopedDefaultPool scope(own);
    EXPECT_EQ(&default_pool(), &own);
    std::thread other([&] { seen_elsewhere = &default_pool(); });
    other.join();
    {
      ThreadPool inner(1);
      const ScopedDefaultPool nested(inner);
      EXPECT_EQ(&default_pool(), &inner);
    }
    EXPECT_EQ(&default_pool(), &own);  // the nested scope restores the outer one
  }
  EXPECT_EQ(seen_elsewhere, &global);
  EXPECT_EQ(&default_pool(), &global);
}

TEST(ThreadPool, WorkersCpuSecondsCountsWorkDoneByWorkers) {
  ThreadPool pool(2);
  const double before = pool.workers_cpu_seconds();
  // Both tasks wait until both have started, so the caller (thread 0) holds one and the worker
  // the other; the worker then burns ~50 ms of its own CPU time while the caller waits.
  std::atomic<int> started{0};
  std::atomic<bool> worker_burnt{false};
  pool.run(2, [&](int64_t, int thread) {
    started.fetch_add(1);
    while (started.load() < 2) {
    }
    if (thread == 0) return;
    const double start = thread_cpu_seconds();
    while (thread_cpu_seconds() - start < 0.05) {
    }
    worker_burnt = true;
  });
  ASSERT_TRUE(worker_burnt);
  EXPECT_GE(pool.workers_cpu_seconds() - before, 0.045);
}

}  // namespace
}  // namespace m2fp4
