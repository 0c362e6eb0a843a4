// A file written front to back, bypassing the page cache where the file system allows it
// (O_DIRECT): `quantize` writes checkpoints of up to ~130 GB, and through the page cache every
// output byte is first copied into a fresh cache page. On this project's VMs allocating those
// pages is the expensive part and varies run to run (a 640 MiB write: 0.17-2.3 s of system
// time buffered, 0.05 s direct, at 1.6 GB/s either way); on a real model the cached output
// would also push the source checkpoint's pages, which the quantizer is reading, out of memory.
//
// Bytes are staged in an aligned buffer and written in whole aligned blocks; finish() writes the
// last partial block padded and truncates the file to its exact size. Where O_DIRECT is refused
// (tmpfs, some network file systems: at open or at the first write), the same code writes
// through the page cache instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace m2fp4 {

class SequentialWriter {
 public:
  enum class Caching {
    kBypass,     // O_DIRECT where the file system takes it, else through the page cache
    kPageCache,  // plain buffered writes
  };

  // Creates (or truncates) `path`. Throws m2fp4::Error naming the path on failure.
  explicit SequentialWriter(const std::string& path, Caching caching = Caching::kBypass);
  // Closes the file if finish() did not (its contents are then whatever was flushed).
  ~SequentialWriter();
  SequentialWriter(const SequentialWriter&) = delete;
  SequentialWriter& operator=(const SequentialWriter&) = delete;

  // Appends `bytes` bytes. Throws on a failed write (disk full, I/O error).
  void write(const void* data, size_t bytes);
  // Writes what is staged, sets the file's size to the bytes appended and closes it.
  void finish();

  uint64_t bytes_written() const { return total_; }
  // Whether the file is being written with O_DIRECT (false after a fallback).
  bool direct() const { return direct_; }

 private:
  void write_at(const std::byte* data, size_t bytes, uint64_t offset);
  void close_file();

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  std::byte* buffer_ = nullptr;  // kBufferBytes, aligned for O_DIRECT
  size_t staged_ = 0;            // bytes in buffer_
  uint64_t flushed_ = 0;         // bytes written to the file (whole buffers)
  uint64_t total_ = 0;           // bytes appended
};

}  // namespace m2fp4
