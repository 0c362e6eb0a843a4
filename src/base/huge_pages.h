// Large scratch buffers on transparent huge pages: a buffer first touched 4 KiB at a time takes
// one page fault per 4 KiB (the first calibration batch of `m2fp4 quantize` touched ~190 MB of
// scratch: ~47K faults, ~0.1 s of CPU); marked MADV_HUGEPAGE before its first touch it takes one
// per 2 MiB where the system allows huge pages on request (transparent_hugepage "madvise" or
// "always").
#pragma once

#include <cstddef>
#include <vector>

namespace m2fp4 {

// Bytes from which a new buffer is worth the advice (smaller ones hold no aligned 2 MiB page).
inline constexpr size_t kHugePageAdviceBytes = size_t{4} << 20;

// madvise(MADV_HUGEPAGE) over the whole pages inside [data, data + bytes). Advisory: errors (no
// THP support) are ignored.
void advise_huge_pages(void* data, size_t bytes);

// v.resize(n), except that when that needs a new buffer of kHugePageAdviceBytes or more, the
// buffer is allocated, advised and only then filled (the old elements copied, the new ones
// value-initialised), as resize() would leave it.
template <typename T>
void resize_on_huge_pages(std::vector<T>& v, size_t n) {
  if (n > v.capacity() && n * sizeof(T) >= kHugePageAdviceBytes) {
    std::vector<T> grown;
    grown.reserve(n);
    advise_huge_pages(grown.data(), n * sizeof(T));
    grown.assign(v.begin(), v.end());
    v.swap(grown);
  }
  v.resize(n);
}

}  // namespace m2fp4
