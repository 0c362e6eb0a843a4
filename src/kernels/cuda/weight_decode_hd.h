// Decoding of stored weight elements for the CUDA kernels, written once for both compilers: the
// kernels call these on the device, and the host tests call the very same functions against the
// scalar truth (kernels/cpu/weight_decode.h) for every code of every format. Only integer and
// float bit arithmetic: no lookup tables in memory (divergent constant-memory reads serialise),
// no host-only library calls.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/weight.h"

#if defined(__CUDACC__)
#define M2FP4_HD __host__ __device__ __forceinline__
#else
#define M2FP4_HD inline
#endif

namespace m2fp4::cuda {

// Columns one thread decodes at a time: 8 columns are 4 bytes of 4-bit codes, 8 bytes of FP8,
// 16 bytes of BF16/F16 and 32 bytes of F32, so every load is naturally aligned when cols % 8 == 0
// (the launch checks require it) and the buffers are 16-byte aligned.
inline constexpr int kChunk = 8;

M2FP4_HD float bits_to_f32(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// float8_e4m3fn, as numerics/fp8_e4m3.h: bias 7, subnormal m * 2^-9, 0x7F/0xFF NaN.
M2FP4_HD float e4m3_value(uint32_t code) {
  const uint32_t exp = (code >> 3) & 0xFu;
  const uint32_t mant = code & 0x7u;
  float mag;
  if (exp == 0xFu && mant == 0x7u) {
    mag = bits_to_f32(0x7FC00000u);
  } else if (exp == 0) {
    mag = static_cast<float>(mant) * (1.0f / 512.0f);
  } else {
    mag = bits_to_f32(((exp + 120u) << 23) | (mant << 20));
  }
  return (code & 0x80u) ? -mag : mag;
}

// E2M1 (numerics/e2m1.h): magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 built as float bits (exact);
// code 8 is -0.
M2FP4_HD float e2m1_value(uint32_t code) {
  const uint32_t m = code & 0x7u;
  const uint32_t mag =
      m < 2 ? (m == 1 ? 0x3F000000u : 0u) : ((((m >> 1) + 126u) << 23) | ((m & 1u) << 22));
  return bits_to_f32(mag | ((code & 0x8u) << 28));
}

// E8M0 (numerics/e8m0.h): 2^(code - 127); code 0 is the f32 subnormal 2^-127; 0xFF is NaN.
M2FP4_HD float e8m0_value(uint32_t code) {
  if (code == 0xFFu) return bits_to_f32(0x7FC00000u);
  if (code == 0) return bits_to_f32(0x00400000u);
  return bits_to_f32(code << 23);
}

// IEEE binary16 (numerics/f16.h).
M2FP4_HD float f16_value(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    const float mag = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7F800000u | (mant << 13));
  return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

M2FP4_HD float bf16_value(uint32_t bits) {
  return bits_to_f32(bits << 16);
}

// The IQ4_NL codebook (numerics/iq4nl.h) packed four int8 levels per word, selected in registers:
// -127, -104, -83, -65 | -49, -35, -22, -10 | 1, 13, 25, 38 | 53, 69, 89, 113.
M2FP4_HD float iq4nl_value(uint32_t code) {
  const uint32_t q = code & 0xFu;
  const uint32_t word =
      q < 8 ? (q < 4 ? 0xBFAD9881u : 0xF6EADDCFu) : (q < 12 ? 0x26190D01u : 0x71594535u);
  const int8_t level = static_cast<int8_t>((word >> (8 * (q & 3u))) & 0xFFu);
  return static_cast<float>(level);
}

// The f32 multiplier of group g of row r of a 4-bit weight (as group_scale_value()).
M2FP4_HD float group_scale(const Weight& w, int64_t r, int64_t g) {
  const int64_t i = r * (w.cols / w.group_size) + g;
  switch (w.format) {
    case WeightFormat::kNvfp4:
      return e4m3_value(w.group_scale[i]) * w.global_scale;
    case WeightFormat::kMxfp4:
      return e8m0_value(w.group_scale[i]);
    case WeightFormat::kIq4nl16:
      return f16_value(static_cast<uint32_t>(w.group_scale[2 * i]) |
                       (static_cast<uint32_t>(w.group_scale[2 * i + 1]) << 8));
    default:
      return 1.0f;
  }
}

// Aligned vector loads (one instruction on the device; memcpy on the host).
struct U32x4 {
  uint32_t v[4];
};
M2FP4_HD U32x4 load16(const void* p) {
  U32x4 out;
#if defined(__CUDA_ARCH__)
  const uint4 u = *static_cast<const uint4*>(p);
  out.v[0] = u.x;
  out.v[1] = u.y;
  out.v[2] = u.z;
  out.v[3] = u.w;
#else
  std::memcpy(out.v, p, 16);
#endif
  return out;
}
M2FP4_HD uint32_t load4(const void* p) {
#if defined(__CUDA_ARCH__)
  return *static_cast<const uint32_t*>(p);
#else
  uint32_t u;
  std::memcpy(&u, p, 4);
  return u;
#endif
}

// Columns c0 .. c0+7 of row r decoded to f32 exactly as weight_element() (kChunk-aligned c0,
// cols % kChunk == 0; for 4-bit formats group_size % kChunk == 0, so one scale covers a chunk).
M2FP4_HD void decode_chunk(const Weight& w, int64_t r, int64_t c0, float out[kChunk]) {
  const int64_t i = r * w.cols + c0;
  switch (w.format) {
    case WeightFormat::kF32: {
      const float* p = static_cast<const float*>(w.data) + i;
      const U32x4 a = load16(p);
      const U32x4 b = load16(p + 4);
      for (int k = 0; k < 4; ++k) {
        out[k] = bits_to_f32(a.v[k]);
        out[4 + k] = bits_to_f32(b.v[k]);
      }
      return;
    }
    case WeightFormat::kBF16:
    case WeightFormat::kF16: {
      const U32x4 a = load16(static_cast<const uint16_t*>(w.data) + i);
      const bool bf = w.format == WeightFormat::kBF16;
      for (int k = 0; k < 4; ++k) {
        const uint32_t lo = a.v[k] & 0xFFFFu, hi = a.v[k] >> 16;
        out[2 * k] = bf ? bf16_value(lo) : f16_value(lo);
        out[2 * k + 1] = bf ? bf16_value(hi) : f16_value(hi);
      }
      return;
    }
    case WeightFormat::kFp8Block128: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + i;
      const uint32_t lo = load4(p), hi = load4(p + 4);
      const float scale = w.block_scale[(r / 128) * w.scale_cols + c0 / 128];
      for (int k = 0; k < 4; ++k) {
        out[k] = e4m3_value((lo >> (8 * k)) & 0xFFu) * scale;
        out[4 + k] = e4m3_value((hi >> (8 * k)) & 0xFFu) * scale;
      }
      return;
    }
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16: {
      // 8 codes in one word, even column in the low nibble of each byte.
      const uint32_t codes = load4(static_cast<const uint8_t*>(w.data) + i / 2);
      const float scale = group_scale(w, r, c0 / w.group_size);
      const bool iq = w.format == WeightFormat::kIq4nl16;
      for (int k = 0; k < kChunk; ++k) {
        const uint32_t q = (codes >> (4 * k)) & 0xFu;
        out[k] = (iq ? iq4nl_value(q) : e2m1_value(q)) * scale;
      }
      return;
    }
  }
  for (int k = 0; k < kChunk; ++k) out[k] = 0.0f;
}

}  // namespace m2fp4::cuda
