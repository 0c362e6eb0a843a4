#include "quant/parallel_rows.h"

#include <algorithm>
#include <exception>
#include <mutex>

#include "base/thread_pool.h"

namespace m2fp4 {
namespace {
thread_local bool serial_rows = false;
}  // namespace

SerialRowsScope::SerialRowsScope() : previous_(serial_rows) {
  serial_rows = true;
}

SerialRowsScope::~SerialRowsScope() {
  serial_rows = previous_;
}

void parallel_rows(int64_t rows, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (rows <= 0) return;
  if (serial_rows) {
    fn(0, rows);
    return;
  }
  std::mutex mutex;
  std::exception_ptr first;
  ThreadPool& pool = default_pool();
  // Up to kChunksPerThread chunks per thread, claimed as threads come: with one chunk per
  // thread, a worker that wakes late (a busy host, or just its futex wake-up) found its chunk
  // already taken by the caller, which then quantized the whole matrix alone (a profile of
  // `quantize --recipe mxfp4-16` had the caller doing ~80% of the IQ4_NL search).
  constexpr int64_t kChunksPerThread = 8;
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, rows / std::max<int64_t>(grain, 1)),
                                           kChunksPerThread * pool.size());
  pool.run(chunks, [&](int64_t c, int) {
    try {
      fn(rows * c / chunks, rows * (c + 1) / chunks);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex);
      if (!first) first = std::current_exception();
    }
  });
  if (first) std::rethrow_exception(first);
}

int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1));
}

}  // namespace m2fp4
