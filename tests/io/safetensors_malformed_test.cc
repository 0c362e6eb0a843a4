// Every malformed safetensors file gets one clear error naming the file and the problem, in
// both load modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"

namespace m2fp4 {
namespace {

using test::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

class Malformed : public ::testing::Test {
 protected:
  // Writes header + data by hand and expects `problem` (and the path) from both load modes.
  void expect_error(const std::string& header, const std::string& data,
                    const std::string& problem) {
    const std::string path = dir_.file("bad.safetensors");
    test::write_raw_safetensors(path, header, data);
    expect_open_error(path, problem);
  }
  void expect_open_error(const std::string& path, const std::string& problem) {
    for (const LoadMode mode : {LoadMode::kRead, LoadMode::kMmap}) {
      SCOPED_TRACE(mode == LoadMode::kRead ? "read" : "mmap");
      EXPECT_THAT(
          [&] { SafetensorsFile::open(path, mode); },
          ::testing::ThrowsMessage<Error>(AllOf(HasSubstr(path + ": "), HasSubstr(problem))));
    }
  }
  // One F32 entry `t` with the given fields (JSON text), in a header of its own.
  static std::string entry(const std::string& fields) { return R"({"t":{)" + fields + "}}"; }

  TempDir dir_;
};

TEST_F(Malformed, ShorterThanTheLengthPrefix) {
  for (const size_t size : {0, 1, 7}) {
    const std::string path = dir_.file("short.safetensors");
    test::write_all(path, std::string(size, '\x01'));
    expect_open_error(path, "not a safetensors file: " + std::to_string(size) +
                                " bytes, shorter than the 8-byte header length");
  }
}

TEST_F(Malformed, HeaderLengthPastTheEnd) {
  const std::string path = dir_.file("past.safetensors");
  test::write_all(path, test::u64_le(1000) + std::string(12, ' '));
  expect_open_error(path, "header length 1000 runs past the end of the file (20 bytes)");
  test::write_all(path, test::u64_le(~uint64_t{0}) + "{}");
  expect_open_error(path, "header length 18446744073709551615 runs past the end of the file");
}

TEST_F(Malformed, HeaderLengthAbsurdlyLarge) {
  // A sparse file just past the 100 MB header limit: costs no disk, and mapping reads nothing.
  const std::string path = dir_.file("huge.safetensors");
  test::write_all(path, test::u64_le(100'000'001));
  std::filesystem::resize_file(path, 8 + 100'000'001);
  EXPECT_THAT([&] { SafetensorsFile::open(path, LoadMode::kMmap); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr(path + ": header length 100000001 is absurdly large")));
}

TEST_F(Malformed, HeaderNotJson) {
  expect_error("{not json", "", "header is not valid JSON");
  expect_error("", "", "header is not valid JSON");
  expect_error(R"({"t":{"dtype":"F32"})", "", "header is not valid JSON");
}

TEST_F(Malformed, HeaderNotAnObject) {
  expect_error("[1,2]", "", "header is not a JSON object but array");
  expect_error("\"text\"", "", "header is not a JSON object but string");
}

TEST_F(Malformed, EntryNotAnObject) {
  expect_error(R"({"t":5})", "", "tensor 't': entry is not a JSON object but number");
}

TEST_F(Malformed, EntryFieldMissing) {
  expect_error(entry(R"("shape":[1],"data_offsets":[0,4])"), "0123", "tensor 't': missing dtype");
  expect_error(entry(R"("dtype":"F32","data_offsets":[0,4])"), "0123", "tensor 't': missing shape");
  expect_error(entry(R"("dtype":"F32","shape":[1])"), "0123", "tensor 't': missing data_offsets");
}

TEST_F(Malformed, EntryFieldOfWrongType) {
  expect_error(entry(R"("dtype":4,"shape":[1],"data_offsets":[0,4])"), "0123",
               "tensor 't': dtype is not a string but number");
  expect_error(entry(R"("dtype":"F32","shape":"1","data_offsets":[0,4])"), "0123",
               "tensor 't': shape is not an array but string");
  expect_error(entry(R"("dtype":"F32","shape":[1.5],"data_offsets":[0,4])"), "0123",
               "tensor 't': shape [1.5] holds a non-integer dimension");
  for (const std::string offsets : {"[0]", "[0,4,8]", R"([0,"4"])", "[-4,4]", "[0,4.0]", "{}"}) {
    expect_error(entry(R"("dtype":"F32","shape":[1],"data_offsets":)" + offsets), "0123",
                 "tensor 't': data_offsets " + nlohmann::json::parse(offsets).dump() +
                     " is not an array of two non-negative integers");
  }
}

TEST_F(Malformed, UnknownDtype) {
  expect_error(entry(R"("dtype":"F4","shape":[2],"data_offsets":[0,1])"), "0",
               "tensor 't': unknown dtype 'F4'");
}

TEST_F(Malformed, NegativeDimension) {
  expect_error(entry(R"("dtype":"F32","shape":[2,-3],"data_offsets":[0,0])"), "",
               "tensor 't': negative dimension -3 in shape [2, -3]");
}

TEST_F(Malformed, ByteCountDisagreesWithDtypeAndShape) {
  expect_error(entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,20])"), std::string(24, '\0'),
               "tensor 't': F32 [2, 3] needs 24 bytes but data_offsets [0, 20] cover 20");
  expect_error(entry(R"("dtype":"BF16","shape":[],"data_offsets":[0,4])"), std::string(4, '\0'),
               "tensor 't': BF16 [] needs 2 bytes but data_offsets [0, 4] cover 4");
}

