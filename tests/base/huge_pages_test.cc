// resize_on_huge_pages: the same contents as std::vector::resize (old elements kept, new ones
// value-initialised, shrinking keeps the buffer), and a new buffer of kHugePageAdviceBytes or
// more lies in a mapping the kernel marks for huge pages ("hg" in /proc/self/smaps VmFlags)
// where transparent huge pages exist.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "base/huge_pages.h"
#include "support/proc_smaps.h"

namespace m2fp4 {
namespace {

bool thp_available() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(f, s);
  return !s.empty() && s.find("[never]") == std::string::npos;
}

TEST(HugePages, ResizeKeepsContentsLikeStdResize) {
  std::vector<float> v = {1.0f, 2.0f, 3.0f};
  std::vector<float> expected = v;
  const size_t big = kHugePageAdviceBytes / sizeof(float) + 123;
  resize_on_huge_pages(v, big);
  expected.resize(big);
  EXPECT_EQ(v, expected);
  const float* buffer = v.data();
  resize_on_huge_pages(v, 10);  // shrinking keeps the buffer
  expected.resize(10);
  EXPECT_EQ(v, expected);
  EXPECT_EQ(v.data(), buffer);
  std::vector<int32_t> small;
  resize_on_huge_pages(small, 5);  // below the threshold: plain resize
  EXPECT_EQ(small, std::vector<int32_t>(5, 0));
}

TEST(HugePages, LargeBufferIsAdvisedForHugePages) {
  if (!thp_available()) GTEST_SKIP() << "no transparent huge pages on this system";
  std::vector<float> v;
  resize_on_huge_pages(v, 4 * kHugePageAdviceBytes / sizeof(float));
  const std::string flags = test::smaps_line_of(v.data() + v.size() / 2, "VmFlags:");
  ASSERT_FALSE(flags.empty());
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
}

}  // namespace
}  // namespace m2fp4
