#include "base/thread_pool.h"

#include <algorithm>
#include <memory>
#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define M2FP4_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define M2FP4_PAUSE() asm volatile("yield")
#else
#define M2FP4_PAUSE() \
  do {                \
  } while (0)
#endif

namespace m2fp4 {
namespace {
// Spin iterations before a worker sleeps: ~tens of microseconds, enough to bridge the gap
// between consecutive kernels of one forward pass.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0)
    n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work(int thread) {
  for (;;) {
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) break;
    (*fn_)(task, thread);
  }
}

void ThreadPool::worker_loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < kSpinIterations; ++i) {
      M2FP4_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    while (gen == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    work(thread);
    if (pending_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      pending_workers_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  fn_ = &fn;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  work(0);
  int pending = pending_workers_.load(std::memory_order_acquire);
  for (int i = 0; pending != 0 && i < kSpinIterations; ++i) {
    M2FP4_PAUSE();
    pending = pending_workers_.load(std::memory_order_acquire);
  }
  while (pending != 0) {
    pending_workers_.wait(pending, std::memory_order_acquire);
    pending = pending_workers_.load(std::memory_order_acquire);
  }
  fn_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Floor, so that every chunk really holds at least `grain` items.
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  const int64_t chunks = std::min<int64_t>(n_threads_, max_chunks);
  if (chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  run(chunks, [&](int64_t c, int thread) {
    const int64_t begin = n * c / chunks;
    const int64_t end = n * (c + 1) / chunks;
    fn(begin, end, thread);
  });
}

namespace {
std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
int g_default_threads = 0;
}  // namespace

ThreadPool& default_pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_unique<ThreadPool>(g_default_threads);
  return *g_pool;
}

void set_default_threads(int n_threads) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool && g_pool->size() == (n_threads <= 0 ? g_pool->size() : n_threads) && n_threads > 0) {
    return;
  }
  g_default_threads = n_threads;
  g_pool.reset();
}

}  // namespace m2fp4
