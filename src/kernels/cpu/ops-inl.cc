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

#include <limits>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/cpu/ops_check.h"
#include "numerics/fp8_e4m3.h"

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

// Query heads of one KV head are processed together so that each K and V row is read from
// memory (or L3) once per block of heads, not once per head: position-major loops over the
// scores, and register-blocked passes over head_dim chunks for the weighted sum of V.

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr int kValueVectors = 2;  // 16 registers: 6 heads x 2 accumulators
#else
constexpr int kValueVectors = 4;  // 32 registers: 6 heads x 4 accumulators
#endif
constexpr int kHeadsPerPass = static_cast<int>(kAttentionHeadsPerPass);
static_assert(kHeadsPerPass == 6, "AttentionHeadsPagedImpl dispatches blocks of 1..6 heads");

// out[h][d0, d0 + C * N) = inv_sum[h] * sum_j p[h][j] * v[j][d0, ...] for HB heads. The sum
// may run over several calls (blocks of positions, in order): `first` starts it from zero,
// otherwise it continues from the partial sum in out; `last` applies inv_sum.
template <int HB, int C>
HWY_NOINLINE void weighted_values(const float* const* p, const float* v, int64_t n_ctx,
                                  int64_t stride, const float* inv_sum, bool first, bool last,
                                  float* const* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[HB][C];
  HWY_UNROLL(8)
  for (int h = 0; h < HB; ++h) {
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c) acc[h][c] = first ? hn::Zero(df) : hn::LoadU(df, out[h] + c * N);
  }
  for (int64_t j = 0; j < n_ctx; ++j) {
    VF vj[C];
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c) vj[c] = hn::LoadU(df, v + j * stride + c * N);
    HWY_UNROLL(8)
    for (int h = 0; h < HB; ++h) {
      const VF ph = hn::Set(df, p[h][j]);
      HWY_UNROLL(8)
      for (int c = 0; c < C; ++c) acc[h][c] = hn::MulAdd(ph, vj[c], acc[h][c]);
    }
  }
  HWY_UNROLL(8)
  for (int h = 0; h < HB; ++h) {
    const VF scale = hn::Set(df, inv_sum[h]);
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c) {
      hn::StoreU(last ? hn::Mul(acc[h][c], scale) : acc[h][c], df, out[h] + c * N);
    }
  }
}

template <int HB>
void weighted_values_all(const float* const* p, const float* v, int64_t n_ctx, int64_t stride,
                         int64_t head_dim, const float* inv_sum, bool first, bool last,
                         float* const* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  float* o[HB];
  int64_t d = 0;
  for (; d + kValueVectors * N <= head_dim; d += kValueVectors * N) {
    for (int h = 0; h < HB; ++h) o[h] = out[h] + d;
    weighted_values<HB, kValueVectors>(p, v + d, n_ctx, stride, inv_sum, first, last, o);
  }
  for (; d + N <= head_dim; d += N) {
    for (int h = 0; h < HB; ++h) o[h] = out[h] + d;
    weighted_values<HB, 1>(p, v + d, n_ctx, stride, inv_sum, first, last, o);
  }
  for (; d < head_dim; ++d) {
    for (int h = 0; h < HB; ++h) {
      float acc = first ? 0.0f : out[h][d];
      for (int64_t j = 0; j < n_ctx; ++j) acc += p[h][j] * v[j * stride + d];
      out[h][d] = last ? acc * inv_sum[h] : acc;
    }
  }
}

// weighted_values_all for a block of 1..kHeadsPerPass heads.
void weighted_values_heads(int64_t n_heads, const float* const* p, const float* v, int64_t n_ctx,
                           int64_t stride, int64_t head_dim, const float* inv_sum, bool first,
                           bool last, float* const* out) {
  switch (n_heads) {
    case 1:
      return weighted_values_all<1>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
    case 2:
      return weighted_values_all<2>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
    case 3:
      return weighted_values_all<3>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
    case 4:
      return weighted_values_all<4>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
    case 5:
      return weighted_values_all<5>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
    default:
      return weighted_values_all<6>(p, v, n_ctx, stride, head_dim, inv_sum, first, last, out);
  }
}

