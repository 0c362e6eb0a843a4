// LayerExportThread: the layers run in order on a thread with its own default pool, a layer's
// work starts before its statistics are pushed and gets exactly the pushed ones, an error stops
// the export and surfaces in push()/finish(), and destroying it abandons a layer still waiting.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "engine/quantize_overlap.h"

namespace m2fp4 {
namespace {

LayerCalibration stats_for(int64_t layer) {
  LayerCalibration s(layer, 4);
  s.tokens = 100 + layer;
  s.k_amax = 0.5f * static_cast<float>(layer + 1);
  return s;
}

// Waits up to 10 s for flag; false if it never came.
bool wait_for(const std::atomic<bool>& flag) {
  for (int i = 0; i < 10000 && !flag; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return flag;
}

TEST(LayerExportThread, RunsLayersInOrderAheadOfTheirStatistics) {
  ThreadPool& caller_pool = default_pool();
  std::mutex mutex;
  std::vector<int64_t> order;
  std::vector<int64_t> tokens;
  std::vector<bool> own_pool;
  std::atomic<bool> started[3] = {false, false, false};
  LayerExportThread exporter(
      2, 2, 5,
      [&](int64_t layer, const LayerExportThread::Statistics& s,
          const LayerExportThread::Stopping&) {
        started[layer - 2] = true;
        const LayerCalibration& stats = s();
        const std::lock_guard<std::mutex> lock(mutex);
        order.push_back(layer);
        tokens.push_back(stats.tokens);
        own_pool.push_back(&default_pool() != &caller_pool && default_pool().size() == 2);
      });
  for (int64_t layer = 2; layer < 5; ++layer) {
    // The export of a layer begins before its statistics exist.
    ASSERT_TRUE(wait_for(started[layer - 2])) << "layer " << layer << " never started";
    exporter.push(stats_for(layer));
  }
  exporter.finish();
  EXPECT_EQ(order, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(tokens, (std::vector<int64_t>{102, 103, 104}));
  EXPECT_EQ(own_pool, (std::vector<bool>{true, true, true}));
  EXPECT_GE(exporter.waited_seconds(), 0.0);
  EXPECT_GE(exporter.busy_seconds(), 0.0);
}

TEST(LayerExportThread, AnErrorStopsTheExportAndIsRethrown) {
  std::atomic<int> ran{0};
  LayerExportThread exporter(2, 0, 4,
                             [&](int64_t layer, const LayerExportThread::Statistics& s,
                                 const LayerExportThread::Stopping&) {
                               s();
                               ++ran;
                               if (layer == 1) fail("layer ", layer, " cannot be encoded");
                             });
  exporter.push(stats_for(0));
  exporter.push(stats_for(1));
  // The error comes back from a later push or from finish(); later layers never run.
  bool thrown = false;
  try {
    for (int64_t layer = 2; layer < 4; ++layer) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      exporter.push(stats_for(layer));
    }
    exporter.finish();
  } catch (const Error& e) {
    thrown = true;
    EXPECT_NE(std::string(e.what()).find("layer 1 cannot be encoded"), std::string::npos);
  }
  EXPECT_TRUE(thrown);
  EXPECT_EQ(ran.load(), 2);
}

TEST(LayerExportThread, DestroyingItAbandonsALayerWaitingForStatistics) {
  std::atomic<bool> waiting{false}, got_stats{false};
  {
    LayerExportThread exporter(
        2, 0, 3,
        [&](int64_t, const LayerExportThread::Statistics& s, const LayerExportThread::Stopping&) {
          waiting = true;
          s();
          got_stats = true;
        });
    ASSERT_TRUE(wait_for(waiting));
  }  // no statistics ever pushed: the destructor must not hang
  EXPECT_FALSE(got_stats);
}

TEST(LayerExportThread, StoppingTellsRunningWorkToGiveUp) {
  std::atomic<bool> running{false}, saw_stop{false};
  const auto start = std::chrono::steady_clock::now();
  {
    LayerExportThread exporter(2, 0, 2,
                               [&](int64_t, const LayerExportThread::Statistics&,
                                   const LayerExportThread::Stopping& stopping) {
                                 running = true;
                                 // Long work (up to 10 s) that watches the flag.
                                 while (!stopping() && std::chrono::steady_clock::now() - start <
                                                           std::chrono::seconds(10)) {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(1));
                                 }
                                 saw_stop = stopping();
                               });
    ASSERT_TRUE(wait_for(running));
  }  // the destructor raises the flag and waits for the work
  EXPECT_TRUE(saw_stop);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace m2fp4
