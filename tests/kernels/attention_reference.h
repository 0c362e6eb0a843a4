// Independent double-precision reference of causal GQA attention for one query, shared by the
// attention tests (f32 K/V in ops_test.cc, E4M3 K/V decoded to f32 in attention_fp8_test.cc).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace m2fp4::test {

// out[h * hd + d] for the query q (n_heads x hd) over n_ctx positions of K/V (position j, KV
// head g at j * stride + g * hd); query head h reads KV head h / (n_heads / n_kv).
inline std::vector<double> attention_reference(const std::vector<float>& q,
                                               const std::vector<float>& k,
                                               const std::vector<float>& v, int64_t n_ctx,
                                               int64_t stride, int64_t n_heads, int64_t n_kv,
                                               int64_t hd) {
  std::vector<double> out(n_heads * hd, 0.0);
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t g = h / (n_heads / n_kv);
    std::vector<double> s(n_ctx);
    for (int64_t j = 0; j < n_ctx; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < hd; ++d) dot += double{q[h * hd + d]} * k[j * stride + g * hd + d];
      s[j] = dot / std::sqrt(double(hd));
    }
    const double m = *std::max_element(s.begin(), s.end());
    double sum = 0;
    for (auto& e : s) sum += (e = std::exp(e - m));
    for (int64_t j = 0; j < n_ctx; ++j) {
      for (int64_t d = 0; d < hd; ++d) out[h * hd + d] += s[j] / sum * v[j * stride + g * hd + d];
    }
  }
  return out;
}

}  // namespace m2fp4::test
