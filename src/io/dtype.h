// Element types of safetensors files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace m2fp4 {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kF8E8M0, kU8, kI8, kI32, kI64, kF64 };

size_t dtype_size(DType dtype);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
// Parses the safetensors spelling; throws m2fp4::Error naming an unknown dtype.
DType parse_dtype(std::string_view name);

}  // namespace m2fp4