// Softmax numerators in place over n_heads score rows of n_ctx (vectorised exp); inv_sum[i] =
// 1 / the row's sum.
void softmax_rows(float* scores, int64_t n_heads, int64_t n_ctx, const float* max_score,
                  float* inv_sum) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t i = 0; i < n_heads; ++i) {
    float* si = scores + i * n_ctx;
    const VF vmax = hn::Set(df, max_score[i]);
    VF vsum = hn::Zero(df);
    int64_t j = 0;
    for (; j + N <= n_ctx; j += N) {
      const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, si + j), vmax));
      hn::StoreU(e, df, si + j);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
    for (; j < n_ctx; ++j) {
      si[j] = std::exp(si[j] - max_score[i]);
      sum += si[j];
    }
    inv_sum[i] = 1.0f / sum;
  }
}

// Query heads [h_begin, h_end), all of KV head g, over n_ctx positions of a paged cache: row j of
// K (V) starts at k_blocks[j / block_size] + (j % block_size) * kv_row_stride. Scores are
// position-major (K row j is read once for all heads of a pass); the weighted sum of V continues
// across blocks through `out`, so the sums run in the same order whatever the block size.
// scores: (h_end - h_begin) * n_ctx floats.
void AttentionHeadsPagedImpl(const float* q, const float* const* k_blocks,
                             const float* const* v_blocks, int64_t block_size, int64_t n_ctx,
                             int64_t kv_row_stride, int64_t g, int64_t h_begin, int64_t h_end,
                             int64_t head_dim, float* out, float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t col = g * head_dim;
  for (int64_t hb = h_begin; hb < h_end; hb += kHeadsPerPass) {
    const int64_t n_heads = std::min<int64_t>(kHeadsPerPass, h_end - hb);
    float max_score[kHeadsPerPass];
    for (int64_t i = 0; i < n_heads; ++i) max_score[i] = -INFINITY;
    for (int64_t j0 = 0; j0 < n_ctx; j0 += block_size) {
      const float* kb = k_blocks[j0 / block_size] + col;
      const int64_t nb = std::min(block_size, n_ctx - j0);
      for (int64_t j = 0; j < nb; ++j) {
        const float* kj = kb + j * kv_row_stride;
        for (int64_t i = 0; i < n_heads; ++i) {
          const float s = dot(q + (hb + i) * head_dim, kj, head_dim) * scale;
          scores[i * n_ctx + j0 + j] = s;
          max_score[i] = std::max(max_score[i], s);
        }
      }
    }
    float inv_sum[kHeadsPerPass];
    const float* p[kHeadsPerPass];
    float* o[kHeadsPerPass];
    softmax_rows(scores, n_heads, n_ctx, max_score, inv_sum);
    for (int64_t i = 0; i < n_heads; ++i) o[i] = out + (hb + i) * head_dim;
    for (int64_t j0 = 0; j0 < n_ctx; j0 += block_size) {
      const int64_t nb = std::min(block_size, n_ctx - j0);
      for (int64_t i = 0; i < n_heads; ++i) p[i] = scores + i * n_ctx + j0;
      weighted_values_heads(n_heads, p, v_blocks[j0 / block_size] + col, nb, kv_row_stride,
                            head_dim, inv_sum, j0 == 0, j0 + nb == n_ctx, o);
    }
  }
}

// ---- FP8 (E4M3) KV cache ----

// E4M3 bytes to exact f32 values times `scale` (one rounding: f32(e4m3(b) * scale)), n of them.
void decode_fp8(const uint8_t* b, int64_t n, float scale, float* out) {
  const DF df;
  const hn::Rebind<int8_t, DF> di8;
  const hn::RebindToSigned<DF> di32;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  // Sign-extended code << 20 puts the sign in bit 31 and E4M3 in bits 20..26: read as f32 that
  // is the value * 2^-120 (subnormal codes become f32 subnormals, also exact).
  const VF two_to_120 = hn::Set(df, 1.329227995784916e36f);
  const VF vscale = hn::Set(df, scale);
  const VF nan = hn::Set(df, std::numeric_limits<float>::quiet_NaN());
  const auto magnitude = hn::Set(di32, 0x07F00000);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto code = hn::PromoteTo(di32, hn::LoadU(di8, reinterpret_cast<const int8_t*>(b + i)));
    const auto bits = hn::And(hn::ShiftLeft<20>(code), hn::Set(di32, int32_t(0x87F00000u)));
    const auto is_nan = hn::RebindMask(df, hn::Eq(hn::And(bits, magnitude), magnitude));
    const VF value = hn::IfThenElse(is_nan, nan, hn::Mul(hn::BitCast(df, bits), two_to_120));
    hn::StoreU(hn::Mul(value, vscale), df, out + i);
  }
  for (; i < n; ++i) out[i] = e4m3_to_f32(b[i]) * scale;
}

