#include "engine/quantize_overlap.h"

#include <utility>

#include "base/thread_pool.h"
#include "base/timer.h"

namespace m2fp4 {
namespace {

// Unwinds a layer's export when the run stops before its statistics come.
struct Abandoned {};

}  // namespace

LayerExportThread::LayerExportThread(int threads, int64_t first_layer, int64_t end_layer, Work work)
    : work_(std::move(work)),
      next_push_(first_layer),
      thread_([this, threads, first_layer, end_layer] { loop(threads, first_layer, end_layer); }) {}

LayerExportThread::~LayerExportThread() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LayerExportThread::push(LayerCalibration stats) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    const int64_t layer = next_push_++;
    stats_.emplace(layer, std::move(stats));
  }
  changed_.notify_all();
}

void LayerExportThread::finish() {
  Timer waited;
  if (thread_.joinable()) thread_.join();
  waited_seconds_ = waited.seconds();
  if (error_) std::rethrow_exception(error_);
}

void LayerExportThread::loop(int threads, int64_t first_layer, int64_t end_layer) {
  ThreadPool pool(threads);
  const ScopedDefaultPool scope(pool);
  const double cpu_start = thread_cpu_seconds();
  const Stopping stopping = [this] { return stopping_.load(std::memory_order_relaxed); };
  for (int64_t layer = first_layer; layer < end_layer; ++layer) {
    double stats_wait = 0.0;
    const Statistics statistics = [&]() -> const LayerCalibration& {
      Timer wait;
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || stats_.count(layer) != 0; });
      stats_wait += wait.seconds();
      if (stats_.count(layer) == 0) throw Abandoned{};
      return stats_.at(layer);  // std::map: later pushes leave it in place
    };
    Timer busy;
    bool failed = false;
    try {
      work_(layer, statistics, stopping);
    } catch (const Abandoned&) {
      failed = true;
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      failed = true;
    }
    busy_seconds_ += busy.seconds() - stats_wait;
    if (failed) break;
    const std::lock_guard<std::mutex> lock(mutex_);
    stats_.erase(layer);
    if (stop_) break;
  }
  cpu_seconds_ = thread_cpu_seconds() - cpu_start + pool.workers_cpu_seconds();
}

}  // namespace m2fp4
