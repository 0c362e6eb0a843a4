#include "quant/iq4nl16.h"

#include <array>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "numerics/f16.h"
#include "numerics/iq4nl.h"
#include "quant/block_kernels.h"
#include "quant/iq4nl16_simd.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {
namespace {

constexpr float kDeadBlockAmax = 1e-15f;  // llama.cpp GROUP_MAX_EPS
constexpr float kFloatMax = std::numeric_limits<float>::max();
constexpr int64_t kN = kIq4nl16Block;

// Level values by floor(2v) - kIq4nlTableLow.
constexpr std::array<float, kIq4nlIndexTable.size()> kLevelByFloor = [] {
  std::array<float, kIq4nlIndexTable.size()> t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = kIq4nlLevels[kIq4nlIndexTable[i]];
  return t;
}();

struct Sums {
  float qx = 0.0f;  // sum w q x
  float q2 = 0.0f;  // sum w q^2
};

// The level nearest to v (v in level units), branch-free so the 16-element loops below
// vectorize: the same answer as iq4nl_level(iq4nl_nearest_index(v)) for finite v, by the table
// of iq4nl_nearest_index_table.
[[gnu::always_inline]] inline float nearest_level(float v) {
  constexpr float kLow = kIq4nlTableLow;
  constexpr float kHigh = kIq4nlTableHigh;
  float twice = 2.0f * v;
  twice = twice >= kLow ? twice : kLow;
  twice = twice <= kHigh ? twice : kHigh;
  int k = static_cast<int>(twice);
  k -= static_cast<float>(k) > twice ? 1 : 0;
  return kLevelByFloor[k - kIq4nlTableLow];
}

// Weighted sums for the levels nearest to x * inv_scale, accumulated left to right in float32.
[[gnu::always_inline]] inline Sums assign(const float* x, const float* weight, float inv_scale) {
  float wq[kN];
  float q[kN];
  for (int64_t j = 0; j < kN; ++j) {
    q[j] = nearest_level(inv_scale * x[j]);
    wq[j] = weight[j] * q[j];
  }
  float qx[kN];
  float q2[kN];
  for (int64_t j = 0; j < kN; ++j) {
    qx[j] = wq[j] * x[j];
    q2[j] = wq[j] * q[j];
  }
  Sums sums;
  for (int64_t j = 0; j < kN; ++j) {
    sums.qx += qx[j];
    sums.q2 += q2[j];
  }
  return sums;
}

// Codes for x / d (or x * (1/d)).
[[gnu::always_inline]] inline void final_codes(const float* x, float d, bool reciprocal,
                                               uint8_t* codes) {
  if (d == 0.0f) {
    for (int64_t j = 0; j < kN; ++j) codes[j] = iq4nl_nearest_index_table(0.0f);
    return;
  }
  if (reciprocal) {
    const float id = 1.0f / d;
    for (int64_t j = 0; j < kN; ++j) codes[j] = iq4nl_nearest_index_table(id * x[j]);
  } else {
    for (int64_t j = 0; j < kN; ++j) codes[j] = iq4nl_nearest_index_table(x[j] / d);
  }
}

}  // namespace