// attention over an E4M3 cache, query heads [h_begin, h_end) of KV head g: blocks of tile_rows
// positions of K (then V) are decoded into `tile` (tile_rows x head_dim floats) and run through
// the f32 code above, so K and V are read once per block of heads. scores as for
// AttentionHeadsPagedImpl.
// k_row(j) / v_row(j): cached row j's bytes for KV head g.
template <class KeyRow, class ValueRow>
void AttentionFp8Rows(const float* q, KeyRow k_row, ValueRow v_row, int64_t n_ctx, int64_t h_begin,
                      int64_t h_end, int64_t head_dim, float k_scale, float v_scale, float* out,
                      float* scores, float* tile, int64_t tile_rows) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t hb = h_begin; hb < h_end; hb += kHeadsPerPass) {
    const int64_t n_heads = std::min<int64_t>(kHeadsPerPass, h_end - hb);
    float max_score[kHeadsPerPass];
    for (int64_t i = 0; i < n_heads; ++i) max_score[i] = -INFINITY;
    for (int64_t j0 = 0; j0 < n_ctx; j0 += tile_rows) {
      const int64_t nb = std::min(tile_rows, n_ctx - j0);
      for (int64_t j = 0; j < nb; ++j) {
        decode_fp8(k_row(j0 + j), head_dim, k_scale, tile + j * head_dim);
      }
      for (int64_t j = 0; j < nb; ++j) {
        for (int64_t i = 0; i < n_heads; ++i) {
          const float s = dot(q + (hb + i) * head_dim, tile + j * head_dim, head_dim) * scale;
          scores[i * n_ctx + j0 + j] = s;
          max_score[i] = std::max(max_score[i], s);
        }
      }
    }
    float inv_sum[kHeadsPerPass];
    const float* p[kHeadsPerPass];
    float* o[kHeadsPerPass];
    softmax_rows(scores, n_heads, n_ctx, max_score, inv_sum);
    for (int64_t i = 0; i < n_heads; ++i) o[i] = out + (hb + i) * head_dim;
    for (int64_t j0 = 0; j0 < n_ctx; j0 += tile_rows) {
      const int64_t nb = std::min(tile_rows, n_ctx - j0);
      for (int64_t j = 0; j < nb; ++j) {
        decode_fp8(v_row(j0 + j), head_dim, v_scale, tile + j * head_dim);
      }
      for (int64_t i = 0; i < n_heads; ++i) p[i] = scores + i * n_ctx + j0;
      weighted_values_heads(n_heads, p, tile, nb, head_dim, head_dim, inv_sum, j0 == 0,
                            j0 + nb == n_ctx, o);
    }
  }
}

// AttentionFp8Rows over a paged cache (rows addressed as in AttentionHeadsPagedImpl).
void AttentionFp8HeadsPagedImpl(const float* q, const uint8_t* const* k_blocks,
                                const uint8_t* const* v_blocks, int64_t block_size, int64_t n_ctx,
                                int64_t kv_row_stride, int64_t g, int64_t h_begin, int64_t h_end,
                                int64_t head_dim, float k_scale, float v_scale, float* out,
                                float* scores, float* tile, int64_t tile_rows) {
  const int64_t col = g * head_dim;
  AttentionFp8Rows(
      q,
      [&](int64_t j) { return k_blocks[j / block_size] + (j % block_size) * kv_row_stride + col; },
      [&](int64_t j) { return v_blocks[j / block_size] + (j % block_size) * kv_row_stride + col; },
      n_ctx, h_begin, h_end, head_dim, k_scale, v_scale, out, scores, tile, tile_rows);
}

// ---- Blocked (flash) attention over several queries of one sequence ----
//
// The rows of a work item are its queries x the query heads of one KV head (row r: query
// r / group, head r % group). Q is packed transposed (qt[d][r], rows padded to rpad), so scores
// come out key-major (st[j][r]) from broadcasts of K elements read in place, and the online
// softmax runs vectorised across rows. The weighted sum of V accumulates in o[r][d] (row-major)
// from V rows read in place, rescaled by each row's alpha = exp(old max - new max) per block.

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr int kScoreKeys = 3;  // 16 registers: 3 keys x 2 row vectors + 2 loads
constexpr int kScoreRowVectors = 2;
constexpr int kValueRows = 3;  // 3 rows x 2 value vectors
#else
constexpr int kScoreKeys = 6;     // 32 registers: 6 keys x 4 row vectors + 4 loads
constexpr int kScoreRowVectors = 4;
constexpr int kValueRows = 6;  // 6 rows x 4 value vectors
#endif

