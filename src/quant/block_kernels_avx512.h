// AVX-512 versions of the E2M1 block encoders of block_kernels.h: 16 elements (one sub-block)
// per vector, the same IEEE float32 division or multiply per element and the same threshold
// comparisons as the scalar encoders (tests sweep float32 bit patterns against them). The
// compiler's AVX2 clones of the portable loops took ~25% of an NVFP4 quantize run.
#pragma once

#include <cstdint>

#include "numerics/e2m1.h"

namespace m2fp4::quant_detail {

bool e2m1_avx512_available();

// Only where e2m1_avx512_available(); the arguments are those of the portable encoders.
void encode_e2m1_rne_avx512(const float* x, const float* factor, int64_t n_blocks, bool multiply,
                            uint8_t* packed);
void encode_e2m1_toward_zero_avx512(const float* x, const float* divisor, int64_t n_blocks,
                                    E2m1ZeroSign zero_sign, uint8_t* packed);

}  // namespace m2fp4::quant_detail
