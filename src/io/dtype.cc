#include "io/dtype.h"

#include <array>

#include "base/error.h"

namespace m2fp4 {
namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

// One row per DType, in enum order (dtype_size/dtype_name index it by the enum value).
constexpr std::array<DTypeEntry, 10> kDTypes = {{
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E8M0, "F8_E8M0", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kI32, "I32", 4},
    {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},
}};

constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(table_in_enum_order());

const DTypeEntry& entry(DType dtype) {
  const auto i = static_cast<size_t>(dtype);
  M2_CHECK(i < kDTypes.size(), "invalid DType value ", i);
  return kDTypes[i];
}

}  // namespace

size_t dtype_size(DType dtype) {
  return entry(dtype).size;
}

std::string_view dtype_name(DType dtype) {
  return entry(dtype).name;
}

DType parse_dtype(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  fail("unknown dtype '", name,
       "' (supported: F32, F16, BF16, F8_E4M3, F8_E8M0, U8, I8, I32, I64, F64)");
}

}  // namespace m2fp4
