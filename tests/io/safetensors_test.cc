// Writing and reading safetensors files: round trips, the exact byte layout, writer contracts.
#include "io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "io/io_test_util.h"

namespace m2fp4 {
namespace {

using test::TempDir;
using ::testing::HasSubstr;

constexpr DType kAllDTypes[] = {DType::kF32,    DType::kF16, DType::kBF16, DType::kF8E4M3,
                                DType::kF8E8M0, DType::kU8,  DType::kI8,   DType::kI32,
                                DType::kI64,    DType::kF64};

std::vector<std::byte> pattern_bytes(size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 37 + seed * 11 + 5) & 0xFF);
  return out;
}

TensorData make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                       unsigned seed) {
  size_t n = dtype_size(dtype);
  for (const int64_t d : shape) n *= static_cast<size_t>(d);
  return TensorData{TensorSpec{name, dtype, std::move(shape)}, pattern_bytes(n, seed)};
}

std::vector<std::byte> bytes_of(const TensorView& v) {
  return std::vector<std::byte>(v.data, v.data + v.nbytes());
}

class RoundTrip : public ::testing::TestWithParam<LoadMode> {};

TEST_P(RoundTrip, EveryDtypeKeepsNameDtypeShapeAndBytes) {
  TempDir dir;
  std::vector<TensorData> tensors;
  unsigned seed = 0;
  for (const DType dtype : kAllDTypes) {
    const std::string base = std::string(dtype_name(dtype));
    tensors.push_back(make_tensor(base + ".matrix", dtype, {3, 5}, ++seed));
    tensors.push_back(make_tensor(base + ".scalar", dtype, {}, ++seed));
    tensors.push_back(make_tensor(base + ".empty", dtype, {0, 4}, ++seed));
    tensors.push_back(make_tensor(base + ".cube", dtype, {2, 1, 3}, ++seed));
  }
  const std::string path = dir.file("all.safetensors");
  write_safetensors(path, tensors);

  const SafetensorsFile file = SafetensorsFile::open(path, GetParam());
  EXPECT_EQ(file.path(), path);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  EXPECT_TRUE(file.metadata().empty());
  for (const TensorData& t : tensors) {
    SCOPED_TRACE(t.spec.name);
    const TensorView v = file.tensor(t.spec.name);
    EXPECT_EQ(v.name(), t.spec.name);
    EXPECT_EQ(v.dtype(), t.spec.dtype);
    EXPECT_EQ(v.shape(), t.spec.shape);
    EXPECT_EQ(v.nbytes(), t.bytes.size());
    int64_t numel = 1;
    for (const int64_t d : t.spec.shape) numel *= d;
    EXPECT_EQ(v.numel(), numel);
    EXPECT_EQ(bytes_of(v), t.bytes);
  }
}

TEST_P(RoundTrip, MetadataIsKept) {
  TempDir dir;
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "quotes \" and \\ and unicode \xc3\xa9"}, {"empty", ""}};
  const std::string path = dir.file("meta.safetensors");
  write_safetensors(path, {make_tensor("w", DType::kBF16, {4}, 1)}, metadata);
  const SafetensorsFile file = SafetensorsFile::open(path, GetParam());
  EXPECT_EQ(file.metadata(), metadata);
}

TEST_P(RoundTrip, FileWithoutTensors) {
  TempDir dir;
  const std::string path = dir.file("none.safetensors");
  write_safetensors(path, {}, {{"k", "v"}});
  const SafetensorsFile file = SafetensorsFile::open(path, GetParam());
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.metadata().at("k"), "v");
}

INSTANTIATE_TEST_SUITE_P(LoadModes, RoundTrip, ::testing::Values(LoadMode::kRead, LoadMode::kMmap),
                         [](const auto& info) {
                           return info.param == LoadMode::kRead ? "Read" : "Mmap";
                         });

