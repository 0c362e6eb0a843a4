#include "io/dtype.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/error.h"

namespace m2fp4 {
namespace {

using ::testing::HasSubstr;

struct Expected {
  DType dtype;
  const char* name;
  size_t size;
};

// Spellings and widths from the safetensors format description (Rust `Dtype`).
constexpr Expected kExpected[] = {
    {DType::kF32, "F32", 4},        {DType::kF16, "F16", 2},        {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E8M0, "F8_E8M0", 1}, {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},          {DType::kI32, "I32", 4},        {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},
};

TEST(DType, NamesAndSizesMatchTheFormat) {
  for (const Expected& e : kExpected) {
    EXPECT_EQ(dtype_name(e.dtype), e.name);
    EXPECT_EQ(dtype_size(e.dtype), e.size) << e.name;
    EXPECT_EQ(parse_dtype(e.name), e.dtype) << e.name;
  }
}

TEST(DType, UnknownNameIsAnErrorNamingIt) {
  for (const char* name : {"F4", "f32", "U16", "BOOL", ""}) {
    try {
      parse_dtype(name);
      ADD_FAILURE() << "parsed " << name;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("unknown dtype '") + name + "'"));
    }
  }
}

}  // namespace
}  // namespace m2fp4
