// Per-target (Highway) decoding of the 4-bit weight formats (NVFP4, MXFP4, IQ4_NL x16) for the
// fast matmul; included by matmul-inl.cc (once per SIMD target). Not compiled on its own.
//
// Layout trick: a "chunk" is 8N consecutive columns (N = f32 lanes), i.e. 4N bytes = N 32-bit
// words of packed codes. Word j holds the codes of columns 8j .. 8j+7, code s in bits 4s..4s+3.
// Shifting the words right by 4s puts code s of every word in the low bits of its lane, and a
// 16-entry table lookup on those bits (AVX-512 vpermps ignores the higher bits) yields vector s,
// whose lane j is column 8j + s. So one chunk decodes to 8 vectors with 7 shifts and 8 lookups,
// no unpacking. The columns come out permuted; instead of undoing that, the kernels permute the
// activations once per call the same way (permuted_column), and all sums run in that order.
// Each lane j of a chunk lies in one scale group, so the per-lane multiplier vector D (group
// scale of column 8j) is built once per chunk, and W = value * D exactly as weight_element()
// rounds it (NVFP4: e2m1 * f32(e4m3(S) * global_scale)).
// Columns past the last whole chunk keep their natural order and are done one by one.

#if defined(M2FP4_KERNELS_CPU_MATMUL4_INL_CC_) == defined(HWY_TARGET_TOGGLE)
#ifdef M2FP4_KERNELS_CPU_MATMUL4_INL_CC_
#undef M2FP4_KERNELS_CPU_MATMUL4_INL_CC_
#else
#define M2FP4_KERNELS_CPU_MATMUL4_INL_CC_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/weight.h"
#include "numerics/e2m1.h"
#include "numerics/iq4nl.h"