// st[j * rpad + v * N ...] = scale * sum_d krow[j][d] * qt[d * rpad + v * N ...] for JB keys and
// RV row vectors (qt and st already offset to the first row).
template <int JB, int RV>
HWY_NOINLINE void score_tile(const float* const* krow, const float* qt, int64_t rpad,
                             int64_t head_dim, float scale, float* st) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[JB][RV];
  HWY_UNROLL(8)
  for (int j = 0; j < JB; ++j) {
    HWY_UNROLL(8)
    for (int v = 0; v < RV; ++v) acc[j][v] = hn::Zero(df);
  }
  const float* k[JB];
  for (int j = 0; j < JB; ++j) k[j] = krow[j];
  for (int64_t d = 0; d < head_dim; ++d) {
    VF qv[RV];
    HWY_UNROLL(8)
    for (int v = 0; v < RV; ++v) qv[v] = hn::LoadU(df, qt + d * rpad + v * N);
    HWY_UNROLL(8)
    for (int j = 0; j < JB; ++j) {
      const VF kd = hn::Set(df, k[j][d]);
      HWY_UNROLL(8)
      for (int v = 0; v < RV; ++v) acc[j][v] = hn::MulAdd(kd, qv[v], acc[j][v]);
    }
  }
  const VF vscale = hn::Set(df, scale);
  HWY_UNROLL(8)
  for (int j = 0; j < JB; ++j) {
    HWY_UNROLL(8)
    for (int v = 0; v < RV; ++v) hn::StoreU(hn::Mul(acc[j][v], vscale), df, st + j * rpad + v * N);
  }
}

template <int JB>
void score_keys(int64_t rv, const float* const* krow, const float* qt, int64_t rpad,
                int64_t head_dim, float scale, float* st) {
  switch (rv) {
    case 1:
      return score_tile<JB, 1>(krow, qt, rpad, head_dim, scale, st);
    case 2:
      return score_tile<JB, 2>(krow, qt, rpad, head_dim, scale, st);
    case 3:
      return score_tile<JB, 3>(krow, qt, rpad, head_dim, scale, st);
    default:
      return score_tile<JB, 4>(krow, qt, rpad, head_dim, scale, st);
  }
}

// Scores of nb keys (krow) against all rpad rows into st.
void score_block(const float* const* krow, int64_t nb, const float* qt, int64_t rpad,
                 int64_t head_dim, float scale, float* st) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t v0 = 0; v0 < rpad / N; v0 += kScoreRowVectors) {
    const int64_t rv = std::min<int64_t>(kScoreRowVectors, rpad / N - v0);
    const float* qv = qt + v0 * N;
    for (int64_t j = 0; j < nb; j += kScoreKeys) {
      float* s = st + j * rpad + v0 * N;
      switch (std::min<int64_t>(kScoreKeys, nb - j)) {
        case 1:
          score_keys<1>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
        case 2:
          score_keys<2>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
        case 3:
          score_keys<3>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
        case 4:
          score_keys<4>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
        case 5:
          score_keys<5>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
        default:
          score_keys<6>(rv, krow + j, qv, rpad, head_dim, scale, s);
          break;
      }
    }
  }
}

