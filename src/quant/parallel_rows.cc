#include "quant/parallel_rows.h"

#include <algorithm>
#include <exception>
#include <mutex>

#include "base/thread_pool.h"

namespace m2fp4 {

void parallel_rows(int64_t rows, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& fn) {
  std::mutex mutex;
  std::exception_ptr first;
  default_pool().parallel_for(rows, grain, [&](int64_t begin, int64_t end, int) {
    try {
      fn(begin, end);
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