HWY_BEFORE_NAMESPACE();
namespace m2fp4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace four_bit {

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// The 16 code values of a codebook (before the group scale), 64-byte aligned for vector loads.
struct alignas(64) CodeValues {
  float v[16];
};

inline CodeValues code_values(WeightFormat format) {
  CodeValues t{};
  for (int q = 0; q < 16; ++q) {
    t.v[q] = format == WeightFormat::kIq4nl16 ? static_cast<float>(kIq4nlLevels[q])
                                              : kE2m1Values[static_cast<size_t>(q)];
  }
  return t;
}

// ---- Code lookup, per target: vector s of a chunk (lane j = code s of word j, unscaled) ----

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// One 16-lane permute per vector: vpermps reads only the low 4 bits of each index.
struct CodeTable {
  __m512 values;
  explicit CodeTable(const CodeValues& t) : values(_mm512_load_ps(t.v)) {}
};
using CodeWords = __m512i;
HWY_INLINE CodeWords load_code_words(const uint8_t* p) {
  return _mm512_loadu_si512(p);
}
template <int S>
HWY_INLINE VF lookup_codes(const CodeTable& table, CodeWords words) {
  if constexpr (S == 0) {
    return VF{_mm512_permutexvar_ps(words, table.values)};
  } else {
    return VF{_mm512_permutexvar_ps(_mm512_srli_epi32(words, 4 * S), table.values)};
  }
}
#elif HWY_TARGET == HWY_AVX2
// 8-lane permutes read the low 3 bits: look up both table halves and pick by the code's bit 3,
// shifted into the sign bit that blendv tests.
struct CodeTable {
  __m256 low, high;
  explicit CodeTable(const CodeValues& t)
      : low(_mm256_load_ps(t.v)), high(_mm256_load_ps(t.v + 8)) {}
};
using CodeWords = __m256i;
HWY_INLINE CodeWords load_code_words(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
template <int S>
HWY_INLINE VF lookup_codes(const CodeTable& table, CodeWords words) {
  const __m256i index = S == 0 ? words : _mm256_srli_epi32(words, 4 * S);
  const __m256i bit3_in_sign = S == 7 ? words : _mm256_slli_epi32(words, 28 - 4 * S);
  return VF{_mm256_blendv_ps(_mm256_permutevar8x32_ps(table.low, index),
                             _mm256_permutevar8x32_ps(table.high, index),
                             _mm256_castsi256_ps(bit3_in_sign))};
}
#else
// Portable fallback (SSE4, scalar, other ISAs): per-lane table reads.
struct CodeTable {
  const float* values;
  explicit CodeTable(const CodeValues& t) : values(t.v) {}
};
using CodeWords = const uint8_t*;
HWY_INLINE CodeWords load_code_words(const uint8_t* p) {
  return p;
}
template <int S>
HWY_INLINE VF lookup_codes(const CodeTable& table, CodeWords words) {
  const DF df;
  const size_t n = hn::Lanes(df);
  HWY_ALIGN float lanes[HWY_MAX_BYTES / sizeof(float)];
  for (size_t j = 0; j < n; ++j) {
    uint32_t word;
    std::memcpy(&word, words + 4 * j, 4);
    lanes[j] = table.values[(word >> (4 * S)) & 0xF];
  }
  return hn::Load(df, lanes);
}
#endif

// Calls f(std::integral_constant<int, S>()) for S = 0..7 (shift counts must be constants).
template <class F, int... S>
HWY_INLINE void for_each_code_slot(F&& f, std::integer_sequence<int, S...>) {
  (f(std::integral_constant<int, S>()), ...);
}
template <class F>
HWY_INLINE void for_each_code_slot(F&& f) {
  for_each_code_slot(f, std::make_integer_sequence<int, 8>());
}

// ---- Group scales to f32 multipliers ----

// The f32 multipliers of n groups of row r starting at group g0, written to out
// (exactly group_scale_value(w, r, g)).
inline void decode_group_scales(const Weight& w, int64_t r, int64_t g0, int64_t n, float* out) {
  const DF df;
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint8_t, DF> du8;
  const hn::Rebind<uint16_t, DF> du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t groups = w.cols / w.group_size;
  int64_t i = 0;
  switch (w.format) {
    case WeightFormat::kNvfp4: {
      // E4M3 bits moved into f32 fields read as value * 2^-120 (subnormals too), rescaled
      // exactly, then one rounding for the global multiply.
      const uint8_t* p = w.group_scale + r * groups + g0;
      const VF two_to_120 = hn::Set(df, 1.329227995784916e36f);
      const VF global = hn::Set(df, w.global_scale);
      const VF nan = hn::Set(df, std::numeric_limits<float>::quiet_NaN());
      for (; i + lanes <= n; i += lanes) {
        const auto code = hn::PromoteTo(du32, hn::LoadU(du8, p + i));
        const auto magnitude = hn::And(code, hn::Set(du32, 0x7Fu));
        const auto bits = hn::Or(hn::ShiftLeft<20>(magnitude),
                                 hn::ShiftLeft<24>(hn::And(code, hn::Set(du32, 0x80u))));
        const VF value = hn::Mul(hn::BitCast(df, bits), two_to_120);
        const auto is_nan = hn::RebindMask(df, hn::Eq(magnitude, hn::Set(du32, 0x7Fu)));
        hn::StoreU(hn::Mul(hn::IfThenElse(is_nan, nan, value), global), df, out + i);
      }
      break;
    }
    case WeightFormat::kMxfp4: {
      // 2^(e - 127): e << 23, except e = 0 (the f32 subnormal 2^-127) and 0xFF (NaN).
      const uint8_t* p = w.group_scale + r * groups + g0;
      for (; i + lanes <= n; i += lanes) {
        const auto code = hn::PromoteTo(du32, hn::LoadU(du8, p + i));
        auto bits = hn::ShiftLeft<23>(code);
        bits = hn::IfThenElse(hn::Eq(code, hn::Zero(du32)), hn::Set(du32, 0x00400000u), bits);
        bits = hn::IfThenElse(hn::Eq(code, hn::Set(du32, 0xFFu)), hn::Set(du32, 0x7FC00000u), bits);
        hn::StoreU(hn::BitCast(df, bits), df, out + i);
      }
      break;
    }
    case WeightFormat::kIq4nl16: {
      // IEEE f16 by bit fields (exact; also inf and NaN, which the emulated PromoteTo of some
      // targets would turn into large finite numbers).
      const uint8_t* p = w.group_scale + 2 * (r * groups + g0);
      const hn::RebindToSigned<DF> di32;
      for (; i + lanes <= n; i += lanes) {
        const auto h =
            hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p + 2 * i)));
        const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du32, 0x8000u)));
        const auto exponent = hn::And(hn::ShiftRight<10>(h), hn::Set(du32, 0x1Fu));
        const auto mantissa = hn::And(h, hn::Set(du32, 0x3FFu));
        const auto normal = hn::Or(hn::ShiftLeft<23>(hn::Add(exponent, hn::Set(du32, 112u))),
                                   hn::ShiftLeft<13>(mantissa));
        const auto special = hn::Or(hn::Set(du32, 0x7F800000u), hn::ShiftLeft<13>(mantissa));
        const auto subnormal = hn::BitCast(
            du32, hn::Mul(hn::ConvertTo(df, hn::BitCast(di32, mantissa)), hn::Set(df, 0x1p-24f)));
        auto magnitude = hn::IfThenElse(hn::Eq(exponent, hn::Set(du32, 31u)), special, normal);
        magnitude = hn::IfThenElse(hn::Eq(exponent, hn::Zero(du32)), subnormal, magnitude);
        hn::StoreU(hn::BitCast(df, hn::Or(sign, magnitude)), df, out + i);
      }
      break;
    }
    default:
      break;
  }
  for (; i < n; ++i) out[i] = group_scale_value(w, r, g0 + i);
}

