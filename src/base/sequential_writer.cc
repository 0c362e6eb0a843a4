#include "base/sequential_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"

namespace m2fp4 {
namespace {

// O_DIRECT wants the buffer, the file offset and the length aligned to the device's logical
// block (512 or 4096 bytes); 4096 satisfies both.
constexpr size_t kAlignment = 4096;
// Large enough that one write per buffer keeps the disk busy, small enough not to matter next
// to the tensors being written.
constexpr size_t kBufferBytes = size_t{8} << 20;

}  // namespace

SequentialWriter::SequentialWriter(const std::string& path, Caching caching) : path_(path) {
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
#ifdef O_DIRECT
  if (caching == Caching::kBypass) {
    fd_ = ::open(path.c_str(), kFlags | O_DIRECT, 0644);
    direct_ = fd_ >= 0;
  }
  // Not asked for, or not supported here.
  if (!direct_ && (caching != Caching::kBypass || errno == EINVAL)) {
    fd_ = ::open(path.c_str(), kFlags, 0644);
  }
#else
  (void)caching;
  fd_ = ::open(path.c_str(), kFlags, 0644);
#endif
  if (fd_ < 0) fail("cannot create ", path, ": ", std::strerror(errno));
  buffer_ = static_cast<std::byte*>(std::aligned_alloc(kAlignment, kBufferBytes));
  if (buffer_ == nullptr) {
    close_file();
    fail(path, ": out of memory for the write buffer");
  }
}

SequentialWriter::~SequentialWriter() {
  close_file();
  std::free(buffer_);
}

void SequentialWriter::close_file() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void SequentialWriter::write_at(const std::byte* data, size_t bytes, uint64_t offset) {
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd_, data, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
#ifdef O_DIRECT
    if (n < 0 && errno == EINVAL && direct_) {
      // O_DIRECT accepted at open, refused on write (alignment the file system wants more
      // of, or no support after all): on through the page cache.
      const int flags = ::fcntl(fd_, F_GETFL);
      if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) < 0) {
        fail("writing ", path_, " failed: ", std::strerror(errno));
      }
      direct_ = false;
      continue;
    }
#endif
    if (n < 0) fail("writing ", path_, " failed: ", std::strerror(errno));
    if (n == 0) fail("writing ", path_, " failed: no progress");
    data += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

void SequentialWriter::write(const void* data, size_t bytes) {
  M2_CHECK(fd_ >= 0, path_, ": write after finish()");
  const auto* p = static_cast<const std::byte*>(data);
  while (bytes > 0) {
    const size_t n = std::min(bytes, kBufferBytes - staged_);
    std::memcpy(buffer_ + staged_, p, n);
    staged_ += n;
    total_ += n;
    p += n;
    bytes -= n;
    if (staged_ == kBufferBytes) {
      write_at(buffer_, kBufferBytes, flushed_);
      flushed_ += kBufferBytes;
      staged_ = 0;
    }
  }
}

void SequentialWriter::finish() {
  M2_CHECK(fd_ >= 0, path_, ": finish() called twice");
  if (staged_ > 0) {
    // A direct write must be whole blocks: the tail goes out padded with zeros and the file is
    // then cut back to its size.
    const size_t padded = direct_ ? (staged_ + kAlignment - 1) / kAlignment * kAlignment : staged_;
    std::memset(buffer_ + staged_, 0, padded - staged_);
    write_at(buffer_, padded, flushed_);
    flushed_ += staged_;
    staged_ = 0;
  }
  if (::ftruncate(fd_, static_cast<off_t>(total_)) != 0) {
    fail("setting the size of ", path_, " failed: ", std::strerror(errno));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("closing ", path_, " failed: ", std::strerror(errno));
}

}  // namespace m2fp4
