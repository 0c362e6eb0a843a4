// Per-target (Highway) code of the fast non-matmul kernels; included by ops.cc once per SIMD
// target via foreach_target.h. Not compiled on its own (the CMake glob skips *-inl.cc).
// Arguments are validated by ops.cc before these run.

#if defined(M2FP4_KERNELS_CPU_OPS_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_OPS_INL_CC_
#undef M2FP4_KERNELS_CPU_OPS_INL_CC_
#else
#define M2FP4_KERNELS_CPU_OPS_INL_CC_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Sum of squares of x[0, n) with 4 vector accumulators (f32; tail added scalar).
float sum_of_squares(const float* x, int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    const VF x0 = hn::LoadU(df, x + i), x1 = hn::LoadU(df, x + i + N);
    const VF x2 = hn::LoadU(df, x + i + 2 * N), x3 = hn::LoadU(df, x + i + 3 * N);
    a0 = hn::MulAdd(x0, x0, a0);
    a1 = hn::MulAdd(x1, x1, a1);
    a2 = hn::MulAdd(x2, x2, a2);
    a3 = hn::MulAdd(x3, x3, a3);
  }
  for (; i + N <= n; i += N) {
    const VF v = hn::LoadU(df, x + i);
    a0 = hn::MulAdd(v, v, a0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

void RmsNormImpl(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
                 float* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* xt = x + t * n;
    float* ot = out + t * n;
    const float inv_rms = static_cast<float>(
        1.0 / std::sqrt(double{sum_of_squares(xt, n)} / static_cast<double>(n) + double{eps}));
    const VF vinv = hn::Set(df, inv_rms);
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, xt + i), vinv), hn::LoadU(df, weight + i)), df,
                 ot + i);
    }
    for (; i < n; ++i) ot[i] = xt[i] * inv_rms * weight[i];
  }
}

// cos/sin of position * inv_freq[i] (f32, computed in double) for i < half.
void RopeImpl(float* x, int64_t n_heads, int64_t head_dim, int64_t half, const float* cos_table,
              const float* sin_table) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t h = 0; h < n_heads; ++h) {
    float* lo = x + h * head_dim;
    float* hi = lo + half;
    int64_t i = 0;
    for (; i + N <= half; i += N) {
      const VF a = hn::LoadU(df, lo + i), b = hn::LoadU(df, hi + i);
      const VF c = hn::LoadU(df, cos_table + i), s = hn::LoadU(df, sin_table + i);
      hn::StoreU(hn::NegMulAdd(b, s, hn::Mul(a, c)), df, lo + i);
      hn::StoreU(hn::MulAdd(a, s, hn::Mul(b, c)), df, hi + i);
    }
    for (; i < half; ++i) {
      const float a = lo[i], b = hi[i];
      lo[i] = a * cos_table[i] - b * sin_table[i];
      hi[i] = b * cos_table[i] + a * sin_table[i];
    }
  }
}

// Dot product of two head vectors of length n (f32 FMA, 2 accumulators).
HWY_INLINE float dot(const float* a, const float* b, int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF a0 = hn::Zero(df), a1 = a0;
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    a0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), a0);
    a1 = hn::MulAdd(hn::LoadU(df, a + i + N), hn::LoadU(df, b + i + N), a1);
  }
  for (; i + N <= n; i += N) a0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), a0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[0, NV * N) = inv_sum * sum_j p[j] * v[j * stride + (0, NV * N)].
template <int NV>
HWY_INLINE void weighted_value_sum(const float* p, const float* v, int64_t n_ctx, int64_t stride,
                                   float inv_sum, float* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[NV];
  HWY_UNROLL(8)
  for (int i = 0; i < NV; ++i) acc[i] = hn::Zero(df);
  for (int64_t j = 0; j < n_ctx; ++j) {
    const VF pj = hn::Set(df, p[j]);
    const float* vj = v + j * stride;
    HWY_UNROLL(8)
    for (int i = 0; i < NV; ++i) acc[i] = hn::MulAdd(pj, hn::LoadU(df, vj + i * N), acc[i]);
  }
  const VF scale = hn::Set(df, inv_sum);
  HWY_UNROLL(8)
  for (int i = 0; i < NV; ++i) hn::StoreU(hn::Mul(acc[i], scale), df, out + i * N);
}

// Query heads [h_begin, h_end), all of KV head g, over n_ctx positions. scores: n_ctx floats.
void AttentionHeadsImpl(const float* q, const float* k, const float* v, int64_t n_ctx,
                        int64_t kv_row_stride, int64_t g, int64_t h_begin, int64_t h_end,
                        int64_t head_dim, float* out, float* scores) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float* kg = k + g * head_dim;
  const float* vg = v + g * head_dim;
  for (int64_t h = h_begin; h < h_end; ++h) {
    const float* qh = q + h * head_dim;
    float max_score = -INFINITY;
    for (int64_t j = 0; j < n_ctx; ++j) {
      scores[j] = dot(qh, kg + j * kv_row_stride, head_dim) * scale;
      max_score = std::max(max_score, scores[j]);
    }
    // Softmax numerators in place, vectorised exp.
    const VF vmax = hn::Set(df, max_score);
    VF vsum = hn::Zero(df);
    int64_t j = 0;
    for (; j + N <= n_ctx; j += N) {
      const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, scores + j), vmax));
      hn::StoreU(e, df, scores + j);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
    for (; j < n_ctx; ++j) {
      scores[j] = std::exp(scores[j] - max_score);
      sum += scores[j];
    }
    // out_h = sum_j p_j v_j / sum, head_dim in chunks of 8 vectors (then single vectors).
    float* oh = out + h * head_dim;
    const float inv_sum = 1.0f / sum;
    int64_t d = 0;
    for (; d + 8 * N <= head_dim; d += 8 * N) {
      weighted_value_sum<8>(scores, vg + d, n_ctx, kv_row_stride, inv_sum, oh + d);
    }
    for (; d + N <= head_dim; d += N) {
      weighted_value_sum<1>(scores, vg + d, n_ctx, kv_row_stride, inv_sum, oh + d);
    }
    for (; d < head_dim; ++d) {
      float acc = 0.0f;
      for (int64_t j2 = 0; j2 < n_ctx; ++j2) acc += scores[j2] * vg[j2 * kv_row_stride + d];
      oh[d] = acc * inv_sum;
    }
  }
}

void SiluMulImpl(const float* gate, const float* up, int64_t n, float* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF one = hn::Set(df, 1.0f);
  // exp(88) is near FLT_MAX; past it silu(g) is -0 to within 1e-36 (and Exp's valid range ends).
  const VF max_arg = hn::Set(df, 88.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const VF g = hn::LoadU(df, gate + i);
    const VF e = hn::Exp(df, hn::Min(hn::Neg(g), max_arg));
    hn::StoreU(hn::Mul(hn::Div(g, hn::Add(one, e)), hn::LoadU(df, up + i)), df, out + i);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
