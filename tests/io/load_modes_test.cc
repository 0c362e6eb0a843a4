// The three ways FileBytes puts a weight file in memory hold the same bytes: kRead (the page
// cache locked in place where the process may lock it, else a copy), kMmap (unlocked mapping)
// and kCopy (always a copy in 2 MiB-aligned memory), for sizes around page and slice edges.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/file.h"

namespace m2fp4 {
namespace {

TEST(LoadModes, SameBytesInEveryMode) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("m2fp4-loadmodes-" + std::to_string(::getpid()) + ".bin"))
                               .string();
  // 4096 + 1 spans a page edge; 64 MiB + 3 spans the 64 MiB slices that threads read or lock.
  for (const size_t size : {size_t{1}, size_t{4097}, (size_t{64} << 20) + 3}) {
    SCOPED_TRACE(size);
    std::vector<char> bytes(size);
    uint32_t state = 12345;
    for (char& b : bytes) b = static_cast<char>((state = state * 1664525u + 1013904223u) >> 24);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    for (const LoadMode mode : {LoadMode::kRead, LoadMode::kMmap, LoadMode::kCopy}) {
      const FileBytes f = FileBytes::open(path, mode);
      ASSERT_EQ(f.size(), size);
      EXPECT_EQ(std::memcmp(f.data(), bytes.data(), size), 0);
      switch (mode) {
        case LoadMode::kRead:
          EXPECT_EQ(f.mapped(), f.locked());  // locked mapping, or the copy
          break;
        case LoadMode::kMmap:
          EXPECT_TRUE(f.mapped());
          EXPECT_FALSE(f.locked());
          break;
        case LoadMode::kCopy:
          EXPECT_FALSE(f.mapped());
          EXPECT_FALSE(f.locked());
          break;
      }
    }
  }
  std::filesystem::remove(path);
  EXPECT_EQ(parse_load_mode("copy"), LoadMode::kCopy);
  EXPECT_THROW(parse_load_mode("lock"), Error);
}

}  // namespace
}  // namespace m2fp4