// Online softmax step over keys [j0, j0 + nb) for all rpad rows: st becomes the numerators
// exp(s - max) (0 where key j0 + j >= n_ctx[r]); max_score and sum are updated and alpha[r] =
// exp(old max - new max) is what the row's accumulated output must be scaled by. A row with no
// visible key so far keeps max -inf, sum 0 and gets alpha 0.
// `masked` false: every row sees every key of the block (no causal edge in it), so no masking.
void online_softmax(float* st, int64_t nb, int64_t rpad, int64_t j0, bool masked,
                    const float* n_ctx, float* max_score, float* sum, float* alpha) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF neg_inf = hn::Set(df, -INFINITY);
  for (int64_t r = 0; r < rpad; r += N) {
    const VF limit = hn::LoadU(df, n_ctx + r);
    VF block_max = neg_inf;
    if (masked) {
      for (int64_t j = 0; j < nb; ++j) {
        float* s = st + j * rpad + r;
        const auto visible = hn::Lt(hn::Set(df, static_cast<float>(j0 + j)), limit);
        const VF sj = hn::IfThenElse(visible, hn::LoadU(df, s), neg_inf);
        hn::StoreU(sj, df, s);
        block_max = hn::Max(block_max, sj);
      }
    } else {
      VF max2 = neg_inf;
      int64_t j = 0;
      for (; j + 2 <= nb; j += 2) {
        block_max = hn::Max(block_max, hn::LoadU(df, st + j * rpad + r));
        max2 = hn::Max(max2, hn::LoadU(df, st + (j + 1) * rpad + r));
      }
      if (j < nb) block_max = hn::Max(block_max, hn::LoadU(df, st + j * rpad + r));
      block_max = hn::Max(block_max, max2);
    }
    const VF old_max = hn::LoadU(df, max_score + r);
    const VF new_max = hn::Max(old_max, block_max);
    // exp(-inf - -inf) would be NaN: rows with nothing visible subtract 0 instead.
    const VF base = hn::IfThenZeroElse(hn::Eq(new_max, neg_inf), new_max);
    const VF a = hn::Exp(df, hn::Sub(old_max, base));
    VF block_sum = hn::Zero(df);
    for (int64_t j = 0; j < nb; ++j) {
      float* s = st + j * rpad + r;
      const VF p = hn::Exp(df, hn::Sub(hn::LoadU(df, s), base));
      hn::StoreU(p, df, s);
      block_sum = hn::Add(block_sum, p);
    }
    hn::StoreU(new_max, df, max_score + r);
    hn::StoreU(hn::MulAdd(hn::LoadU(df, sum + r), a, block_sum), df, sum + r);
    hn::StoreU(a, df, alpha + r);
  }
}

// o[r][d0, d0 + C * N) = alpha[r] * o[r][...] + sum_j pt[j * rpad + r] * vrow[j][d0, ...] for RB
// rows (pt, alpha and o already offset to the first row; o rows head_dim apart).
template <int RB, int C>
HWY_NOINLINE void value_tile(const float* const* vrow, int64_t nb, const float* pt, int64_t rpad,
                             const float* alpha, int64_t d0, int64_t head_dim, float* o) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  VF acc[RB][C];
  HWY_UNROLL(8)
  for (int r = 0; r < RB; ++r) {
    const VF a = hn::Set(df, alpha[r]);
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c)
      acc[r][c] = hn::Mul(hn::LoadU(df, o + r * head_dim + d0 + c * N), a);
  }
  for (int64_t j = 0; j < nb; ++j) {
    VF vj[C];
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c) vj[c] = hn::LoadU(df, vrow[j] + d0 + c * N);
    HWY_UNROLL(8)
    for (int r = 0; r < RB; ++r) {
      const VF p = hn::Set(df, pt[j * rpad + r]);
      HWY_UNROLL(8)
      for (int c = 0; c < C; ++c) acc[r][c] = hn::MulAdd(p, vj[c], acc[r][c]);
    }
  }
  HWY_UNROLL(8)
  for (int r = 0; r < RB; ++r) {
    HWY_UNROLL(8)
    for (int c = 0; c < C; ++c) hn::StoreU(acc[r][c], df, o + r * head_dim + d0 + c * N);
  }
}

template <int RB>
void value_rows(const float* const* vrow, int64_t nb, const float* pt, int64_t rpad,
                const float* alpha, int64_t head_dim, float* o) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t d = 0;
  for (; d + kValueVectors * N <= head_dim; d += kValueVectors * N) {
    value_tile<RB, kValueVectors>(vrow, nb, pt, rpad, alpha, d, head_dim, o);
  }
  for (; d + N <= head_dim; d += N) value_tile<RB, 1>(vrow, nb, pt, rpad, alpha, d, head_dim, o);
  for (; d < head_dim; ++d) {
    for (int r = 0; r < RB; ++r) {
      float acc = o[r * head_dim + d] * alpha[r];
      for (int64_t j = 0; j < nb; ++j) acc += pt[j * rpad + r] * vrow[j][d];
      o[r * head_dim + d] = acc;
    }
  }
}

