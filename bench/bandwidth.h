// Measured memory bandwidth of this machine: read-only streaming over a buffer far larger than
// the caches, split across the pool's threads (performance.md: it swings 35-80 GB/s from minute
// to minute on these hosts, so every figure is reported next to a fresh measurement).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/thread_pool.h"
#include "base/timer.h"

namespace m2fp4::bench {

class BandwidthProbe {
 public:
  explicit BandwidthProbe(size_t bytes = size_t{1} << 30) : n_(bytes / sizeof(uint64_t)) {
    data_ = static_cast<uint64_t*>(std::aligned_alloc(64, n_ * sizeof(uint64_t)));
    for (size_t i = 0; i < n_; ++i) data_[i] = i * 0x9E3779B97F4A7C15ull;
  }
  ~BandwidthProbe() { std::free(data_); }
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;

  // Best of `repeats` read passes, in GB/s (1e9 bytes per second).
  double read_gbps(ThreadPool& pool, int repeats = 3) {
    double best = 0.0;
    std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8);
    for (int r = 0; r < repeats; ++r) {
      Timer t;
      pool.parallel_for(static_cast<int64_t>(n_ / 8), 4096, [&](int64_t b, int64_t e, int th) {
        // Two independent 64-byte vector accumulators: bound by loads, not by adds.
        using Vec = uint64_t __attribute__((vector_size(64)));
        Vec acc0 = {}, acc1 = {};
        const Vec* p = reinterpret_cast<const Vec*>(data_) + b;
        int64_t i = 0;
        for (; i + 1 < e - b; i += 2) {
          acc0 += p[i];
          acc1 += p[i + 1];
        }
        if (i < e - b) acc0 += p[i];
        for (int k = 0; k < 8; ++k) sinks[static_cast<size_t>(th) * 8 + k] += acc0[k] + acc1[k];
      });
      best = std::max(best, static_cast<double>(n_ * sizeof(uint64_t)) / t.seconds() / 1e9);
    }
    sink_ = 0;
    for (uint64_t s : sinks) sink_ ^= s;
    return best;
  }
  uint64_t sink() const { return sink_; }

 private:
  size_t n_;
  uint64_t* data_;
  uint64_t sink_ = 0;
};

}  // namespace m2fp4::bench
