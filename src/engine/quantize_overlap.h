// Quantize+write of the decoder layers on a thread of its own, alongside their calibration.
// Calibration leaves cores idle between and inside its parallel regions (norms, routing, the
// residual adds, the observers' scans), and the export of a layer leaves them idle while it
// writes; running both at once fills those gaps. Weight-only matrices need no calibration, so a
// layer's export starts as soon as the thread is free, and waits for the layer's statistics only
// where an item needs them (KV scales, input scales). The thread has a pool of its own
// (default_pool() on it is that pool, so the quantizers' parallel_rows stay off the calibration's
// pool) and exports the layers in order, so the output is written in plan order exactly as
// before: the same bytes whatever the interleaving.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "quant/observers.h"

namespace m2fp4 {

class LayerExportThread {
 public:
  // Blocks until the layer's statistics are pushed; returns them.
  using Statistics = std::function<const LayerCalibration&()>;
  // True once the owner stops the export (the run failed): long work may give up.
  using Stopping = std::function<bool()>;
  using Work =
      std::function<void(int64_t layer, const Statistics& statistics, const Stopping& stopping)>;

  // Starts the thread and its pool of `threads` threads (counting itself); it runs
  // work(l, statistics) for l = first_layer .. end_layer - 1 in order.
  LayerExportThread(int threads, int64_t first_layer, int64_t end_layer, Work work);
  // Stops the thread: a layer waiting for statistics that never came is abandoned, and work
  // watching `stopping` gives up (a failed run resumes from the shards on disk).
  ~LayerExportThread();
  LayerExportThread(const LayerExportThread&) = delete;
  LayerExportThread& operator=(const LayerExportThread&) = delete;

  // The statistics of the next calibrated layer (layers in order). Rethrows the first error of
  // the export, which stops at the failing layer.
  void push(LayerCalibration stats);
  // Waits until every layer is exported and stops the thread; rethrows the first error.
  void finish();

  // After finish(): wall seconds the thread spent exporting (not waiting for statistics), of
  // them the seconds finish() waited (the rest ran alongside the caller's calibration), and CPU
  // seconds of the thread and its pool.
  double busy_seconds() const { return busy_seconds_; }
  double waited_seconds() const { return waited_seconds_; }
  double cpu_seconds() const { return cpu_seconds_; }

 private:
  void loop(int threads, int64_t first_layer, int64_t end_layer);

  Work work_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int64_t, LayerCalibration> stats_;  // pushed, by layer
  int64_t next_push_ = 0;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};  // stop_, readable without the mutex
  std::exception_ptr error_;
  double busy_seconds_ = 0.0;
  double waited_seconds_ = 0.0;
  double cpu_seconds_ = 0.0;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace m2fp4
