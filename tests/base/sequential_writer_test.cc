#include "base/sequential_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.h"

namespace m2fp4 {
namespace {

namespace fs = std::filesystem;

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<char> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> v(n);
  for (size_t i = 0; i < n; i += 4) {
    const uint32_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(4, n - i));
  }
  return v;
}

using Caching = SequentialWriter::Caching;

class SequentialWriterTest : public ::testing::TestWithParam<std::tuple<std::string, Caching>> {
 protected:
  void SetUp() override {
    const fs::path base = std::get<0>(GetParam());
    caching_ = std::get<1>(GetParam());
    if (!fs::is_directory(base)) GTEST_SKIP() << base << " is not a directory here";
    dir_ = base / ("m2fp4-seqw-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
  Caching caching_ = Caching::kBypass;
};

// Sizes around the 4 KiB block and the 8 MiB staging buffer, written in pieces of awkward sizes:
// the file holds exactly the bytes appended, in order.
TEST_P(SequentialWriterTest, FileHoldsExactlyTheBytesAppended) {
  const size_t kMiB = size_t{1} << 20;
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, 8 * kMiB - 1,
                      8 * kMiB, 8 * kMiB + 4097, 21 * kMiB + 13}) {
    const std::vector<char> bytes = random_bytes(size, static_cast<uint32_t>(size));
    const std::string path = (dir_ / ("f" + std::to_string(size))).string();
    SequentialWriter w(path, caching_);
    size_t at = 0, piece = 1;
    while (at < size) {
      const size_t n = std::min(piece, size - at);
      w.write(bytes.data() + at, n);
      at += n;
      piece = piece * 7 + 3;  // 1, 10, 73, 514, ... up to whole megabytes
    }
    EXPECT_EQ(w.bytes_written(), size);
    w.finish();
    EXPECT_EQ(fs::file_size(path), size) << size;
    EXPECT_TRUE(read_all(path) == bytes) << size;
  }
}

// One write far larger than the buffer, then overwriting an existing longer file: truncated.
TEST_P(SequentialWriterTest, LargeWriteAndTruncation) {
  const std::string path = (dir_ / "big").string();
  const std::vector<char> big = random_bytes((size_t{19} << 20) + 5, 7);
  {
    SequentialWriter w(path, caching_);
    w.write(big.data(), big.size());
    w.finish();
  }
  EXPECT_TRUE(read_all(path) == big);
  const std::vector<char> small = random_bytes(100, 8);
  SequentialWriter w(path, caching_);
  w.write(small.data(), small.size());
  w.finish();
  EXPECT_TRUE(read_all(path) == small);
}

TEST_P(SequentialWriterTest, MisuseAndBadPathsAreErrors) {
  EXPECT_THROW(SequentialWriter((dir_ / "no-such-dir" / "f").string(), caching_), Error);
  const std::string path = (dir_ / "f").string();
  SequentialWriter w(path, caching_);
  w.write("abc", 3);
  w.finish();
  EXPECT_THROW(w.finish(), Error);
  EXPECT_THROW(w.write("d", 1), Error);
  EXPECT_EQ(fs::file_size(path), 3u);
}

// Plain buffered writes never go direct.
TEST(SequentialWriterModeTest, PageCacheModeIsBuffered) {
  const std::string path = "m2fp4-seqw-buffered-" + std::to_string(::getpid());
  SequentialWriter w(path, Caching::kPageCache);
  EXPECT_FALSE(w.direct());
  w.write("xyz", 3);
  w.finish();
  EXPECT_EQ(fs::file_size(path), 3u);
  fs::remove(path);
}

// Both modes on the build tree's file system (ext4 and most disks take O_DIRECT) and on tmpfs
// (which refuses it before Linux 6.6: the fallback).
INSTANTIATE_TEST_SUITE_P(
    FileSystems, SequentialWriterTest,
    ::testing::Combine(::testing::Values(std::string("."), std::string("/dev/shm")),
                       ::testing::Values(Caching::kBypass, Caching::kPageCache)));

}  // namespace
}  // namespace m2fp4