TEST_F(Malformed, ShapeTooLarge) {
  expect_error(entry(R"("dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0])"), "",
               "tensor 't': shape [4294967296, 4294967296] is too large");
}

TEST_F(Malformed, BeginAfterEnd) {
  expect_error(entry(R"("dtype":"F32","shape":[2],"data_offsets":[8,0])"), std::string(8, '\0'),
               "tensor 't': data_offsets [8, 0] have begin > end");
}

TEST_F(Malformed, EndPastTheDataSection) {
  expect_error(entry(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])"), std::string(4, '\0'),
               "tensor 't': data_offsets [0, 8] end past the data section (4 bytes)");
}

TEST_F(Malformed, OverlappingTensors) {
  const std::string data(16, '\0');
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               data, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
  // Names sort opposite to offsets and the overlap is not with the direct neighbour by name.
  expect_error(R"({"z":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
               R"("m":{"dtype":"U8","shape":[4],"data_offsets":[16,20]},)"
               R"("a":{"dtype":"U8","shape":[2],"data_offsets":[10,12]}})",
               data + "0123", "tensors 'z' [0, 16) and 'a' [10, 12) overlap");
  // The same range twice.
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
               data, "tensors 'a' [0, 8) and 'b' [0, 8) overlap");
}

TEST_F(Malformed, DuplicateName) {
  expect_error(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
               R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
               "01", "tensor 't' appears twice in the header");
}

TEST_F(Malformed, MetadataNotAStringMap) {
  expect_error(R"({"__metadata__":"x"})", "", "__metadata__ is not a JSON object but string");
  expect_error(R"({"__metadata__":{"a":"ok","b":1}})", "",
               "__metadata__ value of 'b' is not a string but number");
}

// The lenient corners that are valid files, so the checks above are not simply refusing all.
TEST_F(Malformed, ValidCornersAreAccepted) {
  const std::string path = dir_.file("ok.safetensors");
  // Empty tensors share offsets with each other and with a neighbour; null metadata; a gap
  // between tensors and trailing padding spaces in the header.
  test::write_raw_safetensors(path,
                              R"({"__metadata__":null,)"
                              R"("e1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                              R"("e2":{"dtype":"I64","shape":[3,0],"data_offsets":[4,4]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}   )",
                              "abcdefgh");
  for (const LoadMode mode : {LoadMode::kRead, LoadMode::kMmap}) {
    const SafetensorsFile file = SafetensorsFile::open(path, mode);
    ASSERT_EQ(file.tensors().size(), 4u);
    EXPECT_TRUE(file.metadata().empty());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.tensor("b").data), 2), "gh");
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.tensor("a").data), 4), "abcd");
    EXPECT_EQ(file.tensor("e2").numel(), 0);
    // tensors() lists file order (by offset).
    EXPECT_EQ(file.tensors().front().name, "a");
    EXPECT_EQ(file.tensors().back().name, "b");
  }
}

}  // namespace
}  // namespace m2fp4
