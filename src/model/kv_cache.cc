#include "model/kv_cache.h"

#include <algorithm>

#include "base/error.h"

namespace m2fp4 {

KvCacheDtype parse_kv_cache_dtype(const std::string& name) {
  if (name == "auto" || name == "f32" || name == "float32") return KvCacheDtype::kF32;
  if (name == "fp8" || name == "fp8_e4m3") return KvCacheDtype::kFp8E4M3;
  fail("unknown KV cache dtype '", name, "' (expected auto, fp8 or fp8_e4m3)");
}

KvCache::KvCache(const ModelConfig& config, int64_t max_context, int64_t n_layers,
                 KvCacheDtype dtype)
    : n_layers_(n_layers > 0 ? n_layers : config.num_hidden_layers),
      kv_width_(config.kv_width()),
      max_context_(max_context),
      dtype_(dtype) {
  M2_CHECK(max_context > 0, "KV cache context must be positive, got ", max_context);
}

int64_t KvCache::length(int32_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

KvCache::SequenceKv& KvCache::get(int32_t seq) {
  auto it = seqs_.find(seq);
  M2_CHECK(it != seqs_.end(), "KV cache: unknown sequence ", seq);
  return it->second;
}

void KvCache::resize(int32_t seq, int64_t new_length) {
  M2_CHECK(new_length <= max_context_, "sequence needs ", new_length,
           " positions but the context is ", max_context_, " tokens");
  SequenceKv& s = seqs_[seq];
  if (new_length > s.capacity) {
    const int64_t cap = std::min(max_context_, std::max<int64_t>(new_length, s.capacity * 2));
    const size_t n = static_cast<size_t>(cap * kv_width_);
    if (dtype_ == KvCacheDtype::kF32) {
      s.k.resize(static_cast<size_t>(n_layers_));
      s.v.resize(static_cast<size_t>(n_layers_));
      for (int64_t l = 0; l < n_layers_; ++l) {
        s.k[l].resize(n);
        s.v[l].resize(n);
      }
    } else {
      s.k8.resize(static_cast<size_t>(n_layers_));
      s.v8.resize(static_cast<size_t>(n_layers_));
      for (int64_t l = 0; l < n_layers_; ++l) {
        s.k8[l].resize(n);
        s.v8[l].resize(n);
      }
    }
    s.capacity = cap;
  }
  s.length = new_length;
}

void KvCache::drop(int32_t seq) {
  seqs_.erase(seq);
}

float* KvCache::keys(int32_t seq, int64_t layer, int64_t position) {
  return get(seq).k[slot(layer)].data() + position * kv_width_;
}

float* KvCache::values(int32_t seq, int64_t layer, int64_t position) {
  return get(seq).v[slot(layer)].data() + position * kv_width_;
}

uint8_t* KvCache::keys8(int32_t seq, int64_t layer, int64_t position) {
  return get(seq).k8[slot(layer)].data() + position * kv_width_;
}

uint8_t* KvCache::values8(int32_t seq, int64_t layer, int64_t position) {
  return get(seq).v8[slot(layer)].data() + position * kv_width_;
}

}  // namespace m2fp4
