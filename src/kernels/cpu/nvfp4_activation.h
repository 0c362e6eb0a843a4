// W4A4 emulation for NVFP4 weights (quant-formats.md §2.7): the activations an FP4 x FP4 GEMM
// would see, as f32 values, so an f32 matmul against the decoded NVFP4 weight reproduces the
// quantized product up to f32 summation order.
#pragma once

#include <cstdint>

namespace m2fp4 {

// x: n tokens of cols floats (cols % 16 == 0); input_scale: the calibrated modelopt input_scale
// (amax / 2688; finite, > 0), so the activation global is G = f32(1 / input_scale). Per token and
// 16 consecutive columns, as the runtime kernels quantize:
//   vmax = max|x|;  S = e4m3_satfinite(f32(G * f32(vmax * f32(1/6))))
//   q    = e2m1_rne_satfinite(f32(x * f32(G / e4m3(S))))   (q = 0 when S is 0)
//   out  = f32(f32(e2m1(q) * e4m3(S)) / G)
// A block holding NaN or +-inf becomes NaN. x_out may alias x.
// SIMD (the best Highway target of this CPU); bit-identical to the scalar twin below.
void nvfp4_quantize_activations(const float* x, int64_t n, int64_t cols, float input_scale,
                                float* x_out);

namespace scalar {
void nvfp4_quantize_activations(const float* x, int64_t n, int64_t cols, float input_scale,
                                float* x_out);
}  // namespace scalar

}  // namespace m2fp4