// ---- Per-job description ----

struct Source {
  const Weight* w;
  const uint8_t* codes;  // packed rows, cols / 2 bytes each
  int64_t cols;
  int64_t group;
  int64_t chunk;  // 8N columns
  int64_t full;   // columns in whole chunks (permuted); the rest are in natural order
  CodeValues values;

  const uint8_t* row(int64_t r) const { return codes + r * (cols / 2); }
};

// Whether the chunked decoder handles this weight: every lane of a chunk must fall in one
// group, and groups must not straddle chunks unevenly.
inline bool supported(const Weight& w) {
  const int64_t chunk = 8 * static_cast<int64_t>(hn::Lanes(DF()));
  const int64_t g = w.group_size;
  return g % 8 == 0 && (chunk % g == 0 || g % chunk == 0);
}

inline Source make_source(const Weight& w) {
  Source s;
  s.w = &w;
  s.codes = static_cast<const uint8_t*>(w.data);
  s.cols = w.cols;
  s.group = w.group_size;
  s.chunk = 8 * static_cast<int64_t>(hn::Lanes(DF()));
  s.full = w.cols / s.chunk * s.chunk;
  s.values = code_values(w.format);
  return s;
}

// The column whose value sits at position p of the permuted order.
inline int64_t permuted_column(int64_t p, int64_t chunk, int64_t full) {
  if (p >= full) return p;
  const int64_t n = chunk / 8;
  const int64_t c0 = p / chunk * chunk, q = p - c0;
  return c0 + 8 * (q % n) + q / n;
}

// x (one token, cols floats) in the permuted column order.
inline void permute_token(const float* x, int64_t cols, int64_t chunk, int64_t full, float* xp) {
  const int64_t n = chunk / 8;
  for (int64_t c0 = 0; c0 < full; c0 += chunk) {
    for (int64_t s = 0; s < 8; ++s) {
      for (int64_t j = 0; j < n; ++j) xp[c0 + s * n + j] = x[c0 + 8 * j + s];
    }
  }
  std::memcpy(xp + full, x + full, static_cast<size_t>(cols - full) * sizeof(float));
}

// Index vector spreading per-group multipliers to the lanes of a chunk: lane j <- 8j / group.
inline auto group_lane_indices(int64_t group) {
  const DF df;
  const hn::RebindToSigned<DF> di32;
  HWY_ALIGN int32_t idx[HWY_MAX_BYTES / sizeof(int32_t)];
  for (size_t j = 0; j < hn::Lanes(df); ++j) idx[j] = static_cast<int32_t>(8 * j / group);
  return hn::IndicesFromVec(df, hn::Load(di32, idx));
}

// Floats of per-row multiplier storage for `groups` groups, padded for whole-vector loads.
inline int64_t multiplier_stride(int64_t groups) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(DF()));
  return (groups + 2 * lanes + 15) / 16 * 16;
}

// ---- GEMV: R rows x TB tokens per tile ----

// Bytes ahead of the current chunk that each row stream prefetches: the hardware prefetcher
// stops at 4 KiB boundaries and tracks few streams, while decode streams R rows of many small
// matrices back to back.
constexpr int64_t kPrefetchBytes = 512;