TEST(SafetensorsWriter, ExactByteLayout) {
  // Hand-assembled: the 54-character header gets 2 spaces of padding to 56 (a multiple of 8),
  // then the two little-endian floats.
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  const float values[2] = {1.0f, -2.0f};
  std::vector<std::byte> data(8);
  std::memcpy(data.data(), values, 8);
  write_safetensors(path, {TensorData{TensorSpec{"t", DType::kF32, {2}}, data}});

  const std::string header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(header.size(), 54u);
  const std::string expected = std::string("\x38\0\0\0\0\0\0\0", 8) + header + "  " +
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
  EXPECT_EQ(test::read_all(path), expected);
}

TEST(SafetensorsWriter, DataSectionIsEightByteAligned) {
  TempDir dir;
  for (int name_length = 1; name_length <= 16; ++name_length) {
    const std::string path = dir.file("a" + std::to_string(name_length) + ".safetensors");
    write_safetensors(path, {make_tensor(std::string(name_length, 'x'), DType::kU8, {3}, 2)});
    const std::string bytes = test::read_all(path);
    uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), 8);
    EXPECT_EQ(header_length % 8, 0u) << name_length;
    EXPECT_EQ(bytes.size(), 8 + header_length + 3);
  }
}

TEST(SafetensorsWriter, DataOffsetsAreContiguousInDeclarationOrder) {
  TempDir dir;
  const std::string path = dir.file("order.safetensors");
  // Names deliberately out of alphabetical order: offsets follow declaration, not names.
  write_safetensors(
      path, {make_tensor("zeta", DType::kF32, {3}, 1), make_tensor("alpha", DType::kU8, {5}, 2),
             make_tensor("mid", DType::kI64, {2}, 3)});
  const SafetensorsFile file = SafetensorsFile::open(path);
  const TensorInfo* zeta = file.find("zeta");
  const TensorInfo* alpha = file.find("alpha");
  const TensorInfo* mid = file.find("mid");
  ASSERT_TRUE(zeta && alpha && mid);
  EXPECT_EQ(zeta->begin, 0u);
  EXPECT_EQ(zeta->end, 12u);
  EXPECT_EQ(alpha->begin, 12u);
  EXPECT_EQ(alpha->end, 17u);
  EXPECT_EQ(mid->begin, 17u);
  EXPECT_EQ(mid->end, 33u);
  EXPECT_EQ(file.find("absent"), nullptr);
}

TEST(SafetensorsWriter, FileAppearsOnlyOnFinish) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const TensorData a = make_tensor("a", DType::kF32, {2}, 1);
  const TensorData b = make_tensor("b", DType::kI8, {3}, 2);
  {
    SafetensorsWriter writer(path, {a.spec, b.spec});
    writer.write("a", a.bytes);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
    writer.write("b", b.bytes);
    writer.finish();
    EXPECT_TRUE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  }
  EXPECT_TRUE(std::filesystem::exists(path));  // destruction after finish keeps it
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(bytes_of(file.tensor("b")), b.bytes);
}

