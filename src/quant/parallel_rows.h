// Runs a per-row-range function on the default thread pool and rethrows the first exception a
// worker raised (the pool itself does not carry exceptions across threads), so the quantizers'
// input checks surface as m2fp4::Error in the caller.
#pragma once

#include <cstdint>
#include <functional>

namespace m2fp4 {

void parallel_rows(int64_t rows, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn);

// While one is alive on a thread, parallel_rows on that thread runs fn(0, rows) inline: callers
// that already spread whole matrices over the pool's threads (the pool is not reentrant) encode
// each matrix on the thread that claimed it. Rows are independent, so the result is the same.
class SerialRowsScope {
 public:
  SerialRowsScope();
  ~SerialRowsScope();
  SerialRowsScope(const SerialRowsScope&) = delete;
  SerialRowsScope& operator=(const SerialRowsScope&) = delete;

 private:
  bool previous_;
};

// Rows per task so that a task covers about 64K elements.
int64_t row_grain(int64_t cols);

}  // namespace m2fp4
