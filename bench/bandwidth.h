// Measured memory bandwidth of this machine: read-only streaming over a buffer far larger than
// the caches, by every thread of the pool at once, each thread reading several independent
// streams (performance.md: it swings 20-80 GB/s from minute to minute on these hosts, so every
// figure is reported next to a fresh measurement).
//
// Why several streams: one sequential stream per thread leaves the memory system idle between
// the hardware prefetcher's requests; llama.cpp's GEMV reads many rows at once and streamed more
// than a one-stream probe reported (issue 10). The buffer is split into chunks handed out
// dynamically, so both threads read until the very end even if one is descheduled for a while,
// and each chunk is read as kStreams interleaved sub-ranges with independent accumulators.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/thread_pool.h"
#include "base/timer.h"

namespace m2fp4::bench {

class BandwidthProbe {
 public:
  static constexpr int kStreams = 8;
  static constexpr size_t kChunkBytes = size_t{8} << 20;

  explicit BandwidthProbe(size_t bytes = size_t{1} << 30)
      : n_chunks_(std::max<size_t>(1, bytes / kChunkBytes)) {
    const size_t total = n_chunks_ * kChunkBytes;
    data_ = static_cast<uint64_t*>(std::aligned_alloc(size_t{2} << 20, total));
    // Huge pages where the host allows them (THP in madvise mode here): fewer TLB misses, so the
    // probe measures the memory, not the page walks.
    madvise(data_, total, MADV_HUGEPAGE);
    const size_t n = total / sizeof(uint64_t);
    for (size_t i = 0; i < n; ++i) data_[i] = i * 0x9E3779B97F4A7C15ull;
  }
  ~BandwidthProbe() { std::free(data_); }
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;

  // Best of `repeats` read passes over the whole buffer, in GB/s (1e9 bytes per second).
  double read_gbps(ThreadPool& pool, int repeats = 3) {
    double best = 0.0;
    std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8);
    for (int r = 0; r < repeats; ++r) {
      Timer t;
      pool.run(static_cast<int64_t>(n_chunks_), [&](int64_t chunk, int th) {
        const uint64_t s = read_chunk(chunk);
        sinks[static_cast<size_t>(th) * 8] += s;
      });
      const double bytes = static_cast<double>(n_chunks_ * kChunkBytes);
      best = std::max(best, bytes / t.seconds() / 1e9);
    }
    sink_ = 0;
    for (uint64_t s : sinks) sink_ ^= s;
    return best;
  }
  uint64_t sink() const { return sink_; }

 private:
  using Vec = uint64_t __attribute__((vector_size(64)));

  // Reads one chunk as kStreams sub-ranges advanced in lockstep: kStreams independent loads in
  // flight per step, summed into two accumulators (few registers: no spills even with SSE2).
  uint64_t read_chunk(int64_t chunk) const {
    const Vec* base = reinterpret_cast<const Vec*>(reinterpret_cast<const char*>(data_) +
                                                   static_cast<size_t>(chunk) * kChunkBytes);
    constexpr size_t kPerStream = kChunkBytes / sizeof(Vec) / kStreams;
    static_assert(kStreams % 2 == 0);
    Vec acc0 = {}, acc1 = {};
    for (size_t i = 0; i < kPerStream; ++i) {
      for (int s = 0; s < kStreams; s += 2) {
        acc0 += base[s * kPerStream + i];
        acc1 += base[(s + 1) * kPerStream + i];
      }
    }
    const Vec total = acc0 + acc1;
    uint64_t out = 0;
    for (int k = 0; k < 8; ++k) out += total[k];
    return out;
  }

  size_t n_chunks_;
  uint64_t* data_;
  uint64_t sink_ = 0;
};

}  // namespace m2fp4::bench
