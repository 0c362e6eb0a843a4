// A persistent thread pool for data-parallel kernels.
//
// Decode at small sizes is overhead-bound (performance.md: llama.cpp loses ~13% to barriers), so
// workers spin briefly before sleeping and a parallel region costs a few atomic operations, not a
// thread launch. The calling thread takes part as thread 0 and claims tasks like any worker, so a
// worker that is descheduled (shared host, more threads than cores) delays a region only by the
// task it already holds, never by having to wake up and check in.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace m2fp4 {

class ThreadPool {
 public:
  // n_threads counts the caller; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // CPU seconds its worker threads (not the callers of run()) have used so far.
  double workers_cpu_seconds() const;

  // Runs fn(task, thread) for every task in [0, n_tasks), tasks handed out dynamically; returns
  // when all are done. An exception thrown by a task is rethrown here (the first one) after the
  // region completes. thread is in [0, size()). Not reentrant: do not call run() from fn.
  void run(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items, about one per thread
  // (static split: each thread streams a disjoint range, good for weight rows).
  void parallel_for(int64_t n, int64_t grain,
                    const std::function<void(int64_t begin, int64_t end, int thread)>& fn);

 private:
  void worker_loop(int thread);
  // Claims and runs tasks of region `region` until none are left; returns tasks run.
  void work(uint64_t region, int thread);
  void run_region(uint32_t n_tasks, const std::function<void(int64_t, int)>& fn);

  int n_threads_;
  std::vector<std::thread> workers_;
  // Bumped (and notified) to wake workers for a new region or to stop.
  std::atomic<uint32_t> wake_{0};
  // The current region's claim word: region id (high 24 bits), task count (20 bits), next
  // task (20 bits). A worker claims a task only with a compare-exchange that also checks the
  // region id, so a late worker can never claim a task of a region it has not seen.
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> completed_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;  // first exception thrown by a task of the current region
  std::atomic<bool> stop_{false};
  uint64_t region_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
};

// A process-wide default pool, sized by set_default_threads() (or hardware concurrency).
ThreadPool& default_pool();
void set_default_threads(int n_threads);

// While one is alive on a thread, default_pool() called on that thread returns `pool`: code that
// reaches for the default pool (quantizers' parallel_rows) runs on a pool of its own on a thread
// that works alongside the default pool's users.
class ScopedDefaultPool {
 public:
  explicit ScopedDefaultPool(ThreadPool& pool);
  ~ScopedDefaultPool();
  ScopedDefaultPool(const ScopedDefaultPool&) = delete;
  ScopedDefaultPool& operator=(const ScopedDefaultPool&) = delete;

 private:
  ThreadPool* previous_;
};

// CPU seconds the calling thread has used.
double thread_cpu_seconds();

}  // namespace m2fp4