// y[t, r0 + r] for r < R, t < TB. mult[r]: the multipliers of row r0 + r (all groups).
// xp: TB tokens in permuted order, cols floats each.
// All 8 vectors of a chunk share one multiplier vector (lane j lies in one group), so when the
// registers allow (R * TB <= 8) the chunk's code values are dotted with x first and scaled once
// per chunk: 8 lookups, 8 FMAs and 1 scaling FMA per row and token instead of 8 multiplies more.
// Both orders are f32 sums of the same products within the usual rounding bound, as long as the
// multipliers are finite (an infinite one must meet each product on its own, as in the scalar
// twin, to give the same NaN or infinity), which the caller checks.
template <int R, int TB, bool kFiniteScales>
HWY_NOINLINE void gemv_tile(const Source& src, int64_t r0, const float* const* mult,
                            const float* xp, int64_t n_rows_total, float* y) {
  constexpr bool kScalePerChunk = kFiniteScales && R * TB <= 8;
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = src.cols, group = src.group;
  const CodeTable table(src.values);
  const auto spread = group_lane_indices(group);
  const uint8_t* rows[R];
  VF acc[R][TB];
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    rows[r] = src.row(r0 + r);
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) acc[r][t] = hn::Zero(df);
  }
  const int64_t groups_per_chunk = src.chunk / group;  // 0: a group spans several chunks
  const int64_t row_bytes = cols / 2;
  for (int64_t k = 0, c0 = 0; c0 < src.full; ++k, c0 += src.chunk) {
    const int64_t g = groups_per_chunk > 0 ? k * groups_per_chunk : c0 / group;
    CodeWords words[R];
    VF scale[R];
    HWY_UNROLL(8)
    for (int r = 0; r < R; ++r) {
      if (c0 / 2 + kPrefetchBytes < row_bytes) {
        hwy::Prefetch(rows[r] + c0 / 2 + kPrefetchBytes);
      }
      words[r] = load_code_words(rows[r] + c0 / 2);
      scale[r] = hn::TableLookupLanes(hn::LoadU(df, mult[r] + g), spread);
    }
    if constexpr (kScalePerChunk) {
      VF dot[R][TB];
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        HWY_UNROLL(8)
        for (int t = 0; t < TB; ++t) dot[r][t] = hn::Zero(df);
      }
      for_each_code_slot([&](auto slot) {
        constexpr int S = decltype(slot)::value;
        VF xv[TB];
        HWY_UNROLL(8)
        for (int t = 0; t < TB; ++t) xv[t] = hn::LoadU(df, xp + t * cols + c0 + S * n);
        HWY_UNROLL(8)
        for (int r = 0; r < R; ++r) {
          const VF wv = lookup_codes<S>(table, words[r]);
          HWY_UNROLL(8)
          for (int t = 0; t < TB; ++t) dot[r][t] = hn::MulAdd(wv, xv[t], dot[r][t]);
        }
      });
      HWY_UNROLL(8)
      for (int r = 0; r < R; ++r) {
        HWY_UNROLL(8)
        for (int t = 0; t < TB; ++t) acc[r][t] = hn::MulAdd(dot[r][t], scale[r], acc[r][t]);
      }
    } else {
      for_each_code_slot([&](auto slot) {
        constexpr int S = decltype(slot)::value;
        VF xv[TB];
        HWY_UNROLL(8)
        for (int t = 0; t < TB; ++t) xv[t] = hn::LoadU(df, xp + t * cols + c0 + S * n);
        HWY_UNROLL(8)
        for (int r = 0; r < R; ++r) {
          const VF wv = hn::Mul(lookup_codes<S>(table, words[r]), scale[r]);
          HWY_UNROLL(8)
          for (int t = 0; t < TB; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
        }
      });
    }
  }
  HWY_UNROLL(8)
  for (int r = 0; r < R; ++r) {
    float tail[TB] = {};
    for (int64_t c = src.full; c < cols; ++c) {
      const float wc = src.values.v[packed_nibble(rows[r], c)] * mult[r][c / group];
      HWY_UNROLL(8)
      for (int t = 0; t < TB; ++t) tail[t] += wc * xp[t * cols + c];
    }
    HWY_UNROLL(8)
    for (int t = 0; t < TB; ++t) {
      y[t * n_rows_total + r0 + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t])) + tail[t];
    }
  }
}

template <int R, bool kFiniteScales>
void gemv_tile_tokens_scaled(const Source& src, int64_t r0, const float* const* mult,
                             const float* xt, int64_t nt, int64_t n_rows_total, float* yt) {
  switch (nt) {
    case 1:
      return gemv_tile<R, 1, kFiniteScales>(src, r0, mult, xt, n_rows_total, yt);
    case 2:
      return gemv_tile<R, 2, kFiniteScales>(src, r0, mult, xt, n_rows_total, yt);
    case 3:
      return gemv_tile<R, 3, kFiniteScales>(src, r0, mult, xt, n_rows_total, yt);
    default:
      return gemv_tile<R, 4, kFiniteScales>(src, r0, mult, xt, n_rows_total, yt);
  }
}

template <int R>
void gemv_tile_tokens(const Source& src, int64_t r0, const float* const* mult, const float* xp,
                      int64_t t0, int64_t nt, int64_t n_rows_total, float* y, bool finite_scales) {
  const float* xt = xp + t0 * src.cols;
  float* yt = y + t0 * n_rows_total;
  if (finite_scales)
    return gemv_tile_tokens_scaled<R, true>(src, r0, mult, xt, nt, n_rows_total, yt);
  return gemv_tile_tokens_scaled<R, false>(src, r0, mult, xt, nt, n_rows_total, yt);
}

