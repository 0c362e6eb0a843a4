// Safetensors headers checked from memory (parse_safetensors_header, what the fuzz target
// drives): a header nested deeper than kMaxJsonDepth is refused before parsing (its dump in an
// error message would recurse once per level), and the in-memory parse agrees with open().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/json_depth.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"

namespace m2fp4 {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// 8-byte little-endian length + header + data, as the format lays a file out.
std::vector<std::byte> file_bytes(const std::string& header, size_t data_bytes = 0) {
  std::vector<std::byte> bytes(8 + header.size() + data_bytes);
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::byte>((length >> (8 * i)) & 0xFF);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  return bytes;
}

std::string header_error(const std::string& header, size_t data_bytes = 0) {
  try {
    parse_safetensors_header(file_bytes(header, data_bytes), "mem.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(SafetensorsLimitsTest, DeepHeaderIsRefusedBeforeParsing) {
  const size_t depth = 100'000;
  const std::string deep_shape = R"({"t":{"dtype":"F32","shape":)" + std::string(depth, '[') +
                                 std::string(depth, ']') + R"(,"data_offsets":[0,0]}})";
  EXPECT_THAT(header_error(deep_shape),
              AllOf(HasSubstr("mem.safetensors: header: JSON nested 100002 levels deep"),
                    HasSubstr("limit 512")));
  const std::string deep_metadata =
      R"({"__metadata__":{"a":)" + std::string(depth, '{') + std::string(depth, '}') + "}}";
  EXPECT_THAT(header_error(deep_metadata), HasSubstr("levels deep"));
  // Within the limit, the nesting reaches the field checks and their messages.
  const std::string nested_dimension = R"({"t":{"dtype":"F32","shape":[)" + std::string(400, '[') +
                                       std::string(400, ']') + R"(],"data_offsets":[0,0]}})";
  EXPECT_THAT(header_error(nested_dimension), HasSubstr("holds a non-integer dimension"));
}

TEST(SafetensorsLimitsTest, InMemoryParseMatchesOpen) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const SafetensorsHeader parsed = parse_safetensors_header(file_bytes(header, 22), "mem");
  ASSERT_EQ(parsed.tensors.size(), 2u);
  EXPECT_EQ(parsed.tensors[0].name, "a");  // file order
  EXPECT_EQ(parsed.tensors[1].name, "b");
  EXPECT_EQ(parsed.tensors[1].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(parsed.metadata.at("format"), "pt");
  EXPECT_EQ(parsed.data_offset, 8 + header.size());

  test::TempDir dir;
  const std::string path = dir.file("m.safetensors");
  test::write_raw_safetensors(path, header, std::string(22, '\0'));
  const SafetensorsFile file = SafetensorsFile::open(path);
  ASSERT_EQ(file.tensors().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(file.tensors()[i].name, parsed.tensors[i].name);
    EXPECT_EQ(file.tensors()[i].begin, parsed.tensors[i].begin);
    EXPECT_EQ(file.tensors()[i].end, parsed.tensors[i].end);
  }
  EXPECT_THAT(header_error(header, 21), HasSubstr("end past the data section"));
}

}  // namespace
}  // namespace m2fp4
