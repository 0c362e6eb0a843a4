// BF16-weight matmul with activations rounded to bf16 on CPUs with AVX512_BF16: the GEMV (decode,
// up to 8 tokens) with vdpbf16ps; the GEMM (more tokens, gemm_bf16-inl.cc) runs f32 multiply-adds
// on the activations rounded to bf16 as they are packed, the same exact products (vdpbf16ps
// measured about half the f32 FMA's multiply-adds per second on this Xeon host). The GEMM does
// not flush subnormals as vdpbf16ps does (values below 2^-126 only).
//
// Accuracy decision, as llama.cpp makes it for its BF16 dot products: each token's activation row
// is rounded to bf16 once per call (round-to-nearest-even with 8 significant bits, so |x - bf16(x)|
// <= 2^-8 |x|), each product of a bf16 weight and a bf16 activation is exact in f32 (8 x 8
// significand bits), and the products are summed in f32. vdpbf16ps treats bf16 subnormals as zero
// and flushes subnormal sums to zero; the scalar twin does the same (bf16 values below 2^-126 in
// magnitude count as 0). With Bf16Activations::kF32 BF16 weights keep the f32-activation kernels
// (scalar::matmul numerics: every product exact in f32 with the activations as they are).
//
// The kernel runs only on CPUs with AVX-512 F/BW/VL/BF16 and on the AVX-512 dispatch targets;
// other CPUs and targets take the f32 kernels whatever the setting.
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace m2fp4 {

enum class Bf16Activations : uint8_t {
  kF32,   // f32 activations: the scalar::matmul numerics
  kBf16,  // activations rounded to bf16, vdpbf16ps dot products
};

// Process-wide setting read by every matmul call. The default is kBf16, or what the environment
// variable M2FP4_BF16_ACTIVATIONS (f32 | bf16) says; the CLI's --bf16-activations overrides it.
void set_bf16_activations(Bf16Activations mode);
Bf16Activations bf16_activations();
// Parses "f32" / "bf16" (throws m2fp4::Error otherwise).
Bf16Activations parse_bf16_activations(const char* name);

// Sets the process-wide mode for a scope and restores the previous one on exit (quantize's
// calibration and tests of the f32 numerics pin kF32).
class ScopedBf16Activations {
 public:
  explicit ScopedBf16Activations(Bf16Activations mode) : saved_(bf16_activations()) {
    set_bf16_activations(mode);
  }
  ~ScopedBf16Activations() { set_bf16_activations(saved_); }
  ScopedBf16Activations(const ScopedBf16Activations&) = delete;
  ScopedBf16Activations& operator=(const ScopedBf16Activations&) = delete;

 private:
  Bf16Activations saved_;
};

namespace bf16dot {

// Columns of a rounded activation row: cols padded with zeros to a multiple of 32 (one vector).
int64_t padded_columns(int64_t cols);

// Whether this CPU has the instructions of the kernel (AVX-512 F/BW/VL/BF16).
bool cpu_supported();

// Rounds n_tokens rows of x (cols floats each) to bf16 into out (n_tokens rows of
// padded_columns(cols), the padding zero). Needs cpu_supported().
void round_activations(const float* x, int64_t cols, int64_t n_tokens, uint16_t* out);

// y[t * w.rows + r] for rows [row_begin, row_end) of the BF16 weight w and all n_tokens rounded
// tokens xb (round_activations' layout). Needs cpu_supported().
void matmul_rows(const Weight& w, const uint16_t* xb, int64_t n_tokens, int64_t row_begin,
                 int64_t row_end, float* y);

}  // namespace bf16dot

namespace scalar {

// The bf16-activation matmul of a BF16 weight, one thread, as the fast kernel defines it: x
// rounded to bf16 (f32_to_bf16), weights and activations below 2^-126 in magnitude as zero, each
// product exact in f32, summed in f32 over the columns in order.
void matmul_bf16_activations(const Weight& w, const float* x, int64_t n_tokens, float* y);

}  // namespace scalar

}  // namespace m2fp4
