// IQ4_NL x16 scale search, 16 blocks at once (one block per AVX-512 lane).
//
// The scalar search (iq4nl16.cc) sums 16 products left to right per block, an order no
// horizontal vector sum reproduces. Here lane b of every vector belongs to block b, and element
// j of all 16 blocks is processed in step j: each lane performs exactly the scalar float32
// operations in the same order (separate multiplies and adds, IEEE division and square root,
// the quant layer builds with -ffp-contract=off), so the scales and codes are bit-identical.
// The level lookup replaces the 435-entry table by a 28-entry bucket table plus one threshold
// compare, checked equal to the table for every entry at compile time; inside the search, where
// |2v| < 280 is known (ntry <= 8), by slot tables indexed without clamp or integer conversion
// (also checked at compile time), 13 instead of 16 vector operations per element and candidate.
#include "quant/iq4nl16_simd.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "numerics/iq4nl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 flags the intrinsics' own _mm512_undefined_* placeholders as (maybe) uninitialized.
#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized (and errors on unknown groups)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define M2FP4_IQ4_SIMD 1
#endif

namespace m2fp4 {
namespace {

// k = floor(2v) clamped to [kIq4nlTableLow, kIq4nlTableHigh], shifted to kk = k - low >= 0.
constexpr int kTableSize = kIq4nlTableHigh - kIq4nlTableLow + 1;
constexpr int kBuckets = (kTableSize + 15) / 16;  // 16 consecutive kk per bucket

struct BucketTables {
  std::array<int32_t, 32> base{};  // index at the bucket's first kk
  std::array<int32_t, 16> next{};  // kk at which index i + 1 starts (past the end for 15)
};

constexpr BucketTables make_bucket_tables() {
  BucketTables t{};
  for (int b = 0; b < kBuckets; ++b) t.base[b] = kIq4nlIndexTable[16 * b];
  for (int i = 0; i < 16; ++i) {
    t.next[i] = 1 << 20;
    for (int kk = kTableSize - 1; kk >= 0; --kk) {
      if (kIq4nlIndexTable[kk] > i) t.next[i] = kk;
    }
  }
  return t;
}
constexpr BucketTables kBucketTables = make_bucket_tables();

constexpr bool bucket_lookup_matches_table() {
  for (int kk = 0; kk < kTableSize; ++kk) {
    const int base = kBucketTables.base[kk / 16];
    const int index = base + (kk >= kBucketTables.next[base] ? 1 : 0);
    if (index != kIq4nlIndexTable[kk]) return false;
  }
  return true;
}
static_assert(bucket_lookup_matches_table(),
              "IQ4_NL levels closer than 16 half-units: one compare per bucket is not enough");

// The search's inner loop, where |2v| < 280 is known: no clamp and no conversion to integer.
// Adding 1.5 * 2^27 rounds 2v to a multiple of 16 (the float spacing there), so the low five
// bits of the sum's bit pattern are b = round(2v / 16) mod 32: the slot of two 32-entry
// permutes. The slot of b serves 2v in [16 b - 8, 16 b + 8] (both ends: ties round either way),
// which holds at most one doubled midpoint; one float compare 2v >= threshold (an integer:
// exact) picks the lower or upper level. The slots of b = -17..-15 and 15..17 coincide: all
// level 0 there for negative 2v, all level 15 for positive, told apart by a threshold of 0.
constexpr int kSlotLow = -17;
constexpr int kSlotHigh = 17;
constexpr float kSlotMagic = 201326592.0f;  // 1.5 * 2^27
// The largest search half-width for which every 2v of the search is below 280 in magnitude:
// 2 (127 + ntry) (1 + 2^-22) < 280 - 8 (a margin, not needed).
constexpr int kMaxBoundedTry = 8;

constexpr int index_of_floor(int k) {
  k = k < kIq4nlTableLow ? kIq4nlTableLow : k > kIq4nlTableHigh ? kIq4nlTableHigh : k;
  return kIq4nlIndexTable[k - kIq4nlTableLow];
}

struct FastTables {
  std::array<float, 32> threshold{};  // 2v from which the slot's upper level applies
  std::array<float, 32> lower{};
  std::array<float, 32> upper{};
  bool ok = true;
};

constexpr float kNever = 1e30f;

constexpr FastTables make_fast_tables() {
  FastTables t{};
  std::array<bool, 32> used{};
  for (int b = kSlotLow; b <= kSlotHigh; ++b) {
    const int slot = b & 31;
    const int first = index_of_floor(16 * b - 8), last = index_of_floor(16 * b + 8);
    if (used[slot]) {  // the second bucket of a slot: all 15 here, all 0 in the first one
      t.ok = t.ok && b > 0 && first == 15 && t.lower[slot] == kIq4nlLevels[0] &&
             t.threshold[slot] == kNever;
      t.upper[slot] = kIq4nlLevels[15];
      t.threshold[slot] = 0.0f;
      continue;
    }
    used[slot] = true;
    t.lower[slot] = kIq4nlLevels[first];
    t.upper[slot] = kIq4nlLevels[last];
    t.threshold[slot] = kNever;
    if (last == first + 1) {
      for (int k = 16 * b + 8; k >= 16 * b - 8; --k) {
        if (index_of_floor(k) == last) t.threshold[slot] = static_cast<float>(k);
      }
    } else if (last != first) {
      t.ok = false;
    }
  }
  return t;
}
constexpr FastTables kFastTables = make_fast_tables();

// Every floor k = floor(2v) with |2v| < 280, through every slot 2v may round to.
constexpr bool fast_lookup_matches_table() {
  if (!kFastTables.ok) return false;
  for (int k = -280; k < 280; ++k) {
    for (int b = kSlotLow; b <= kSlotHigh; ++b) {
      if (k < 16 * b - 8 || k > 16 * b + 8) continue;
      const int slot = b & 31;
      const float level = static_cast<float>(k) >= kFastTables.threshold[slot]
                              ? kFastTables.upper[slot]
                              : kFastTables.lower[slot];
      if (level != kIq4nlLevels[index_of_floor(k)]) return false;
    }
  }
  return true;
}
static_assert(fast_lookup_matches_table(), "the search's slot tables disagree with the table");

}  // namespace

#ifdef M2FP4_IQ4_SIMD

#define M2FP4_AVX512 __attribute__((target("avx512f")))

namespace {

struct Lookup {
  __m512i base_lo, base_hi, next;
  __m512 levels;
  __m512 threshold_lo, threshold_hi;  // kFastTables
  __m512 lower_lo, lower_hi, upper_lo, upper_hi;
};

M2FP4_AVX512 Lookup make_lookup() {
  Lookup l;
  l.base_lo = _mm512_loadu_si512(kBucketTables.base.data());
  l.base_hi = _mm512_loadu_si512(kBucketTables.base.data() + 16);
  l.next = _mm512_loadu_si512(kBucketTables.next.data());
  alignas(64) float levels[16];
  for (int i = 0; i < 16; ++i) levels[i] = static_cast<float>(kIq4nlLevels[i]);
  l.levels = _mm512_load_ps(levels);
  l.threshold_lo = _mm512_loadu_ps(kFastTables.threshold.data());
  l.threshold_hi = _mm512_loadu_ps(kFastTables.threshold.data() + 16);
  l.lower_lo = _mm512_loadu_ps(kFastTables.lower.data());
  l.lower_hi = _mm512_loadu_ps(kFastTables.lower.data() + 16);
  l.upper_lo = _mm512_loadu_ps(kFastTables.upper.data());
  l.upper_hi = _mm512_loadu_ps(kFastTables.upper.data() + 16);
  return l;
}

// The level of iq4nl_nearest_index_table(twice / 2) for |twice| < 280 (other values give
// some level): one add, three permutes, one compare.
M2FP4_AVX512 inline __m512 level_of_bounded_twice(const Lookup& l, __m512 twice) {
  // The permutes read the low 5 bits of the sum's bit pattern.
  const __m512i slot = _mm512_castps_si512(_mm512_add_ps(twice, _mm512_set1_ps(kSlotMagic)));
  const __mmask16 upper = _mm512_cmp_ps_mask(
      twice, _mm512_permutex2var_ps(l.threshold_lo, slot, l.threshold_hi), _CMP_GE_OQ);
  const __m512 lower = _mm512_permutex2var_ps(l.lower_lo, slot, l.lower_hi);
  return _mm512_mask_mov_ps(lower, upper, _mm512_permutex2var_ps(l.upper_lo, slot, l.upper_hi));
}

// iq4nl_nearest_index_table(v) per lane from twice = 2v: clamped (NaN -> low, as the scalar
// code), floored (one conversion rounding toward -inf: the clamped value fits an int32).
M2FP4_AVX512 inline __m512i nearest_index_of_twice(const Lookup& l, __m512 twice) {
  // max returns its second operand when the first is NaN.
  twice = _mm512_max_ps(twice, _mm512_set1_ps(static_cast<float>(kIq4nlTableLow)));
  twice = _mm512_min_ps(twice, _mm512_set1_ps(static_cast<float>(kIq4nlTableHigh)));
  const __m512i k = _mm512_cvt_roundps_epi32(twice, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512i kk = _mm512_sub_epi32(k, _mm512_set1_epi32(kIq4nlTableLow));
  const __m512i base = _mm512_permutex2var_epi32(l.base_lo, _mm512_srli_epi32(kk, 4), l.base_hi);
  const __mmask16 past = _mm512_cmpge_epi32_mask(kk, _mm512_permutexvar_epi32(base, l.next));
  return _mm512_mask_add_epi32(base, past, base, _mm512_set1_epi32(1));
}

M2FP4_AVX512 inline __m512i nearest_index(const Lookup& l, __m512 v) {
  return nearest_index_of_twice(l, _mm512_mul_ps(_mm512_set1_ps(2.0f), v));
}

M2FP4_AVX512 inline __m512 level_of(const Lookup& l, __m512i index) {
  return _mm512_permutexvar_ps(index, l.levels);
}

struct SumsV {
  __m512 qx, q2;
};

// assign(): q = nearest level of v_j = scale * x_j (or x_j / d), sums left to right per lane.
// kBounded (ntry <= kMaxBoundedTry): |v_j| <= (127 + ntry) (1 + 2^-22) in the lanes that are not
// dead: the first pass divides by d = max / 127 (or multiplies by 1 / d), the trials multiply by
// (t - 127) / max with |t| <= ntry, and |x_j| <= |max|; so 2 v_j lies inside the bounded
// lookup's range. Dead lanes (max may be 0: NaN, inf) get some level and are discarded.
// One element's step of assign(): the level of v = s x (s2 = 2 s) or x / s, its products
// added to the sums.
template <bool kDivide, bool kBounded>
M2FP4_AVX512 inline void assign_step(const Lookup& l, __m512 x, __m512 w, __m512 s, __m512 s2,
                                     SumsV& sums) {
  const __m512 twice =
      kDivide ? _mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_div_ps(x, s)) : _mm512_mul_ps(s2, x);
  const __m512 q =
      kBounded ? level_of_bounded_twice(l, twice) : level_of(l, nearest_index_of_twice(l, twice));
  const __m512 wq = _mm512_mul_ps(w, q);
  sums.qx = _mm512_add_ps(sums.qx, _mm512_mul_ps(wq, x));
  sums.q2 = _mm512_add_ps(sums.q2, _mm512_mul_ps(wq, q));
}

// Two assign() passes in one pass over the elements, each summed left to right on its own (2 (s x)
// == (2 s) x: doubling is exact, and where s x is subnormal both floor alike, to 0 or -1, so the
// multiply path doubles the scale once instead of every product). The first pass (a, with
// kDivideA) and the first candidate: the division-bound pass overlaps the multiply-bound one;
// two later candidates: twice the independent work per step.
template <bool kDivideA, bool kBounded>
M2FP4_AVX512 inline void assign_pair(const Lookup& l, const __m512* x, const __m512* w, __m512 sa,
                                     __m512 sb, SumsV& a, SumsV& b) {
  a = b = SumsV{_mm512_setzero_ps(), _mm512_setzero_ps()};
  const __m512 sa2 = _mm512_mul_ps(_mm512_set1_ps(2.0f), sa);
  const __m512 sb2 = _mm512_mul_ps(_mm512_set1_ps(2.0f), sb);
  for (int j = 0; j < 16; ++j) {
    assign_step<kDivideA, kBounded>(l, x[j], w[j], sa, sa2, a);
    assign_step<false, kBounded>(l, x[j], w[j], sb, sb2, b);
  }
}

}  // namespace

template <bool kBounded>
M2FP4_AVX512 void iq4nl16_quantize_16_blocks_avx512(const float* x_rows, const float* importance,
                                                    const Iq4nl16Options& options, float* d_out,
                                                    uint8_t* packed_out) {
  const Lookup l = make_lookup();
  // Transpose: x[j] lane b = element j of block b.
  __m512 x[16], w[16];
  {
    alignas(64) float t[16][16];
    // Element j of the 16 blocks: one gather each (the scalar transpose through memory it
    // replaces stalled on store forwarding).
    const __m512i block_starts =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32(16));
    for (int j = 0; j < 16; ++j) x[j] = _mm512_i32gather_ps(block_starts, x_rows + j, 4);
    if (importance != nullptr) {
      for (int b = 0; b < 16; ++b) {
        for (int j = 0; j < 16; ++j) t[j][b] = importance[16 * b + j];
      }
    }
    if (importance != nullptr) {
      __m512 sigma2 = _mm512_setzero_ps();
      for (int j = 0; j < 16; ++j) sigma2 = _mm512_add_ps(sigma2, _mm512_mul_ps(x[j], x[j]));
      sigma2 = _mm512_mul_ps(sigma2, _mm512_set1_ps(2.0f / 16.0f));
      for (int j = 0; j < 16; ++j) {
        w[j] = _mm512_mul_ps(_mm512_load_ps(t[j]),
                             _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(x[j], x[j]))));
      }
    } else {
      for (int j = 0; j < 16; ++j) w[j] = _mm512_mul_ps(x[j], x[j]);
    }
  }
  // amax and the signed element of largest magnitude (first one on ties).
  __m512 amax = _mm512_setzero_ps(), max = _mm512_setzero_ps();
  for (int j = 0; j < 16; ++j) {
    const __m512 ax = _mm512_abs_ps(x[j]);
    const __mmask16 bigger = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
    amax = _mm512_mask_mov_ps(amax, bigger, ax);
    max = _mm512_mask_mov_ps(max, bigger, x[j]);
  }
  const __mmask16 dead = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(1e-15f), _CMP_LT_OQ);
  const __m512 zero = _mm512_setzero_ps();
  const __m512 minus_max =
      _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(max), _mm512_set1_epi32(INT32_MIN)));
  __m512 d = _mm512_div_ps(minus_max, _mm512_set1_ps(static_cast<float>(kIq4nlLevels[0])));
  auto trial_scale = [&](int t) M2FP4_AVX512 {
    return _mm512_div_ps(_mm512_set1_ps(static_cast<float>(t + kIq4nlLevels[0])), max);
  };
  SumsV sums, first_trial;
  if (options.multiply_by_reciprocal) {
    assign_pair<false, kBounded>(l, x, w, _mm512_div_ps(_mm512_set1_ps(1.0f), d),
                                 trial_scale(-options.ntry), sums, first_trial);
  } else {
    assign_pair<true, kBounded>(l, x, w, d, trial_scale(-options.ntry), sums, first_trial);
  }
  const __mmask16 q2_positive = _mm512_cmp_ps_mask(sums.q2, zero, _CMP_GT_OQ);
  d = _mm512_maskz_div_ps(q2_positive, sums.qx, sums.q2);
  __m512 best = _mm512_mul_ps(d, sums.qx);
  auto take_if_better = [&](const SumsV& trial) M2FP4_AVX512 {
    const __mmask16 better = _mm512_cmp_ps_mask(trial.q2, zero, _CMP_GT_OQ) &
                             _mm512_cmp_ps_mask(_mm512_mul_ps(trial.qx, trial.qx),
                                                _mm512_mul_ps(best, trial.q2), _CMP_GT_OQ);
    d = _mm512_mask_div_ps(d, better, trial.qx, trial.q2);
    best = _mm512_mask_mul_ps(best, better, d, trial.qx);
  };
  take_if_better(first_trial);
  // The other 2 ntry trials two at a time in one pass over the elements (each summed on its own:
  // twice the independent work per step; quant_bench Iq4nl16/1 18.0 -> 17.3 ms), compared in
  // order as before.
  for (int t = -options.ntry + 1; t < options.ntry; t += 2) {
    SumsV a, b;
    assign_pair<false, kBounded>(l, x, w, trial_scale(t), trial_scale(t + 1), a, b);
    take_if_better(a);
    take_if_better(b);
  }
  d = _mm512_mask_mov_ps(d, dead, zero);
  // Final codes from the float32 d: nearest(x / d) or nearest(x * (1 / d)); d == 0: code of 0.
  const __mmask16 d_zero = _mm512_cmp_ps_mask(d, zero, _CMP_EQ_OQ);
  const __m512 recip = _mm512_div_ps(_mm512_set1_ps(1.0f), d);
  // Byte p of block b is code 2p | code 2p+1 << 4: bytes 0-3 in the 32-bit lane b of low,
  // bytes 4-7 in that of high.
  __m512i low = _mm512_setzero_si512(), high = _mm512_setzero_si512();
  for (int j = 0; j < 16; j += 2) {
    __m512i pair[2];
    for (int k = 0; k < 2; ++k) {
      __m512 v = options.multiply_by_reciprocal ? _mm512_mul_ps(recip, x[j + k])
                                                : _mm512_div_ps(x[j + k], d);
      v = _mm512_mask_mov_ps(v, d_zero, zero);
      pair[k] = nearest_index(l, v);
    }
    const __m512i byte = _mm512_or_si512(pair[0], _mm512_slli_epi32(pair[1], 4));
    const int shift = 8 * ((j / 2) % 4);
    if (j < 8) {
      low = _mm512_or_si512(low, _mm512_sll_epi32(byte, _mm_cvtsi32_si128(shift)));
    } else {
      high = _mm512_or_si512(high, _mm512_sll_epi32(byte, _mm_cvtsi32_si128(shift)));
    }
  }
  _mm512_storeu_ps(d_out, d);
  alignas(64) uint32_t low_words[16], high_words[16];
  _mm512_store_si512(low_words, low);
  _mm512_store_si512(high_words, high);
  for (int b = 0; b < 16; ++b) {
    std::memcpy(packed_out + 8 * b, &low_words[b], 4);
    std::memcpy(packed_out + 8 * b + 4, &high_words[b], 4);
  }
}

bool iq4nl16_simd_available() {
  static const bool available = __builtin_cpu_supports("avx512f");
  return available;
}

M2FP4_AVX512 void f32_to_f16_16(const float* in, uint16_t* out) {
  const __m256i half = _mm512_cvtps_ph(_mm512_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), half);
}

void iq4nl16_quantize_16_blocks(const float* x, const float* importance,
                                const Iq4nl16Options& options, float* d, uint8_t* packed) {
  if (options.ntry <= kMaxBoundedTry) {
    iq4nl16_quantize_16_blocks_avx512<true>(x, importance, options, d, packed);
  } else {
    iq4nl16_quantize_16_blocks_avx512<false>(x, importance, options, d, packed);
  }
}

#else

bool iq4nl16_simd_available() {
  return false;
}

void iq4nl16_quantize_16_blocks(const float*, const float*, const Iq4nl16Options&, float*,
                                uint8_t*) {}

void f32_to_f16_16(const float*, uint16_t*) {}

#endif

}  // namespace m2fp4
