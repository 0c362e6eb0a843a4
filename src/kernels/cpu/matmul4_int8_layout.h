// The chunk layout and the vpermb code tables that the three AVX-512 kernels of the
// int8-activation 4-bit matmul share: the GEMV (matmul4_int8.cc, whose header comment describes
// the layout), the decode GEMV (matmul4_int8_decode.cc) and the prefill GEMM
// (matmul4_int8_gemm.cc). They must give the same bits for every (row, token), so they take the
// code values and biases from this one place. Internal to those files.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/weight.h"
#include "numerics/e2m1.h"
#include "numerics/iq4nl.h"

namespace m2fp4::int8_gemv {

// A chunk: 128 columns, 64 bytes of packed codes per row.
inline constexpr int64_t kChunkColumns = 128;
// Quantized activations of one chunk per token: 64 int8 even columns, 64 int8 odd columns, 16
// int32 -bias * lane sums, 16 f32 lane scales.
inline constexpr int64_t kChunkBytes = 256;

inline constexpr int64_t chunks_of(int64_t cols) {
  return (cols + kChunkColumns - 1) / kChunkColumns;
}

// E2M1 formats (NVFP4, MXFP4: code values x 2) or IQ4_NL levels.
inline constexpr bool is_e2m1(WeightFormat format) {
  return format != WeightFormat::kIq4nl16;
}

// Added to every code value so it is an unsigned byte for vpdpbusd: E2M1 values x 2 lie in
// [-12, 12], IQ4_NL levels in [-127, 113].
inline constexpr int32_t kE2m1CodeBias = 12;
inline constexpr int32_t kIq4nlCodeBias = 127;

inline constexpr int32_t code_bias(WeightFormat format) {
  return is_e2m1(format) ? kE2m1CodeBias : kIq4nlCodeBias;
}

// 64 bytes, aligned for one 512-bit load: a vpermb table or index vector.
struct alignas(64) ByteTable {
  uint8_t v[64];
};

// Code value + bias for index i % 16 (the 16 values repeated, so the index bits above the
// nibble do not matter): E2M1 values x 2 + 12, IQ4_NL levels + 127.
constexpr ByteTable make_code_table(bool e2m1) {
  ByteTable t{};
  for (int i = 0; i < 64; ++i) {
    const int value = e2m1 ? static_cast<int>(2.0f * kE2m1Values[static_cast<size_t>(i % 16)])
                           : kIq4nlLevels[static_cast<size_t>(i % 16)];
    t.v[i] = static_cast<uint8_t>(value + (e2m1 ? kE2m1CodeBias : kIq4nlCodeBias));
  }
  return t;
}
inline constexpr ByteTable kE2m1Table = make_code_table(true);
inline constexpr ByteTable kIq4nlTable = make_code_table(false);

}  // namespace m2fp4::int8_gemv
