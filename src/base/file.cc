#include "base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"

namespace m2fp4 {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// An anonymous mapping of at least `bytes`, starting on a 2 MiB boundary and advised for
// transparent huge pages: weights are streamed once per token, and with 4 KiB pages every
// few rows of a matrix cost a TLB miss (the host's THP is in madvise mode). Page-cache reads
// into it fault in 2 MiB at a time. *mapped receives the mapping's length (for munmap).
std::byte* allocate_huge_page_advised(size_t bytes, size_t* mapped) {
  const size_t length = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  // Over-map by one huge page, then trim both ends to the aligned part.
  void* raw =
      mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > begin) munmap(raw, aligned - begin);
  const uintptr_t end = begin + length + kHugePage;
  if (end > aligned + length)
    munmap(reinterpret_cast<void*>(aligned + length), end - aligned - length);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE);  // advisory
#endif
  *mapped = length;
  return reinterpret_cast<std::byte*>(aligned);
}

// Reads bytes [begin, end) of fd into dst + begin; an empty string on success.
std::string read_range(int fd, std::byte* dst, size_t begin, size_t end) {
  size_t done = begin;
  while (done < end) {
    const ssize_t n = ::pread(fd, dst + done, end - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return "read failed at byte " + std::to_string(done) + ": " +
             (n == 0 ? std::string("unexpected end") : std::string(std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return "";
}

// The whole file into dst, by several threads at once: one core copies from the page cache
// (and faults in fresh pages) at a few GB/s, short of what memory allows. Each thread reads
// an interleaved set of 64 MiB slices, so the file is read front to back as a whole.
std::string read_parallel(int fd, std::byte* dst, size_t size) {
  constexpr size_t kSlice = size_t{64} << 20;
  const size_t slices = (size + kSlice - 1) / kSlice;
  const size_t n_threads =
      std::min<size_t>({slices, 4, std::max(1u, std::thread::hardware_concurrency())});
  std::vector<std::string> errors(n_threads);
  auto reader = [&](size_t t) {
    for (size_t s = t; s < slices && errors[t].empty(); s += n_threads) {
      errors[t] = read_range(fd, dst, s * kSlice, std::min(size, (s + 1) * kSlice));
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(reader, t);
  reader(0);
  for (std::thread& th : threads) th.join();
  for (const std::string& e : errors) {
    if (!e.empty()) return e;
  }
  return "";
}

// The whole file mapped read-only and locked in memory, slice by slice on several threads (a
// cold file is read from disk by all of them at once): the weights are then the page cache's own
// pages, pinned, so loading neither zeroes fresh memory nor copies (a warm 1 GB file loads in
// ~0.08 s instead of ~0.3 s, and on this VM freshly allocated memory can first have to be backed
// by the host, which made reads swing from 0.5 to 4 s), and the process holds no second copy of
// what the page cache already has. Locked pages cannot be dropped by memory pressure, so decode
// never stalls on a refault as with kMmap. nullptr when the mapping or the lock is refused (no
// CAP_IPC_LOCK and RLIMIT_MEMLOCK too small): the caller then reads into its own memory.
const std::byte* map_and_lock(int fd, size_t size) {
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* base = static_cast<std::byte*>(p);
  constexpr size_t kSlice = size_t{64} << 20;
  const size_t slices = (size + kSlice - 1) / kSlice;
  const size_t n_threads =
      std::min<size_t>({slices, 4, std::max(1u, std::thread::hardware_concurrency())});
  std::vector<char> failed(n_threads, 0);
  auto locker = [&](size_t t) {
    for (size_t s = t; s < slices && !failed[t]; s += n_threads) {
      const size_t begin = s * kSlice;
      failed[t] = mlock(base + begin, std::min(size, begin + kSlice) - begin) != 0;
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(locker, t);
  locker(0);
  for (std::thread& th : threads) th.join();
  if (std::find(failed.begin(), failed.end(), 1) != failed.end()) {
    munmap(p, size);  // also unlocks what was locked
    return nullptr;
  }
  return base;
}

}  // namespace

LoadMode parse_load_mode(std::string_view name) {
  if (name == "read") return LoadMode::kRead;
  if (name == "mmap") return LoadMode::kMmap;
  if (name == "copy") return LoadMode::kCopy;
  fail("unknown load mode '", name, "' (expected read, mmap or copy)");
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
    locked_ = other.locked_;
    owned_ = other.owned_;
    owned_bytes_ = other.owned_bytes_;
    other.data_ = nullptr;
    other.owned_ = nullptr;
    other.owned_bytes_ = 0;
    other.size_ = 0;
    other.mapped_ = false;
    other.locked_ = false;
  }
  return *this;
}

void FileBytes::release() {
  if (mapped_ && data_ != nullptr && size_ > 0) {
    munmap(const_cast<std::byte*>(data_), size_);
  }
  if (owned_ != nullptr) munmap(owned_, owned_bytes_);
  data_ = nullptr;
  owned_ = nullptr;
  owned_bytes_ = 0;
  size_ = 0;
  mapped_ = false;
  locked_ = false;
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
  const std::byte* locked = mode == LoadMode::kRead ? map_and_lock(fd, out.size_) : nullptr;
  if (locked != nullptr) {
    ::close(fd);
    out.data_ = locked;
    out.mapped_ = true;
    out.locked_ = true;
    return out;
  }
  out.owned_ = allocate_huge_page_advised(out.size_, &out.owned_bytes_);
  if (out.owned_ == nullptr) {
    ::close(fd);
    fail(path, ": out of memory reading ", out.size_, " bytes");
  }
  const std::string error = read_parallel(fd, out.owned_, out.size_);
  ::close(fd);
  if (!error.empty()) fail(path, ": ", error);
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
