// The IQ4_NL x16 block quantizer for 16 consecutive blocks at once, bit-identical to
// iq4nl16_quantize_block (iq4nl16.cc, its scalar twin) on every block.
#pragma once

#include <cstdint>

#include "quant/iq4nl16.h"

namespace m2fp4 {

// Whether this CPU runs iq4nl16_quantize_16_blocks (AVX-512F).
bool iq4nl16_simd_available();

// Blocks b = 0..15 of x (256 consecutive floats, all finite) with importance + 16 b (or none):
// d[b] as iq4nl16_quantize_block returns it and its 16 codes packed two per byte (even index in
// the low nibble) at packed + 8 b. Only when iq4nl16_simd_available().
void iq4nl16_quantize_16_blocks(const float* x, const float* importance,
                                const Iq4nl16Options& options, float* d, uint8_t* packed);

// out[i] = f32_to_f16(in[i]) for i < 16 by the hardware conversion (round to nearest even, NaN
// kept quiet with its top payload bits, as the scalar twin does). Only when
// iq4nl16_simd_available().
void f32_to_f16_16(const float* in, uint16_t* out);

}  // namespace m2fp4
