// FP4 E2M1 (quant-formats.md §1.1): 4 bits s|e1e0|m, bias 1, no inf/NaN, max magnitude 6.
// Codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8..15 their negatives (8 = -0).
#pragma once

#include <array>
#include <cstdint>

namespace m2fp4 {

inline constexpr std::array<float, 16> kE2m1Values = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,
                                                      4.0f,  6.0f,  -0.0f, -0.5f, -1.0f, -1.5f,
                                                      -2.0f, -3.0f, -4.0f, -6.0f};

inline constexpr uint8_t kE2m1SignBit = 0x8;

constexpr float e2m1_to_f32(uint8_t code) {
  return kE2m1Values[code & 0xFu];
}

// Magnitude code (0..7) of m = |x| rounded to nearest, ties to the even code, saturating at 6:
// the sum of the threshold comparisons of §1.1. A NaN compares false everywhere and gives 0.
constexpr uint8_t e2m1_magnitude_rne(float m) {
  return static_cast<uint8_t>((m > 0.25f) + (m >= 0.75f) + (m > 1.25f) + (m >= 1.75f) + (m > 2.5f) +
                              (m >= 3.5f) + (m > 5.0f));
}

// Magnitude code with ties toward zero (llama.cpp's MXFP4 quantizer, modelopt's MXFP4QTensor):
// every threshold is a strict comparison.
constexpr uint8_t e2m1_magnitude_ties_toward_zero(float m) {
  return static_cast<uint8_t>((m > 0.25f) + (m > 0.75f) + (m > 1.25f) + (m > 1.75f) + (m > 2.5f) +
                              (m > 3.5f) + (m > 5.0f));
}

// RNE, saturating encode as NVFP4 producers (modelopt, compressed-tensors), the OCP spec and
// cvt.rn.satfinite.e2m1 do it. The sign bit is set for x < 0, so a small negative that rounds to
// zero becomes code 8 (-0), while an input of exactly -0.0 gives code 0.
constexpr uint8_t f32_to_e2m1(float x) {
  const float m = x < 0.0f ? -x : x;
  return static_cast<uint8_t>((x < 0.0f ? kE2m1SignBit : 0) | e2m1_magnitude_rne(m));
}

// Who sets the sign bit when the toward-zero variant is used.
enum class E2m1ZeroSign {
  kNegativeInput,     // sign = (x < 0), as the RNE encoder above
  kNeverNegZero,      // llama.cpp: a result of magnitude 0 is always code 0
  kNonPositiveInput,  // modelopt MXFP4QTensor: sign = (x <= 0), exact zeros become code 8
};

// Ties-toward-zero, saturating encode (llama.cpp / modelopt MXFP4), sign rule as chosen.
constexpr uint8_t f32_to_e2m1_ties_toward_zero(float x, E2m1ZeroSign zero_sign) {
  const float m = x < 0.0f ? -x : x;
  const uint8_t mag = e2m1_magnitude_ties_toward_zero(m);
  bool negative = false;
  switch (zero_sign) {
    case E2m1ZeroSign::kNegativeInput:
      negative = x < 0.0f;
      break;
    case E2m1ZeroSign::kNeverNegZero:
      negative = x < 0.0f && mag != 0;
      break;
    case E2m1ZeroSign::kNonPositiveInput:
      negative = x <= 0.0f;
      break;
  }
  return static_cast<uint8_t>((negative ? kE2m1SignBit : 0) | mag);
}

}  // namespace m2fp4
