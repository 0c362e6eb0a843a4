// Inner loops shared by the block quantizers, written so that the compiler vectorizes them (fixed
// trip counts of 16, branch-free bodies) and compiled twice, for AVX2 and for the baseline ISA,
// with the better one picked at load time (GCC target_clones). Both clones are the same IEEE
// float32 operations in the same order (no FMA: the quant layer builds with -ffp-contract=off),
// so their results are identical; the reference tests pin them to the spec.
#pragma once

#include <cstdint>

#include "numerics/e2m1.h"

// Compiles a function for AVX2 and for the baseline ISA; the loader picks one (GCC, x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define M2FP4_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define M2FP4_VECTOR_CLONES
#endif

namespace m2fp4::quant_detail {

inline constexpr int64_t kSubBlock = 16;

// n % 16 == 0 unless said otherwise; n_blocks counts sub-blocks of 16.

// bf16 bits -> float32.
void load_bf16(const uint16_t* in, int64_t n, float* out);

// max |x| of each sub-block of 16; NaN for a sub-block holding NaN or +-inf.
void sub_block_abs_max(const float* x, int64_t n_blocks, float* amax);

// max |x| over n elements (any n); NaN if any is NaN or +-inf.
float abs_max(const float* x, int64_t n);

// max |x| over n bf16 values (any n), as bf16 magnitude bits: the bits with the sign cleared
// order like the magnitudes, and NaN and inf (>= 0x7F80) above every finite value.
uint16_t bf16_abs_max_bits(const uint16_t* x, int64_t n);

// E2M1 codes of f32(x / divisor[b]) for each sub-block b, RNE with sign = (x < 0) (§1.1), packed
// two per byte with the even index in the low nibble.
void encode_e2m1_rne(const float* x, const float* divisor, int64_t n_blocks, uint8_t* packed);

// Same with a multiplier instead of a divisor: f32(x * multiplier[b]) (the activation path).
void encode_e2m1_rne_mul(const float* x, const float* multiplier, int64_t n_blocks,
                         uint8_t* packed);

// Ties toward zero with the given zero-sign rule (llama.cpp / modelopt MXFP4).
void encode_e2m1_toward_zero(const float* x, const float* divisor, int64_t n_blocks,
                             E2m1ZeroSign zero_sign, uint8_t* packed);

// E4M3 codes of f32(x[i] / divisor) for any n, with PyTorch's cast semantics (RNE; past 464,
// inf and NaN -> NaN 0x7F | sign): equal to f32_to_e4m3(x[i] / divisor, Fp8Overflow::kNan).
void encode_e4m3_div(const float* x, float divisor, int64_t n, uint8_t* codes);

}  // namespace m2fp4::quant_detail