TEST(SafetensorsWriter, DestroyedBeforeFinishLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const TensorData a = make_tensor("a", DType::kF32, {2}, 1);
  const TensorData b = make_tensor("b", DType::kI8, {3}, 2);
  {
    SafetensorsWriter writer(path, {a.spec, b.spec});
    writer.write("a", a.bytes);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(SafetensorsWriter, AbandonedRewriteKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const TensorData old_tensor = make_tensor("old", DType::kU8, {4}, 7);
  write_safetensors(path, {old_tensor});
  { SafetensorsWriter writer(path, {make_tensor("new", DType::kU8, {4}, 8).spec}); }
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(bytes_of(file.tensor("old")), old_tensor.bytes);
}

TEST(SafetensorsWriter, WrongNameIsRejected) {
  TempDir dir;
  const TensorData a = make_tensor("a", DType::kF32, {2}, 1);
  const TensorData b = make_tensor("b", DType::kF32, {2}, 2);
  SafetensorsWriter writer(dir.file("w.safetensors"), {a.spec, b.spec});
  EXPECT_THAT([&] { writer.write("b", b.bytes); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("expected tensor 'a' next (declaration order) but got 'b'")));
  // Nothing was written by the refused call: the right tensor still goes through.
  writer.write("a", a.bytes);
  writer.write("b", b.bytes);
  writer.finish();
  EXPECT_EQ(bytes_of(SafetensorsFile::open(dir.file("w.safetensors")).tensor("b")), b.bytes);
}

TEST(SafetensorsWriter, WrongByteCountIsRejected) {
  TempDir dir;
  SafetensorsWriter writer(dir.file("w.safetensors"), {TensorSpec{"a", DType::kF32, {2, 3}}});
  const std::vector<std::byte> short_data(20);
  EXPECT_THAT([&] { writer.write("a", short_data); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("tensor 'a' is declared as F32 [2, 3] = 24 bytes but got 20 bytes")));
}

TEST(SafetensorsWriter, WriteBeyondTheDeclarationsIsRejected) {
  TempDir dir;
  const TensorData a = make_tensor("a", DType::kU8, {1}, 1);
  SafetensorsWriter writer(dir.file("w.safetensors"), {a.spec});
  writer.write("a", a.bytes);
  EXPECT_THAT([&] { writer.write("extra", a.bytes); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("write of 'extra' but all 1 declared tensors were already written")));
}

TEST(SafetensorsWriter, FinishBeforeEveryTensorIsRejected) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const TensorData a = make_tensor("a", DType::kU8, {1}, 1);
  const TensorData b = make_tensor("b", DType::kU8, {1}, 2);
  {
    SafetensorsWriter writer(path, {a.spec, b.spec});
    writer.write("a", a.bytes);
    EXPECT_THAT([&] { writer.finish(); },
                ::testing::ThrowsMessage<Error>(
                    HasSubstr("finish() after 1 of 2 declared tensors; 'b' is next")));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsWriter, BadDeclarationsAreRejected) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  EXPECT_THAT(
      [&] {
        SafetensorsWriter w(path,
                            {TensorSpec{"a", DType::kU8, {1}}, TensorSpec{"a", DType::kU8, {1}}});
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("tensor 'a' is declared twice")));
  EXPECT_THAT(
      [&] {
        SafetensorsWriter w(path, {TensorSpec{"a", DType::kU8, {2, -1}}});
      },
      ::testing::ThrowsMessage<Error>(
          HasSubstr("tensor 'a': negative dimension -1 in shape [2, -1]")));
  EXPECT_THAT(
      [&] {
        SafetensorsWriter w(path, {TensorSpec{"__metadata__", DType::kU8, {1}}});
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("cannot be named __metadata__")));
  EXPECT_THAT(
      [&] {
        SafetensorsWriter w(path, {TensorSpec{"big", DType::kF64, {int64_t{1} << 40, 1 << 30}}});
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("is too large")));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsWriter, UnwritableFolderIsAnError) {
  EXPECT_THAT(
      [] { SafetensorsWriter w("/nonexistent-m2fp4-dir/x.safetensors", {}); },
      ::testing::ThrowsMessage<Error>(HasSubstr("/nonexistent-m2fp4-dir/x.safetensors.partial")));
}

TEST(SafetensorsFile, MissingTensorNamesTensorAndFile) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_safetensors(path, {make_tensor("present", DType::kU8, {1}, 1)});
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_THAT([&] { file.tensor("absent"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("missing tensor absent in " + path)));
}

TEST(SafetensorsFile, MissingFileIsAnError) {
  EXPECT_THAT([] { SafetensorsFile::open("/nonexistent-m2fp4-dir/x.safetensors"); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("/nonexistent-m2fp4-dir/x.safetensors: cannot open")));
}

TEST(SafetensorsFile, ReadModeDataIsAlignedForTheKernels) {
  // kRead places the file at a 64-byte boundary and the writer pads the header to 8, so every
  // tensor's data starts at least 8-byte aligned plus its offset.
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  write_safetensors(path, {make_tensor("abc", DType::kF64, {3}, 1)});
  const SafetensorsFile file = SafetensorsFile::open(path, LoadMode::kRead);
  EXPECT_EQ(std::bit_cast<uintptr_t>(file.tensor("abc").data) % 8, 0u);
}

}  // namespace
}  // namespace m2fp4
