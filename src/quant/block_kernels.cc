#include "quant/block_kernels.h"

#include <bit>
#include <cstring>

#include "numerics/bf16.h"
#include "quant/block_kernels_avx512.h"

namespace m2fp4::quant_detail {
namespace {

// |x| as float32 bits: for non-negative floats the unsigned order is the numeric order, and NaN
// and inf (>= 0x7F800000) sort above every finite value.
inline uint32_t abs_bits(float x) {
  return std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
}

inline float amax_from_bits(uint32_t bits) {
  return bits >= 0x7F800000u ? __builtin_nanf("") : std::bit_cast<float>(bits);
}

template <typename Encode>
inline void pack16(const float* x, float factor, Encode encode, uint8_t* packed) {
  uint8_t codes[kSubBlock];
  for (int64_t i = 0; i < kSubBlock; ++i) codes[i] = encode(x[i], factor);
  for (int64_t j = 0; j < kSubBlock / 2; ++j) {
    packed[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
  }
}

}  // namespace

M2FP4_VECTOR_CLONES
void load_bf16(const uint16_t* in, int64_t n, float* out) {
  for (int64_t b = 0; b < n; b += kSubBlock) {
    for (int64_t i = 0; i < kSubBlock; ++i) out[b + i] = bf16_to_f32(in[b + i]);
  }
}

M2FP4_VECTOR_CLONES
void sub_block_abs_max(const float* x, int64_t n_blocks, float* amax) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint32_t m = 0;
    for (int64_t i = 0; i < kSubBlock; ++i) {
      const uint32_t a = abs_bits(x[b * kSubBlock + i]);
      m = a > m ? a : m;
    }
    amax[b] = amax_from_bits(m);
  }
}

M2FP4_VECTOR_CLONES
float abs_max(const float* x, int64_t n) {
  uint32_t lanes[kSubBlock] = {};
  const int64_t whole = n - n % kSubBlock;
  for (int64_t i = whole; i < n; ++i) {
    const uint32_t a = abs_bits(x[i]);
    lanes[0] = a > lanes[0] ? a : lanes[0];
  }
  for (int64_t b = 0; b < whole; b += kSubBlock) {
    for (int64_t i = 0; i < kSubBlock; ++i) {
      const uint32_t a = abs_bits(x[b + i]);
      lanes[i] = a > lanes[i] ? a : lanes[i];
    }
  }
  uint32_t m = 0;
  for (uint32_t lane : lanes) m = lane > m ? lane : m;
  return amax_from_bits(m);
}

M2FP4_VECTOR_CLONES
uint16_t bf16_abs_max_bits(const uint16_t* x, int64_t n) {
  constexpr int64_t kLanes = 32;
  uint16_t lanes[kLanes] = {};
  const int64_t whole = n - n % kLanes;
  for (int64_t b = 0; b < whole; b += kLanes) {
    for (int64_t i = 0; i < kLanes; ++i) {
      const uint16_t a = static_cast<uint16_t>(x[b + i] & 0x7FFFu);
      lanes[i] = a > lanes[i] ? a : lanes[i];
    }
  }
  uint16_t m = 0;
  for (int64_t i = whole; i < n; ++i) {
    const uint16_t a = static_cast<uint16_t>(x[i] & 0x7FFFu);
    m = a > m ? a : m;
  }
  for (uint16_t lane : lanes) m = lane > m ? lane : m;
  return m;
}

M2FP4_VECTOR_CLONES
void encode_e2m1_rne(const float* x, const float* divisor, int64_t n_blocks, uint8_t* packed) {
  if (e2m1_avx512_available()) return encode_e2m1_rne_avx512(x, divisor, n_blocks, false, packed);
  for (int64_t b = 0; b < n_blocks; ++b) {
    pack16(
        x + b * kSubBlock, divisor[b], [](float v, float d) { return f32_to_e2m1(v / d); },
        packed + b * kSubBlock / 2);
  }
}

