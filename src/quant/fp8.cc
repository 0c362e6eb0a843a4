#include "quant/fp8.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "numerics/bf16.h"
#include "numerics/fp8_e4m3.h"
#include "quant/block_kernels.h"
#include "quant/parallel_rows.h"

namespace m2fp4 {

float fp8_scale_for_amax(float amax) {
  M2_CHECK(std::isfinite(amax) && amax >= 0.0f, "FP8: amax must be finite and >= 0, got ", amax);
  const float s = amax / kE4m3Max;
  return s > 0.0f ? s : 1.0f;
}

Fp8Tensor fp8_quantize(const ConstMatrix& w, const Fp8Options& options) {
  check_blocked_shape(w, 1, "FP8");
  Fp8Tensor out;
  out.rows = w.rows;
  out.cols = w.cols;
  switch (options.granularity) {
    case Fp8Granularity::kPerTensor:
      out.block_rows = w.rows;
      out.block_cols = w.cols;
      break;
    case Fp8Granularity::kPerChannel:
      out.block_rows = 1;
      out.block_cols = w.cols;
      break;
    case Fp8Granularity::kBlock:
      M2_CHECK(options.block_rows > 0 && options.block_cols > 0, "FP8: bad block ",
               options.block_rows, "x", options.block_cols);
      out.block_rows = options.block_rows;
      out.block_cols = options.block_cols;
      break;
  }
  const int64_t scale_rows = out.scale_rows();
  const int64_t scale_cols = out.scale_cols();
  out.codes.resize(static_cast<size_t>(w.rows * w.cols));
  out.scales.resize(static_cast<size_t>(scale_rows * scale_cols));

  // One task per band of block rows: amax over the band's blocks, then the codes.
  parallel_rows(scale_rows, 1, [&](int64_t band_begin, int64_t band_end) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    std::vector<float> amax(static_cast<size_t>(scale_cols));
    for (int64_t band = band_begin; band < band_end; ++band) {
      const int64_t r0 = band * out.block_rows;
      const int64_t r1 = std::min(w.rows, r0 + out.block_rows);
      std::fill(amax.begin(), amax.end(), 0.0f);
      for (int64_t r = r0; r < r1; ++r) {
        w.load(r, 0, w.cols, row.data());
        for (int64_t c0 = 0; c0 < w.cols; c0 += out.block_cols) {
          const int64_t n = std::min(out.block_cols, w.cols - c0);
          float& a = amax[static_cast<size_t>(c0 / out.block_cols)];
          const float block = quant_detail::abs_max(row.data() + c0, n);
          a = std::isnan(block) ? block : std::max(a, block);
        }
      }
      for (int64_t b = 0; b < scale_cols; ++b) {
        M2_CHECK(std::isfinite(amax[static_cast<size_t>(b)]), "FP8: rows ", r0, "..", r1 - 1,
                 " hold NaN or infinity");
        out.scales[static_cast<size_t>(band * scale_cols + b)] =
            fp8_scale_for_amax(amax[static_cast<size_t>(b)]);
      }
      for (int64_t r = r0; r < r1; ++r) {
        w.load(r, 0, w.cols, row.data());
        uint8_t* codes = out.codes.data() + r * w.cols;
        const float* scales = out.scales.data() + band * scale_cols;
        for (int64_t c0 = 0; c0 < w.cols; c0 += out.block_cols) {
          quant_detail::encode_e4m3_div(row.data() + c0, scales[c0 / out.block_cols],
                                        std::min(out.block_cols, w.cols - c0), codes + c0);
        }
      }
    }
  });
  return out;
}

namespace {

void check_tensor(const Fp8Tensor& t) {
  M2_CHECK(t.rows > 0 && t.cols > 0 && t.block_rows > 0 && t.block_cols > 0 &&
               t.codes.size() == static_cast<size_t>(t.rows * t.cols) &&
               t.scales.size() == static_cast<size_t>(t.scale_rows() * t.scale_cols()),
           "FP8 tensor ", t.rows, "x", t.cols, " has inconsistent buffers");
}

template <typename Store>
void dequantize_into(const Fp8Tensor& t, Store store) {
  check_tensor(t);
  const int64_t scale_cols = t.scale_cols();
  parallel_rows(t.rows, row_grain(t.cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* scales = t.scales.data() + (r / t.block_rows) * scale_cols;
      const uint8_t* codes = t.codes.data() + r * t.cols;
      for (int64_t c0 = 0; c0 < t.cols; c0 += t.block_cols) {
        const float scale = scales[c0 / t.block_cols];
        const int64_t c1 = std::min(t.cols, c0 + t.block_cols);
        for (int64_t c = c0; c < c1; ++c) store(r * t.cols + c, kE4m3Table[codes[c]] * scale);
      }
    }
  });
}

}  // namespace

std::vector<uint16_t> fp8_dequantize_bf16(const Fp8Tensor& tensor) {
  std::vector<uint16_t> out(tensor.codes.size());
  dequantize_into(tensor,
                  [&](int64_t i, float v) { out[static_cast<size_t>(i)] = f32_to_bf16(v); });
  return out;
}

std::vector<float> fp8_dequantize(const Fp8Tensor& tensor) {
  std::vector<float> out(tensor.codes.size());
  dequantize_into(tensor, [&](int64_t i, float v) { out[static_cast<size_t>(i)] = v; });
  return out;
}

Fp8Tensor fp8_from_checkpoint(std::span<const uint8_t> codes, std::span<const float> scale_inv,
                              int64_t rows, int64_t cols, int64_t block_rows, int64_t block_cols) {
  M2_CHECK(rows > 0 && cols > 0 && block_rows > 0 && block_cols > 0, "FP8: bad shape ", rows, "x",
           cols, " with block ", block_rows, "x", block_cols);
  Fp8Tensor t;
  t.rows = rows;
  t.cols = cols;
  t.block_rows = block_rows;
  t.block_cols = block_cols;
  M2_CHECK(codes.size() == static_cast<size_t>(rows * cols), "FP8: ", codes.size(), " codes for a ",
           rows, "x", cols, " weight");
  M2_CHECK(scale_inv.size() == static_cast<size_t>(t.scale_rows() * t.scale_cols()),
           "FP8: weight_scale_inv has ", scale_inv.size(), " values, a ", rows, "x", cols,
           " weight in ", block_rows, "x", block_cols, " blocks needs [", t.scale_rows(), ", ",
           t.scale_cols(), "]");
  t.codes.assign(codes.begin(), codes.end());
  t.scales.assign(scale_inv.begin(), scale_inv.end());
  return t;
}

float fp8_kv_scale(float amax) {
  return fp8_scale_for_amax(amax);
}

uint8_t fp8_kv_store(float x, float scale) {
  return f32_to_e4m3(x / scale, Fp8Overflow::kSaturate);
}

float fp8_kv_load(uint8_t code, float scale) {
  return e4m3_to_f32(code) * scale;
}

}  // namespace m2fp4
