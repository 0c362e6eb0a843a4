// release_mapped_pages / populate_mapped_pages on a read-only file mapping, observed through the
// mapping's resident size (Rss in /proc/self/smaps): populate maps every page without reading
// them, release drops them, and the data reads back unchanged afterwards.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/page_release.h"
#include "support/proc_smaps.h"

namespace m2fp4 {
namespace {

// Rss in KiB of the /proc/self/smaps mapping starting at `address` (-1 if none).
int64_t rss_kib_of(const void* address) {
  const std::string line = test::smaps_line_of(address, "Rss:");
  return line.empty() ? -1 : std::stoll(line.substr(4));
}

TEST(PageRelease, PopulateMapsAndReleaseDropsTheFilesPages) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("m2fp4-pages-" + std::to_string(::getpid())))
          .string();
  const size_t bytes = size_t{8} << 20;
  std::vector<uint8_t> content(bytes);
  for (size_t i = 0; i < bytes; ++i) content[i] = static_cast<uint8_t>(i * 131 + 7);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(bytes));
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(map, MAP_FAILED);
  EXPECT_LT(rss_kib_of(map), 1024);  // nothing read yet (fault-around maps at most a little)
  populate_mapped_pages(map, bytes);
#ifdef MADV_POPULATE_READ
  if (madvise(map, 4096, MADV_POPULATE_READ) == 0) {  // the kernel has it (Linux 5.14+)
    EXPECT_GE(rss_kib_of(map), static_cast<int64_t>(bytes / 1024));
  }
#endif
  release_mapped_pages(map, bytes);
  EXPECT_LT(rss_kib_of(map), 1024);
  EXPECT_EQ(std::memcmp(map, content.data(), bytes), 0);  // faults back from the file
  munmap(map, bytes);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace m2fp4
