// Which SIMD target the runtime dispatch of the CPU kernels picks (for benchmark labels and for
// tests that run the kernels once per target).
#pragma once

namespace m2fp4 {

// Highway's name of the dispatched target, e.g. "AVX3", "AVX2", "NEON".
const char* kernels_simd_target();

}  // namespace m2fp4
