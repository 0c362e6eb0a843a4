// Thread pool: run() and parallel_for() hand out every item exactly once, for many sizes and
// thread counts, and back-to-back regions do not interfere.
#include "base/thread_pool.h"

#include "base/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace m2fp4 {
namespace {

TEST(ThreadPool, RunCoversEveryTaskOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<bool> bad_thread{false};
      pool.run(n, [&](int64_t task, int thread) {
        if (thread < 0 || thread >= threads) bad_thread = true;
        hits[task].fetch_add(1);
      });
      EXPECT_FALSE(bad_thread);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeWithDisjointChunks) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 17, 100, 4097}) {
      for (int64_t grain : {0, 1, 3, 16, 1000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> chunks{0};
        std::atomic<bool> bad{false};
        pool.parallel_for(n, grain, [&](int64_t begin, int64_t end, int thread) {
          if (begin >= end || thread < 0 || thread >= threads) bad = true;
          // Chunks are at least `grain` long unless the whole range is shorter.
          if (end - begin < std::min<int64_t>(std::max<int64_t>(grain, 1), n)) bad = true;
          chunks.fetch_add(1);
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        EXPECT_FALSE(bad) << "n=" << n << " grain=" << grain;
        EXPECT_LE(chunks.load(), threads);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << "threads=" << threads << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(ThreadPool, ManyBackToBackRegions) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int rep = 0; rep < 20000; ++rep) {
    pool.parallel_for(6, 1, [&](int64_t b, int64_t e, int) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 6 * 20000);
}

TEST(ThreadPool, RegionsLargerThanOneClaimWordAreSplitCorrectly) {
  ThreadPool pool(2);
  const int64_t n = (int64_t{1} << 21) + 12345;  // > 2^20 tasks: runs as several regions
  std::vector<std::atomic<uint8_t>> hits(n);
  pool.run(n, [&](int64_t task, int) { hits[task].fetch_add(1, std::memory_order_relaxed); });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "i=" << i;
}

TEST(ThreadPool, WorkersTakePartInSlowRegions) {
  // Tasks of 2 ms leave every worker time to wake up and claim some.
  ThreadPool pool(2);
  std::atomic<int> by_thread[2] = {0, 0};
  pool.run(8, [&](int64_t, int thread) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    by_thread[thread].fetch_add(1);
  });
  EXPECT_EQ(by_thread[0] + by_thread[1], 8);
  EXPECT_GT(by_thread[1].load(), 0);
}

TEST(ThreadPool, ManyRegionsWithRealWorkAndMoreThreadsThanCores) {
  // Oversubscribed pools must stay correct and not stall (each region waits only for tasks
  // already claimed).
  for (int threads : {2, 5}) {
    ThreadPool pool(threads);
    std::vector<double> sums(threads * 8);
    for (int rep = 0; rep < 2000; ++rep) {
      std::vector<std::atomic<int>> hits(37);
      pool.parallel_for(37, 1, [&](int64_t b, int64_t e, int thread) {
        double acc = 0;
        for (int i = 0; i < 2000; ++i) acc += i * 1e-9;
        sums[thread * 8] += acc;
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, DefaultPoolResizes) {
  set_default_threads(2);
  EXPECT_EQ(default_pool().size(), 2);
  set_default_threads(3);
  EXPECT_EQ(default_pool().size(), 3);
  set_default_threads(1);
  EXPECT_EQ(default_pool().size(), 1);
}

}  // namespace
}  // namespace m2fp4

namespace m2fp4 {
namespace {

TEST(ThreadPoolErrors, TaskExceptionIsRethrownAndPoolStaysUsable) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::atomic<int> ran{0};
    EXPECT_THROW(pool.run(64,
                          [&](int64_t task, int) {
                            ran.fetch_add(1);
                            if (task == 37) throw Error("task 37 failed");
                          }),
                 Error);
    EXPECT_EQ(ran.load(), 64);  // the region still completes
    std::atomic<int64_t> sum{0};
    pool.run(100, [&](int64_t task, int) { sum.fetch_add(task); });
    EXPECT_EQ(sum.load(), 4950);
  }
}

}  // namespace
}  // namespace m2fp4