M2FP4_VECTOR_CLONES
float iq4nl16_quantize_block(const float* x, const float* importance, const Iq4nl16Options& options,
                             uint8_t* codes) {
  float weight[kN];
  if (importance != nullptr) {
    float sigma2 = 0.0f;
    for (int64_t j = 0; j < kN; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.0f / static_cast<float>(kN);
    for (int64_t j = 0; j < kN; ++j) weight[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int64_t j = 0; j < kN; ++j) weight[j] = x[j] * x[j];
  }
  float amax = 0.0f;
  float max = 0.0f;  // the signed element of largest magnitude, first one on ties
  for (int64_t j = 0; j < kN; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < kDeadBlockAmax) {
    final_codes(x, 0.0f, false, codes);
    return 0.0f;
  }
  const float first_level = static_cast<float>(kIq4nlLevels[0]);  // -127
  float d = -max / first_level;  // maps max to +127, which clamps to level 113
  Sums sums;
  if (options.multiply_by_reciprocal) {
    sums = assign(x, weight, 1.0f / d);
  } else {
    for (int64_t j = 0; j < kN; ++j) {  // nearest(x / d), same accumulation as assign()
      const float q = iq4nl_level(iq4nl_nearest_index_table(x[j] / d));
      const float wq = weight[j] * q;
      sums.qx += wq * x[j];
      sums.q2 += wq * q;
    }
  }
  d = sums.q2 > 0.0f ? sums.qx / sums.q2 : 0.0f;
  float best = d * sums.qx;
  for (int t = -options.ntry; t <= options.ntry; ++t) {
    const float id = static_cast<float>(t + kIq4nlLevels[0]) / max;  // max -> level -127 + t
    const Sums trial = assign(x, weight, id);
    if (trial.q2 > 0.0f && trial.qx * trial.qx > best * trial.q2) {
      d = trial.qx / trial.q2;
      best = d * trial.qx;
    }
  }
  // Codes come from the float32 d, not from the fp16 value that is stored.
  final_codes(x, d, options.multiply_by_reciprocal, codes);
  return d;
}

Iq4nl16Tensor iq4nl16_quantize(const ConstMatrix& w, const Iq4nl16Options& options) {
  check_blocked_shape(w, kIq4nl16Block, "IQ4_NL x16");
  Iq4nl16Tensor out;
  out.rows = w.rows;
  out.cols = w.cols;
  out.packed.resize(static_cast<size_t>(w.rows * w.cols / 2));
  out.scales.resize(static_cast<size_t>(w.rows * (w.cols / kIq4nl16Block)));
  iq4nl16_quantize_into(w, options, out.packed.data(), out.scales.data());
  return out;
}

void iq4nl16_quantize_into(const ConstMatrix& w, const Iq4nl16Options& options, uint8_t* packed_out,
                           uint16_t* scales_out) {
  check_blocked_shape(w, kIq4nl16Block, "IQ4_NL x16");
  M2_CHECK(options.ntry >= 0, "IQ4_NL x16: ntry must be >= 0, got ", options.ntry);
  const int64_t blocks_per_row = w.cols / kIq4nl16Block;
  parallel_rows(w.rows, row_grain(w.cols), [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    constexpr int64_t kSimdBlocks = 16;
    uint8_t codes[kN];
    float scales[kSimdBlocks];
    const bool simd = options.allow_simd && iq4nl16_simd_available();
    const int64_t row_bytes = w.cols * (w.dtype == DType::kBF16 ? 2 : 4);
    for (int64_t r = begin; r < end; ++r) {
      // The next row's source, fetched while this one is searched: rows cross 4 KiB pages, where
      // the hardware prefetcher stops, and the copy below stalled on the weights' loads (~3% of a
      // mxfp4-16 run).
      if (r + 1 < end) {
        const char* next = static_cast<const char*>(w.data) + (r + 1) * row_bytes;
        for (int64_t offset = 0; offset < row_bytes; offset += 64)
          __builtin_prefetch(next + offset);
      }
      w.load(r, 0, w.cols, row.data());
      // One SIMD pass (NaN if any element is NaN or infinite), then the element named only
      // when there is one.
      if (!(quant_detail::abs_max(row.data(), w.cols) <= kFloatMax)) {
        for (int64_t c = 0; c < w.cols; ++c) {
          M2_CHECK(std::isfinite(row[c]), "IQ4_NL x16: row ", r, " column ", c,
                   " is NaN or infinite");
        }
      }
      uint16_t* row_scales = scales_out + r * blocks_per_row;
      uint8_t* row_packed = packed_out + r * w.cols / 2;
      for (int64_t b = 0; b < blocks_per_row;) {
        const float* x = row.data() + b * kN;
        const float* importance = options.importance ? options.importance + b * kN : nullptr;
        const int64_t n = simd && b + kSimdBlocks <= blocks_per_row ? kSimdBlocks : 1;
        uint8_t* packed = row_packed + b * kN / 2;
        if (n == kSimdBlocks) {
          iq4nl16_quantize_16_blocks(x, importance, options, scales, packed);
        } else {
          scales[0] = iq4nl16_quantize_block(x, importance, options, codes);
          for (int64_t j = 0; j < kN / 2; ++j) {
            packed[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
          }
        }
        if (n == kSimdBlocks) {
          f32_to_f16_16(scales, row_scales + b);  // the scalar conversion was ~1% of a run
        } else {
          for (int64_t i = 0; i < n; ++i) row_scales[b + i] = f32_to_f16(scales[i]);
        }
        b += n;
      }
    }
  });
}

std::vector<float> iq4nl16_dequantize(const Iq4nl16Tensor& tensor) {
  M2_CHECK(tensor.rows > 0 && tensor.cols > 0 && tensor.cols % kIq4nl16Block == 0 &&
               tensor.packed.size() == static_cast<size_t>(tensor.rows * tensor.cols / 2) &&
               tensor.scales.size() == static_cast<size_t>(tensor.rows * tensor.cols / kN),
           "IQ4_NL x16 tensor ", tensor.rows, "x", tensor.cols, " has inconsistent buffers");
  std::vector<float> out(static_cast<size_t>(tensor.rows * tensor.cols));
  for (size_t i = 0; i < out.size(); i += 2) {
    const float d = f16_to_f32(tensor.scales[i / kN]);
    const uint8_t byte = tensor.packed[i / 2];
    out[i] = d * iq4nl_level(byte & 0xF);
    out[i + 1] = d * iq4nl_level(byte >> 4);
  }
  return out;
}

}  // namespace m2fp4