// value_rows over rows [0, n_rows) in tiles of kValueRows.
void value_block(const float* const* vrow, int64_t nb, const float* pt, int64_t rpad,
                 const float* alpha, int64_t n_rows, int64_t head_dim, float* o) {
  for (int64_t r = 0; r < n_rows; r += kValueRows) {
    const float* p = pt + r;
    const float* a = alpha + r;
    float* orow = o + r * head_dim;
    switch (std::min<int64_t>(kValueRows, n_rows - r)) {
      case 1:
        value_rows<1>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
      case 2:
        value_rows<2>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
      case 3:
        value_rows<3>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
      case 4:
        value_rows<4>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
      case 5:
        value_rows<5>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
      default:
        value_rows<6>(vrow, nb, p, rpad, a, head_dim, orow);
        break;
    }
  }
}

// Queries tokens[0, n_tokens) (batch rows of q / out, n_heads * head_dim floats each) x the
// `group` query heads of KV head g, over positions [0, n_ctx[i]) each. key_rows(j0, nb, rows)
// points rows[0, nb) at positions j0.. of K for head g (decoding them if need be); value_rows
// alike for V. scratch: flash_scratch_floats() floats.
template <class KeyRows, class ValueRows>
void FlashRows(const float* q, int64_t q_stride, const int64_t* tokens, const int64_t* n_ctx,
               int64_t n_tokens, int64_t g, int64_t group, int64_t head_dim, KeyRows key_rows,
               ValueRows value_rows_of, float* out, float* scratch) {
  const int64_t n_rows = n_tokens * group;
  const int64_t rpad = (n_rows + 15) / 16 * 16;
  float* qt = scratch;                         // [head_dim][rpad]
  float* st = qt + head_dim * rpad;            // [kAttentionFlashKeys][rpad]
  float* o = st + kAttentionFlashKeys * rpad;  // [n_rows][head_dim]
  float* row_ctx = o + n_rows * head_dim;      // [rpad] each
  float* max_score = row_ctx + rpad;
  float* sum = max_score + rpad;
  float* alpha = sum + rpad;
  int64_t max_ctx = 0, min_ctx = INT64_MAX;
  for (int64_t r = 0; r < rpad; ++r) {
    const bool real = r < n_rows;
    const int64_t t = r / group;
    row_ctx[r] = real ? static_cast<float>(n_ctx[t]) : 0.0f;
    max_score[r] = -INFINITY;
    sum[r] = 0.0f;
    const float* qr =
        real ? q + tokens[t] * q_stride + (g * group + r % group) * head_dim : nullptr;
    for (int64_t d = 0; d < head_dim; ++d) qt[d * rpad + r] = real ? qr[d] : 0.0f;
    if (real) {
      max_ctx = std::max(max_ctx, n_ctx[t]);
      min_ctx = std::min(min_ctx, n_ctx[t]);
    }
  }
  std::fill(o, o + n_rows * head_dim, 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float* krow[kAttentionFlashKeys];
  const float* vrow[kAttentionFlashKeys];
  for (int64_t j0 = 0; j0 < max_ctx; j0 += kAttentionFlashKeys) {
    const int64_t nb = std::min(kAttentionFlashKeys, max_ctx - j0);
    key_rows(j0, nb, krow);
    score_block(krow, nb, qt, rpad, head_dim, scale, st);
    // Padding rows (past n_rows) go unmasked in blocks without a causal edge: their
    // outputs are never computed.
    online_softmax(st, nb, rpad, j0, j0 + nb > min_ctx, row_ctx, max_score, sum, alpha);
    value_rows_of(j0, nb, vrow);
    value_block(vrow, nb, st, rpad, alpha, n_rows, head_dim, o);
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    float* dst = out + tokens[r / group] * q_stride + (g * group + r % group) * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) dst[d] = o[r * head_dim + d] / sum[r];
  }
}

void FlashAttentionPagedImpl(const float* q, int64_t q_stride, const int64_t* tokens,
                             const int64_t* n_ctx, int64_t n_tokens, const float* const* k_blocks,
                             const float* const* v_blocks, int64_t block_size,
                             int64_t kv_row_stride, int64_t g, int64_t group, int64_t head_dim,
                             float* out, float* scratch, float* tile) {
  const int64_t col = g * head_dim;
  // Rows copied into a contiguous tile (the cache's rows are kv_row_stride apart and scattered
  // over pages): the score and value loops then stream one L1-resident array.
  auto rows_of = [&](const float* const* blocks) {
    return [=](int64_t j0, int64_t nb, const float** rows) {
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t pos = j0 + j;
        std::copy_n(blocks[pos / block_size] + (pos % block_size) * kv_row_stride + col, head_dim,
                    tile + j * head_dim);
        rows[j] = tile + j * head_dim;
      }
    };
  };
  FlashRows(q, q_stride, tokens, n_ctx, n_tokens, g, group, head_dim, rows_of(k_blocks),
            rows_of(v_blocks), out, scratch);
}