M2FP4_VECTOR_CLONES
void encode_e2m1_rne_mul(const float* x, const float* multiplier, int64_t n_blocks,
                         uint8_t* packed) {
  if (e2m1_avx512_available()) {
    return encode_e2m1_rne_avx512(x, multiplier, n_blocks, true, packed);
  }
  for (int64_t b = 0; b < n_blocks; ++b) {
    pack16(
        x + b * kSubBlock, multiplier[b], [](float v, float m) { return f32_to_e2m1(v * m); },
        packed + b * kSubBlock / 2);
  }
}

namespace {

template <E2m1ZeroSign kZeroSign>
inline void encode_toward_zero(const float* x, const float* divisor, int64_t n_blocks,
                               uint8_t* packed) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    pack16(
        x + b * kSubBlock, divisor[b],
        [](float v, float d) { return f32_to_e2m1_ties_toward_zero(v / d, kZeroSign); },
        packed + b * kSubBlock / 2);
  }
}

}  // namespace

M2FP4_VECTOR_CLONES
void encode_e2m1_toward_zero(const float* x, const float* divisor, int64_t n_blocks,
                             E2m1ZeroSign zero_sign, uint8_t* packed) {
  if (e2m1_avx512_available()) {
    return encode_e2m1_toward_zero_avx512(x, divisor, n_blocks, zero_sign, packed);
  }
  switch (zero_sign) {
    case E2m1ZeroSign::kNegativeInput:
      return encode_toward_zero<E2m1ZeroSign::kNegativeInput>(x, divisor, n_blocks, packed);
    case E2m1ZeroSign::kNeverNegZero:
      return encode_toward_zero<E2m1ZeroSign::kNeverNegZero>(x, divisor, n_blocks, packed);
    case E2m1ZeroSign::kNonPositiveInput:
      return encode_toward_zero<E2m1ZeroSign::kNonPositiveInput>(x, divisor, n_blocks, packed);
  }
}

namespace {

// Branch-free twin of f32_to_e4m3(y, Fp8Overflow::kNan) so the loop vectorizes (selects are
// written as masks: GCC does not if-convert a float computation it has sunk into a branch).
inline uint8_t e4m3_torch_cast(float y) {
  const uint32_t bits = std::bit_cast<uint32_t>(y);
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t a = bits & 0x7FFFFFFFu;
  // Normal results: keep exponent + 3 mantissa bits, round the 20 dropped bits half to even.
  const uint32_t q = a >> 20;
  const uint32_t rem = a & 0xFFFFFu;
  const uint32_t up = (rem > 0x80000u) | ((rem == 0x80000u) & q);  // 0/1 & q: q's low bit
  const uint32_t normal = q + up - (120u << 3);
  // Below 2^-6 the grid is multiples of 2^-9. 2^14 has an ulp of 2^-9, so |y| + 2^14 rounds |y|
  // to that grid half to even, and its bits minus those of 2^14 count the 2^-9 steps (0..8).
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(a) + 16384.0f) - 0x46800000u;
  const uint32_t is_subnormal = 0u - static_cast<uint32_t>(a < 0x3C800000u);
  const uint32_t is_nan = 0u - static_cast<uint32_t>(a > 0x43E80000u);  // > 464, inf, NaN
  uint32_t code = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  code = (0x7Fu & is_nan) | (code & ~is_nan);
  return static_cast<uint8_t>(sign | code);
}

inline void encode_e4m3_16(const float* x, float divisor, uint8_t* codes) {
  uint8_t block[kSubBlock];  // a local buffer: stores through uint8_t* could alias x
  for (int64_t i = 0; i < kSubBlock; ++i) block[i] = e4m3_torch_cast(x[i] / divisor);
  std::memcpy(codes, block, kSubBlock);
}

}  // namespace

M2FP4_VECTOR_CLONES
void encode_e4m3_div(const float* x, float divisor, int64_t n, uint8_t* codes) {
  const int64_t whole = n - n % kSubBlock;
  for (int64_t b = 0; b < whole; b += kSubBlock) encode_e4m3_16(x + b, divisor, codes + b);
  for (int64_t i = whole; i < n; ++i) codes[i] = e4m3_torch_cast(x[i] / divisor);
}

}  // namespace m2fp4::quant_detail
