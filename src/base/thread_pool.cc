#include "base/thread_pool.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <chrono>
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

// How long an idle thread spins before sleeping: enough to bridge the gap between consecutive
// kernels of one forward pass (microseconds), short enough not to burn a core between requests.
constexpr auto kSpinTime = std::chrono::microseconds(200);
// Pauses between clock reads / yields while spinning. Yielding lets a descheduled worker (or
// the thread we wait for) run when there are more runnable threads than cores.
constexpr int kPausesPerCheck = 64;

constexpr int kTaskBits = 20;
constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;
constexpr uint64_t kMaxTasksPerRegion = kTaskMask;  // next may reach n_tasks, so n < 2^20

uint64_t claim_word(uint64_t region, uint64_t n_tasks, uint64_t next) {
  return (region << (2 * kTaskBits)) | (n_tasks << kTaskBits) | next;
}
uint64_t word_region(uint64_t w) {
  return w >> (2 * kTaskBits);
}
uint64_t word_tasks(uint64_t w) {
  return (w >> kTaskBits) & kTaskMask;
}
uint64_t word_next(uint64_t w) {
  return w & kTaskMask;
}

// Spins (pausing, yielding now and then) until pred() or kSpinTime passes; returns pred().
template <class Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < kPausesPerCheck; ++i) {
      if (pred()) return true;
      M2FP4_PAUSE();
    }
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::yield();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0)
    n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  wake_.fetch_add(1);
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work(uint64_t region, int thread) {
  uint64_t word = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (word_region(word) != (region & (~uint64_t{0} >> (2 * kTaskBits))) ||
        word_next(word) >= word_tasks(word)) {
      return;
    }
    if (!claim_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;
    }
    // The claim succeeded for this region, so the region cannot finish (and fn_ cannot change)
    // before this task completes.
    try {
      (*fn_)(static_cast<int64_t>(word_next(word)), thread);
    } catch (...) {
      // The first failure is rethrown by run() on the calling thread; the other tasks still run
      // so the region completes and the pool stays usable.
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    const uint32_t done = completed_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (done == word_tasks(word)) completed_.notify_one();
    word = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int thread) {
  uint32_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return wake_.load(std::memory_order_acquire) != seen; })) {
      wake_.wait(seen, std::memory_order_acquire);
      continue;  // re-check (spurious wake-ups)
    }
    seen = wake_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    // Work on whatever region is current; claims check the region id themselves.
    work(word_region(claim_.load(std::memory_order_acquire)), thread);
  }
}

void ThreadPool::run_region(uint32_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  ++region_;
  const uint64_t region = region_ & (~uint64_t{0} >> (2 * kTaskBits));
  fn_ = &fn;
  completed_.store(0, std::memory_order_relaxed);
  claim_.store(claim_word(region, n_tasks, 0), std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_all();
  work(region, 0);
  // All tasks are claimed; wait for those other threads are still running.
  if (!spin_until([&] { return completed_.load(std::memory_order_acquire) == n_tasks; })) {
    for (uint32_t done = completed_.load(std::memory_order_acquire); done != n_tasks;
         done = completed_.load(std::memory_order_acquire)) {
      completed_.wait(done, std::memory_order_acquire);
    }
  }
  fn_ = nullptr;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error.swap(error_);
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::run(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    // Same contract as a parallel region: every task runs, then the first error is rethrown.
    std::exception_ptr error;
    for (int64_t t = 0; t < n_tasks; ++t) {
      try {
        fn(t, 0);
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
  // Regions hold < 2^20 tasks; larger counts run as consecutive regions.
  for (int64_t base = 0; base < n_tasks; base += kMaxTasksPerRegion - 1) {
    const int64_t count = std::min<int64_t>(kMaxTasksPerRegion - 1, n_tasks - base);
    if (base == 0 && count == n_tasks) {
      run_region(static_cast<uint32_t>(count), fn);
    } else {
      const std::function<void(int64_t, int)> shifted = [&](int64_t t, int thread) {
        fn(base + t, thread);
      };
      run_region(static_cast<uint32_t>(count), shifted);
    }
  }
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

double clock_seconds(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0.0;
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

double ThreadPool::workers_cpu_seconds() const {
  double total = 0.0;
  for (const std::thread& w : workers_) {
    clockid_t clock;
    // const_cast: native_handle() is not const, and only reads the handle here.
    if (pthread_getcpuclockid(const_cast<std::thread&>(w).native_handle(), &clock) == 0) {
      total += clock_seconds(clock);
    }
  }
  return total;
}

double thread_cpu_seconds() {
  return clock_seconds(CLOCK_THREAD_CPUTIME_ID);
}

namespace {
std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
int g_default_threads = 0;
thread_local ThreadPool* t_pool_override = nullptr;
}  // namespace

ScopedDefaultPool::ScopedDefaultPool(ThreadPool& pool) : previous_(t_pool_override) {
  t_pool_override = &pool;
}

ScopedDefaultPool::~ScopedDefaultPool() {
  t_pool_override = previous_;
}

ThreadPool& default_pool() {
  if (t_pool_override != nullptr) return *t_pool_override;
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
