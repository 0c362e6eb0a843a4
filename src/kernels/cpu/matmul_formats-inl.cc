// Per-target (Highway) decoders of the stored weight formats to f32 vectors for the f32 GEMV and
// GEMM tiles of the fast matmul (matmul_gemv-inl.cc, matmul_gemm-inl.cc): F32, BF16, F16 and FP8
// (e4m3 x block scale, rounded once as the scalar twin does), with the per-row view of a weight
// they read through. Included by matmul-inl.cc once per SIMD target; not compiled on its own.

#if defined(M2FP4_KERNELS_CPU_MATMUL_FORMATS_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL_FORMATS_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL_FORMATS_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL_FORMATS_INL_CC_
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "hwy/highway.h"
#include "numerics/bf16.h"
#include "numerics/f16.h"
#include "numerics/fp8_e4m3.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// x86 AVX2/SSE have 16 vector registers; AVX-512, NEON, SVE have 32. The GEMV and GEMM register
// tiles are sized by it.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr bool kManyRegisters = false;
#else
constexpr bool kManyRegisters = true;
#endif

struct FormatF32 {
  using Stored = float;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const float* p, VF) { return hn::LoadU(df, p); }
  static float at(const float* p) { return *p; }
};

struct FormatBF16 {
  using Stored = uint16_t;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const uint16_t* p, VF) {
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  }
  static float at(const uint16_t* p) { return bf16_to_f32(*p); }
};

struct FormatF16 {
  using Stored = uint16_t;
  static constexpr bool kScaled = false;
  static constexpr bool kHasNanCodes = false;
  static VF load(DF df, const uint16_t* p, VF) {
    const hn::Rebind<hwy::float16_t, DF> df16;
    return hn::PromoteTo(df, hn::LoadU(df16, reinterpret_cast<const hwy::float16_t*>(p)));
  }
  static float at(const uint16_t* p) { return f16_to_f32(*p); }
};

// 2^120: an e4m3 code's bits placed in an f32's sign/exponent/mantissa fields read as the code's
// value times 2^-120 (subnormal codes become f32 subnormals, also exact).
constexpr float kTwoTo120 = 1.329227995784916e36f;

// FP8 with the exponent bias fixed by one multiply. `mul` is block_scale * 2^120, which is exact
// and gives the same single rounding as e4m3 * block_scale when |block_scale| < 2^8; larger
// scales take FormatFp8TwoStep. NaN codes (0x7F, 0xFF) need a compare and blend; the GEMV path
// first checks 4 vectors of codes at once with any_nan() and, when there are none (always, in
// a sound checkpoint), decodes them with load_finite().
struct FormatFp8 {
  using Stored = uint8_t;
  static constexpr bool kScaled = true;
  static constexpr bool kHasNanCodes = true;
  static hn::Vec<hn::RebindToSigned<DF>> bits(DF df, const uint8_t* p) {
    const hn::Rebind<int8_t, DF> di8;
    const hn::RebindToSigned<DF> di32;
    (void)df;
    // Sign-extended code << 20 puts the sign in bit 31 and E4M3 in bits 20..26.
    const auto code = hn::PromoteTo(di32, hn::LoadU(di8, reinterpret_cast<const int8_t*>(p)));
    return hn::And(hn::ShiftLeft<20>(code), hn::Set(di32, int32_t(0x87F00000u)));
  }
  static VF load_finite(DF df, const uint8_t* p, VF mul) {
    return hn::Mul(hn::BitCast(df, bits(df, p)), mul);
  }
  static VF load(DF df, const uint8_t* p, VF mul) {
    const hn::RebindToSigned<DF> di32;
    const auto b = bits(df, p);
    const auto magnitude = hn::Set(di32, 0x07F00000);
    const auto is_nan = hn::Eq(hn::And(b, magnitude), magnitude);
    return hn::IfThenElse(hn::RebindMask(df, is_nan),
                          hn::Set(df, std::numeric_limits<float>::quiet_NaN()),
                          hn::Mul(hn::BitCast(df, b), mul));
  }
  // Whether any of the 4 * Lanes(DF) codes at p is a NaN code.
  static bool any_nan(DF df, const uint8_t* p) {
    const hn::ScalableTag<uint8_t> du8;  // 4x the f32 lanes (1 on HWY_SCALAR: loop below)
    const size_t n = 4 * hn::Lanes(df);
    if (hn::Lanes(du8) == n) {
      const auto v = hn::And(hn::LoadU(du8, p), hn::Set(du8, uint8_t{0x7F}));
      return !hn::AllFalse(du8, hn::Eq(v, hn::Set(du8, uint8_t{0x7F})));
    }
    for (size_t i = 0; i < n; ++i) {
      if ((p[i] & 0x7F) == 0x7F) return true;
    }
    return false;
  }
  static float at(const uint8_t* p) { return e4m3_to_f32(*p); }
};

struct FormatFp8TwoStep {
  using Stored = uint8_t;
  static constexpr bool kScaled = true;
  static constexpr bool kHasNanCodes = true;
  static VF load(DF df, const uint8_t* p, VF scale) {
    return hn::Mul(FormatFp8::load(df, p, hn::Set(df, kTwoTo120)), scale);
  }
  static VF load_finite(DF df, const uint8_t* p, VF scale) {
    return hn::Mul(FormatFp8::load_finite(df, p, hn::Set(df, kTwoTo120)), scale);
  }
  static bool any_nan(DF df, const uint8_t* p) { return FormatFp8::any_nan(df, p); }
  static float at(const uint8_t* p) { return e4m3_to_f32(*p); }
};

// Per-row view of a weight with the block scale (1 for unscaled formats) of a column segment.
template <class Format>
struct RowSource {
  const typename Format::Stored* base;
  int64_t cols;
  const float* block_scale;
  int64_t scale_cols;

  const typename Format::Stored* row(int64_t r) const { return base + r * cols; }
  float scale(int64_t r, int64_t c) const {
    return Format::kScaled ? block_scale[(r / 128) * scale_cols + c / 128] : 1.0f;
  }
  // Multiplier vector handed to Format::load for the segment containing column c.
  VF multiplier(DF df, int64_t r, int64_t c) const {
    if constexpr (std::is_same_v<Format, FormatFp8>) return hn::Set(df, scale(r, c) * kTwoTo120);
    return hn::Set(df, scale(r, c));
  }
};

// Column segments share one block scale: 128 columns for FP8, the whole row otherwise.
template <class Format>
int64_t segment_length(int64_t cols) {
  return Format::kScaled ? 128 : std::max<int64_t>(cols, 1);
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
