#include "base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace m2fp4 {

LoadMode parse_load_mode(std::string_view name) {
  if (name == "read") return LoadMode::kRead;
  if (name == "mmap") return LoadMode::kMmap;
  fail("unknown load mode '", name, "' (expected read or mmap)");
}

FileBytes::~FileBytes() {
  release();
}

FileBytes::FileBytes(FileBytes&& other) noexcept {
  *this = std::move(other);
}

FileBytes& FileBytes::operator=(FileBytes&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    mapped_ = other.mapped_;
    owned_ = other.owned_;
    other.data_ = nullptr;
    other.owned_ = nullptr;
    other.size_ = 0;
    other.mapped_ = false;
  }
  return *this;
}

void FileBytes::release() {
  if (mapped_ && data_ != nullptr && size_ > 0) {
    munmap(const_cast<std::byte*>(data_), size_);
  }
  std::free(owned_);
  data_ = nullptr;
  owned_ = nullptr;
  size_ = 0;
  mapped_ = false;
}

FileBytes FileBytes::open(const std::string& path, LoadMode mode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  FileBytes out;
  out.path_ = path;
  out.size_ = static_cast<size_t>(st.st_size);
  if (out.size_ == 0) {
    ::close(fd);
    return out;
  }
  if (mode == LoadMode::kMmap) {
    void* p = mmap(nullptr, out.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) fail(path, ": cannot map: ", std::strerror(err));
    out.data_ = static_cast<const std::byte*>(p);
    out.mapped_ = true;
    return out;
  }
  const size_t alloc = (out.size_ + 63) / 64 * 64;
  out.owned_ = static_cast<std::byte*>(std::aligned_alloc(64, alloc));
  if (out.owned_ == nullptr) {
    ::close(fd);
    fail(path, ": out of memory reading ", out.size_, " bytes");
  }
  size_t done = 0;
  while (done < out.size_) {
    const ssize_t n = ::pread(fd, out.owned_ + done, out.size_ - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      fail(path, ": read failed at byte ", done, ": ",
           n == 0 ? "unexpected end" : std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.data_ = out.owned_;
  return out;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  return std::filesystem::is_regular_file(path);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, ": cannot create");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      fail(path, ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": cannot rename into place: ", std::strerror(errno));
  }
}

}  // namespace m2fp4