// Whether all n multipliers are finite (NaN and infinities fail x - x == 0).
inline bool all_finite(const float* m, int64_t n) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  auto ok = hn::Eq(hn::Zero(df), hn::Zero(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const VF v = hn::LoadU(df, m + i);
    ok = hn::And(ok, hn::Eq(hn::Sub(v, v), hn::Zero(df)));
  }
  bool finite = hn::AllTrue(df, ok);
  for (; i < n; ++i) finite &= m[i] - m[i] == 0.0f;
  return finite;
}

// x86 AVX2/SSE have 16 vector registers: 2 rows (tables, words, scales and 2 x TB accumulators).
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
constexpr int kGemvRows = 2;
#else
constexpr int kGemvRows = 4;
#endif

// Rows [row_begin, row_end) for all tokens (xp permuted, n_tokens x cols): each tile of rows
// has its multipliers decoded once, then is streamed once per group of up to 4 tokens (from
// L1/L2 after the first).
inline void gemv_rows(const Source& src, int64_t row_begin, int64_t row_end, const float* xp,
                      int64_t n_tokens, int64_t n_rows_total, float* y) {
  const int64_t groups = src.cols / src.group;
  const int64_t stride = multiplier_stride(groups);
  float* storage = thread_scratch(1, static_cast<size_t>(kGemvRows * stride));
  const float* mult[kGemvRows];
  for (int r = 0; r < kGemvRows; ++r) mult[r] = storage + r * stride;
  int64_t r = row_begin;
  for (; r + kGemvRows <= row_end; r += kGemvRows) {
    bool finite = true;
    for (int i = 0; i < kGemvRows; ++i) {
      decode_group_scales(*src.w, r + i, 0, groups, storage + i * stride);
      finite &= all_finite(storage + i * stride, groups);
    }
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
      gemv_tile_tokens<kGemvRows>(src, r, mult, xp, t0, std::min<int64_t>(4, n_tokens - t0),
                                  n_rows_total, y, finite);
    }
  }
  for (; r < row_end; ++r) {
    decode_group_scales(*src.w, r, 0, groups, storage);
    const bool finite = all_finite(storage, groups);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
      gemv_tile_tokens<1>(src, r, mult, xp, t0, std::min<int64_t>(4, n_tokens - t0), n_rows_total,
                          y, finite);
    }
  }
}

// ---- GEMM support: a decoded f32 tile in permuted column order ----

constexpr int64_t kMaxTileColumns = 512;

// Decodes columns [c0, c1) of rows [r0, r0 + nr) into out (rows_out x (c1 - c0), positions in
// the permuted order); rows nr .. rows_out - 1 are zero. c0 must be a multiple of the chunk.
inline void decode_tile(const Source& src, int64_t r0, int64_t nr, int64_t rows_out, int64_t c0,
                        int64_t c1, float* out) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t width = c1 - c0, group = src.group;
  const CodeTable table(src.values);
  const auto spread = group_lane_indices(group);
  const int64_t g0 = c0 / group, g1 = (c1 + group - 1) / group;
  // width <= kMaxTileColumns; padded for whole-vector loads.
  HWY_ALIGN float mult[kMaxTileColumns / 8 + 2 * HWY_MAX_BYTES / sizeof(float)] = {};
  for (int64_t r = 0; r < nr; ++r) {
    decode_group_scales(*src.w, r0 + r, g0, g1 - g0, mult);
    const uint8_t* row = src.row(r0 + r);
    float* o = out + r * width - c0;
    int64_t c = c0;
    for (; c + src.chunk <= std::min(c1, src.full); c += src.chunk) {
      const CodeWords words = load_code_words(row + c / 2);
      const VF scale = hn::TableLookupLanes(hn::LoadU(df, mult + (c / group - g0)), spread);
      for_each_code_slot([&](auto slot) {
        constexpr int S = decltype(slot)::value;
        hn::StoreU(hn::Mul(lookup_codes<S>(table, words), scale), df, o + c + S * n);
      });
    }
    for (; c < c1; ++c) o[c] = src.values.v[packed_nibble(row, c)] * mult[c / group - g0];
  }
  if (nr < rows_out) {
    std::memset(out + nr * width, 0, static_cast<size_t>((rows_out - nr) * width) * sizeof(float));
  }
}

}  // namespace four_bit

}  // namespace HWY_NAMESPACE
}  // namespace m2fp4
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
