// Whole files as bytes: read into ordinary memory (default) or mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace m2fp4 {

// kRead puts the file in memory that is never dropped: its page-cache pages mapped and locked
// (mlock) where the process may lock that much, else a copy in process memory; kMmap maps it
// unlocked (pages can be dropped when cold and fault back from disk, which stalls decode:
// llama.cpp's --no-mmap story).
// kCopy always copies into process memory (2 MiB pages): kRead's fallback, kept selectable to
// compare the two.
enum class LoadMode { kRead, kMmap, kCopy };

// "read" | "mmap" | "copy"; throws on anything else
LoadMode parse_load_mode(std::string_view name);

class FileBytes {
 public:
  FileBytes() = default;
  ~FileBytes();
  FileBytes(FileBytes&& other) noexcept;
  FileBytes& operator=(FileBytes&& other) noexcept;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  static FileBytes open(const std::string& path, LoadMode mode);

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool mapped() const { return mapped_; }  // a file mapping (kMmap, or kRead locked)
  bool locked() const { return locked_; }  // kRead served by a locked mapping
  const std::string& path() const { return path_; }

 private:
  void release();

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  bool locked_ = false;
  std::byte* owned_ = nullptr;  // anonymous mapping (2 MiB aligned) when read into memory
  size_t owned_bytes_ = 0;      // its length, for munmap
};

std::string read_text_file(const std::string& path);
bool file_exists(const std::string& path);

// Writes `path` through a temporary file and a rename, so a failed write never leaves a
// complete-looking file behind.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace m2fp4
