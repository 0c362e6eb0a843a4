#include "kernels/cuda/launch_plan.h"

#include <algorithm>

#include "base/error.h"

namespace m2fp4::cuda {

namespace {
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridX = 2147483647;

void check_grid(const Grid& g, const char* what) {
  M2_CHECK(
      g.x >= 1 && g.x <= kMaxGridX && g.y >= 1 && g.y <= kMaxGridY && g.z >= 1 && g.z <= kMaxGridY,
      what, ": launch grid [", g.x, ", ", g.y, ", ", g.z, "] exceeds the CUDA limits");
}
}  // namespace

Grid gemv_grid(int64_t rows, int64_t n_tokens) {
  return {ceil_div(rows, kGemvRowsPerBlock), ceil_div(n_tokens, kGemvTokens), 1,
          kGemvWarps * kWarp};
}

Grid gemm_grid(int64_t rows, int64_t n_tokens) {
  return {ceil_div(rows, kGemmTileRows), ceil_div(n_tokens, kGemmTileTokens), 1, kGemmThreads};
}

bool use_gemv(int64_t n_tokens) {
  return n_tokens <= kGemvMaxTokens;
}

int64_t expert_max_tiles(int64_t n_slots, int64_t n_experts) {
  // sum_e ceil(c_e / T) <= sum_e (c_e / T + 1) over the experts hit, at most min(E, n_slots).
  return ceil_div(n_slots, kGemmTileTokens) + std::min(n_experts, n_slots);
}

Grid attention_grid(int64_t n_tokens, int64_t n_heads, int64_t head_dim, bool* blocked) {
  *blocked = n_tokens > 1 && head_dim <= kAttnBlockedMaxHeadDim;
  if (*blocked) return {n_heads, ceil_div(n_tokens, kAttnQueryTile), 1, kAttnWarps * kWarp};
  return {n_heads, n_tokens, 1, kAttnWarps * kWarp};
}

void check_weight(const Weight& w, const char* what) {
  M2_CHECK(w.rows >= 1 && w.cols >= 1, what, ": empty weight [", w.rows, ", ", w.cols, "]");
  M2_CHECK(w.data != nullptr, what, ": ", weight_format_name(w.format), " weight has no data");
  M2_CHECK(w.cols % 8 == 0, what, ": the CUDA kernels need cols divisible by 8, got ", w.cols);
  switch (w.format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return;
    case WeightFormat::kFp8Block128:
      M2_CHECK(w.block_scale != nullptr, what, ": fp8-block128 weight has no block scales");
      M2_CHECK(w.scale_cols == ceil_div(w.cols, 128), what, ": fp8-block128 scale_cols ",
               w.scale_cols, ", expected ", ceil_div(w.cols, 128));
      return;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16:
      M2_CHECK(w.group_scale != nullptr, what, ": ", weight_format_name(w.format),
               " weight has no group scales");
      M2_CHECK(w.group_size > 0 && w.group_size % 8 == 0 && w.cols % w.group_size == 0, what, ": ",
               weight_format_name(w.format), " group size ", w.group_size,
               " must be a multiple of 8 dividing cols ", w.cols);
      return;
  }
  fail(what, ": unknown weight format ", static_cast<int>(w.format));
}

void check_matmul(const Weight& w, int64_t n_tokens, const char* what) {
  check_weight(w, what);
  M2_CHECK(n_tokens >= 0, what, ": negative n_tokens ", n_tokens);
  if (n_tokens == 0) return;
  check_grid(use_gemv(n_tokens) ? gemv_grid(w.rows, n_tokens) : gemm_grid(w.rows, n_tokens), what);
}

void check_attention(int64_t n_tokens, int64_t kv_row_stride, int64_t n_heads, int64_t n_kv_heads,
                     int64_t head_dim) {
  M2_CHECK(n_tokens >= 0, "attention: negative n_tokens ", n_tokens);
  M2_CHECK(n_heads >= 1 && n_kv_heads >= 1 && n_heads % n_kv_heads == 0, "attention: n_heads ",
           n_heads, " must be a positive multiple of n_kv_heads ", n_kv_heads);
  M2_CHECK(head_dim >= 1 && head_dim <= kAttnMaxHeadDim, "attention: head_dim ", head_dim,
           " must be in [1, ", kAttnMaxHeadDim, "] on CUDA");
  M2_CHECK(kv_row_stride >= n_kv_heads * head_dim, "attention: kv_row_stride ", kv_row_stride,
           " is smaller than n_kv_heads * head_dim = ", n_kv_heads * head_dim);
  if (n_tokens == 0) return;
  bool blocked = false;
  check_grid(attention_grid(n_tokens, n_heads, head_dim, &blocked), "attention");
}

void check_route(int64_t n_experts, int64_t top_k) {
  M2_CHECK(top_k >= 1 && top_k <= n_experts && top_k <= kMaxTopK, "route_sigmoid_topk: top_k ",
           top_k, " must be in [1, min(n_experts = ", n_experts, ", ", kMaxTopK, ")]");
}

int64_t weight_data_bytes(const Weight& w) {
  switch (w.format) {
    case WeightFormat::kF32:
      return w.rows * w.cols * 4;
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return w.rows * w.cols * 2;
    case WeightFormat::kFp8Block128:
      return w.rows * w.cols;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
    case WeightFormat::kIq4nl16:
      return w.rows * w.cols / 2;
  }
  return 0;
}

int64_t weight_scale_bytes(const Weight& w) {
  switch (w.format) {
    case WeightFormat::kFp8Block128:
      return ceil_div(w.rows, 128) * w.scale_cols * 4;
    case WeightFormat::kNvfp4:
    case WeightFormat::kMxfp4:
      return w.rows * (w.cols / w.group_size);
    case WeightFormat::kIq4nl16:
      return w.rows * (w.cols / w.group_size) * 2;
    default:
      return 0;
  }
}

UploadPlan plan_upload(const std::vector<const Weight*>& weights) {
  UploadPlan plan;
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t offset = at;
    at += ceil_div(bytes, kUploadAlign) * kUploadAlign;
    return offset;
  };
  for (const Weight* w : weights) {
    check_weight(*w, "upload");
    UploadSlot slot;
    slot.data_offset = take(weight_data_bytes(*w));
    const int64_t scale_bytes = weight_scale_bytes(*w);
    if (scale_bytes > 0) slot.scale_offset = take(scale_bytes);
    plan.slots.push_back(slot);
  }
  plan.total_bytes = at;
  return plan;
}

Weight device_weight(const Weight& host, const UploadSlot& slot, void* base) {
  Weight d = host;
  char* b = static_cast<char*>(base);
  d.data = b + slot.data_offset;
  d.block_scale = nullptr;
  d.group_scale = nullptr;
  if (host.format == WeightFormat::kFp8Block128) {
    d.block_scale = reinterpret_cast<const float*>(b + slot.scale_offset);
  } else if (slot.scale_offset >= 0) {
    d.group_scale = reinterpret_cast<const uint8_t*>(b + slot.scale_offset);
  }
  return d;
}

}  // namespace m2fp4::cuda
