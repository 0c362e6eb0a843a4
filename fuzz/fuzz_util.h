// Shared helpers of the libFuzzer targets: a failed invariant aborts with a message (libFuzzer
// then saves the input as crash-*), and a deterministic byte reader for target options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace m2fp4::fuzz {

[[noreturn]] inline void invariant_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", file, line, what);
  std::abort();
}

// Reads option bytes from the front of the input; 0 once it runs out.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string_view rest() const {
    return {reinterpret_cast<const char*>(data_) + pos_, size_ - pos_};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace m2fp4::fuzz

#define FUZZ_CHECK(cond) \
  ((cond) ? (void)0 : ::m2fp4::fuzz::invariant_failed(#cond, __FILE__, __LINE__))
