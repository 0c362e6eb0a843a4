// A persistent thread pool for data-parallel kernels.
//
// Decode at small sizes is overhead-bound (performance.md: llama.cpp loses ~13% to barriers), so
// workers spin briefly before sleeping and a parallel region costs one atomic round trip, not a
// thread launch. The calling thread takes part as thread 0.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
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

  // Runs fn(task, thread) for every task in [0, n_tasks), tasks handed out dynamically; returns
  // when all are done. thread is in [0, size()). Not reentrant: do not call run() from fn.
  void run(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items, about one per thread
  // (static split: each thread streams a disjoint range, good for weight rows).
  void parallel_for(int64_t n, int64_t grain,
                    const std::function<void(int64_t begin, int64_t end, int thread)>& fn);

 private:
  void worker_loop(int thread);
  void work(int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> pending_workers_{0};
  std::atomic<bool> stop_{false};
  int64_t n_tasks_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
};

// A process-wide default pool, sized by set_default_threads() (or hardware concurrency).
ThreadPool& default_pool();
void set_default_threads(int n_threads);

}  // namespace m2fp4
