// Per-thread scratch memory for kernels: grows on demand and is reused across calls, so the hot
// path neither allocates nor page-faults fresh mmap'd buffers on every matmul.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace m2fp4 {

class ScratchFloats {
 public:
  ScratchFloats() = default;
  ScratchFloats(const ScratchFloats&) = delete;
  ScratchFloats& operator=(const ScratchFloats&) = delete;
  ~ScratchFloats() { std::free(data_); }

  // At least n floats, 64-byte aligned; contents unspecified.
  float* get(size_t n) {
    if (n > capacity_) {
      std::free(data_);
      capacity_ = n + n / 4 + 64;
      data_ =
          static_cast<float*>(std::aligned_alloc(64, (capacity_ * sizeof(float) + 63) / 64 * 64));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

// Slot 0 is for the calling thread's per-call buffers (packed matmul inputs), slot 1 for
// per-worker matmul tiles, slot 2 for attention scores, slot 3 for the FP8 GEMV's widened
// activations (its slot 1 holds the bf16 ones); all thread_local, so each pool thread has its
// own.
inline float* thread_scratch(int slot, size_t n) {
  thread_local ScratchFloats buffers[4];
  return buffers[slot].get(n);
}

}  // namespace m2fp4
