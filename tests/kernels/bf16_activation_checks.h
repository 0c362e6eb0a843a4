// Shared checks of the kernels that round activations to bf16 (matmul_bf16dot.h for BF16
// weights, matmul_fp8dot.h for FP8 ones, and the BF16 GEMM): which dispatch targets run them, the
// per-output sums of |products| their bounds are made of, and the fast matmul against the
// scalar twin and the f32-activation matmul.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_bf16dot.h"
#include "kernels/test_util.h"

namespace m2fp4::test {

// Whether matmul() on the current dispatch target rounds BF16 activations (with kBf16 set): the
// AVX-512 targets on a CPU with AVX512_BF16.
inline bool bf16_activations_active() {
  return on_avx512_target() && bf16dot::cpu_supported();
}

// What the shared checks need to know of one bf16-activation kernel.
struct Bf16ActivationKernel {
  // The scalar twin (scalar::matmul_bf16_activations, scalar::matmul_fp8_bf16_activations).
  void (*twin)(const Weight& w, const float* x, int64_t n_tokens, float* y);
  // Whether matmul() on the current dispatch target runs the kernel for this many tokens of
  // this width (with kBf16 set); elsewhere the f32 kernels run.
  bool (*active)(int64_t n_tokens, int64_t cols);
  // The product of weight (r, c) of o and activation x, exact in double: {as the kernel forms it
  // (x rounded), with f32 activations}.
  std::pair<double, double> (*products)(const OwnedWeight& o, int64_t r, int64_t c, float x);
  // Relative error of the activation rounding: 2^-8 for bf16(x); FP8 adds the f32 rounding of
  // x * block scale before it.
  double rounding;
};

// Per output: sum over c of |w x| as the kernel forms the products, and with f32 activations.
struct AbsSums {
  std::vector<double> rounded, exact;
};

inline AbsSums abs_sums(const Bf16ActivationKernel& kernel, const OwnedWeight& o,
                        const std::vector<float>& x, int64_t n_tokens) {
  const Weight& w = o.w;
  AbsSums sums{std::vector<double>(n_tokens * w.rows), std::vector<double>(n_tokens * w.rows)};
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      for (int64_t c = 0; c < w.cols; ++c) {
        const auto [rounded, exact] = kernel.products(o, r, c, x[t * w.cols + c]);
        sums.rounded[t * w.rows + r] += std::abs(rounded);
        sums.exact[t * w.rows + r] += std::abs(exact);
      }
    }
  }
  return sums;
}

// The twin against a double-precision sum of the same products: sequential f32 summation of
// cols terms errs by at most (cols + 1) u sum|terms|.
inline void expect_twin_matches_double_sum(const Bf16ActivationKernel& kernel, const OwnedWeight& o,
                                           const std::vector<float>& x, int64_t n_tokens) {
  const Weight& w = o.w;
  std::vector<float> y(n_tokens * w.rows);
  kernel.twin(w, x.data(), n_tokens, y.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum = 0, sum_abs = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const double p = kernel.products(o, r, c, x[t * w.cols + c]).first;
        sum += p;
        sum_abs += std::abs(p);
      }
      ASSERT_NEAR(y[t * w.rows + r], sum, (w.cols + 1) * kF32Eps * sum_abs) << t << " " << r;
    }
  }
}

// The fast matmul (kBf16 set) on every SIMD target with each pool: against the twin where the
// kernel runs (two f32 summations of the same exact products: 2 (cols + 1) u sum|terms|), else
// against scalar::matmul with the same bound; and against the f32-activation matmul within
// rounding * sum|w x| (the activation rounding) plus both summations.
inline void expect_fast_matches_twin(const Bf16ActivationKernel& kernel, const OwnedWeight& o,
                                     int64_t n_tokens, const std::vector<ThreadPool*>& pools,
                                     uint32_t seed) {
  const Weight& w = o.w;
  const std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> twin(n_tokens * w.rows), f32(n_tokens * w.rows);
  kernel.twin(w, x.data(), n_tokens, twin.data());
  scalar::matmul(w, x.data(), n_tokens, f32.data());
  const AbsSums sums = abs_sums(kernel, o, x, n_tokens);
  const double order = 2.0 * (w.cols + 1) * kF32Eps;
  const ScopedBf16Activations bf16_mode(Bf16Activations::kBf16);
  for (ThreadPool* pool : pools) {
    for_each_simd_target([&] {
      const bool active = kernel.active(n_tokens, w.cols);
      std::vector<float> fast(n_tokens * w.rows, NAN);
      matmul(w, x.data(), n_tokens, fast.data(), *pool);
      for (size_t i = 0; i < fast.size(); ++i) {
        const float ref = active ? twin[i] : f32[i];
        const double sum_abs = active ? sums.rounded[i] : sums.exact[i];
        ASSERT_NEAR(fast[i], ref, order * sum_abs)
            << "[" << w.rows << " x " << w.cols << "] n_tokens=" << n_tokens
            << " threads=" << pool->size() << " t=" << i / w.rows << " r=" << i % w.rows;
        const double bound =
            kernel.rounding * sums.exact[i] + order * (sums.rounded[i] + sums.exact[i]);
        ASSERT_NEAR(fast[i], f32[i], bound) << "i=" << i;
      }
    });
  }
}

}  // namespace m2fp4::test