// FlashAttentionPagedImpl over an E4M3 cache: each block of positions of K (V) is decoded into
// a tile of kAttentionFlashKeys x head_dim floats after the flash scratch.
void FlashAttentionFp8PagedImpl(const float* q, int64_t q_stride, const int64_t* tokens,
                                const int64_t* n_ctx, int64_t n_tokens,
                                const uint8_t* const* k_blocks, const uint8_t* const* v_blocks,
                                int64_t block_size, int64_t kv_row_stride, int64_t g, int64_t group,
                                int64_t head_dim, float k_scale, float v_scale, float* out,
                                float* scratch, float* tile) {
  const int64_t col = g * head_dim;
  auto rows_of = [&](const uint8_t* const* blocks, float scale) {
    return [=](int64_t j0, int64_t nb, const float** rows) {
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t pos = j0 + j;
        decode_fp8(blocks[pos / block_size] + (pos % block_size) * kv_row_stride + col, head_dim,
                   scale, tile + j * head_dim);
        rows[j] = tile + j * head_dim;
      }
    };
  };
  FlashRows(q, q_stride, tokens, n_ctx, n_tokens, g, group, head_dim, rows_of(k_blocks, k_scale),
            rows_of(v_blocks, v_scale), out, scratch);
}

// out[i] = e4m3_satfinite(x[i] / scale), RNE (the bit recipe of quant-formats.md §1.2).
void KvStoreFp8Impl(const float* x, int64_t n, float scale, uint8_t* out) {
  const DF df;
  const hn::RebindToUnsigned<DF> du32;
  const hn::RebindToSigned<DF> di32;
  const hn::Rebind<uint8_t, DF> du8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF vscale = hn::Set(df, scale);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const VF f = hn::Div(hn::LoadU(df, x + i), vscale);
    const auto bits = hn::BitCast(du32, f);
    const auto sign = hn::ShiftRight<24>(hn::And(bits, hn::Set(du32, 0x80000000u)));
    const auto a = hn::And(bits, hn::Set(du32, 0x7FFFFFFFu));
    // Normal range: round the f32 mantissa to 3 bits, ties to even, then rebias (120 << 3).
    const auto rounded = hn::ShiftRight<20>(hn::Add(
        a, hn::Add(hn::Set(du32, 0x7FFFFu), hn::And(hn::ShiftRight<20>(a), hn::Set(du32, 1u)))));
    auto code = hn::Sub(rounded, hn::Set(du32, 120u << 3));
    // Below 2^-6: multiples of 2^-9, |f| * 512 rounded half to even (exact scaling).
    const auto sub = hn::BitCast(
        du32, hn::ConvertTo(di32, hn::Round(hn::Mul(hn::BitCast(df, a), hn::Set(df, 512.0f)))));
    code = hn::IfThenElse(hn::Lt(a, hn::Set(du32, 0x3C800000u)), sub, code);
    // Past 464 (448 + half a step; 464 itself rounds to 448) and +-inf saturate; NaN stays NaN.
    code = hn::IfThenElse(hn::Gt(a, hn::Set(du32, 0x43E80000u)), hn::Set(du32, 0x7Eu), code);
    code = hn::IfThenElse(hn::Gt(a, hn::Set(du32, 0x7F800000u)), hn::Set(du32, 0x7Fu), code);
    const auto byte = hn::DemoteTo(du8, hn::BitCast(di32, hn::Or(code, sign)));
    hn::StoreU(byte, du8, out + i);
  }
  for (; i < n; ++i) out[i] = f32_to_e4m3(x[i] / scale, Fp8Overflow::kSaturate);
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

void AddScaledImpl(float* y, const float* x, float a, int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const VF va = hn::Set(df, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  }
  if (i < n) {  // the tail in a masked vector: the same rounding as the rest on every target
    const auto m = hn::FirstN(df, static_cast<size_t>(n - i));
    hn::BlendedStore(hn::MulAdd(va, hn::MaskedLoad(m, df, x + i), hn::MaskedLoad(m, df, y + i)), m,
                     df, y + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
