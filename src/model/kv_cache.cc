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

KvCache KvCache::paged(const ModelConfig& config, int64_t n_blocks, int64_t block_size,
                       int64_t max_context, KvCacheDtype dtype) {
  M2_CHECK(n_blocks > 0, "paged KV cache needs at least one block, got ", n_blocks);
  M2_CHECK(block_size > 0, "KV block size must be positive, got ", block_size);
  KvCache cache(config, max_context, 0, dtype);
  cache.block_size_ = block_size;
  cache.n_blocks_ = n_blocks;
  const size_t n = static_cast<size_t>(cache.n_layers_ * n_blocks * block_size * cache.kv_width_);
  if (dtype == KvCacheDtype::kF32) {
    cache.k_pool_ = std::make_unique_for_overwrite<float[]>(n);
    cache.v_pool_ = std::make_unique_for_overwrite<float[]>(n);
  } else {
    cache.k8_pool_ = std::make_unique_for_overwrite<uint8_t[]>(n);
    cache.v8_pool_ = std::make_unique_for_overwrite<uint8_t[]>(n);
  }
  return cache;
}

int64_t KvCache::block_bytes(const ModelConfig& config, int64_t block_size, KvCacheDtype dtype) {
  const int64_t element = dtype == KvCacheDtype::kF32 ? 4 : 1;
  return 2 * config.num_hidden_layers * block_size * config.kv_width() * element;
}

void KvCache::assign(int32_t seq, const std::vector<int32_t>& blocks, int64_t length) {
  M2_CHECK(is_paged(), "KV cache: assign() needs a paged cache");
  M2_CHECK(length >= 0 && length <= static_cast<int64_t>(blocks.size()) * block_size_,
           "KV cache: length ", length, " exceeds the sequence's ", blocks.size(), " blocks");
  for (int32_t b : blocks) {
    M2_CHECK(b >= 0 && b < n_blocks_, "KV cache: block ", b, " outside the pool of ", n_blocks_);
  }
  SequenceKv& s = seqs_[seq];
  s.blocks = blocks;
  s.length = length;
  s.capacity = static_cast<int64_t>(blocks.size()) * block_size_;
}

size_t KvCache::paged_offset(const SequenceKv& s, int64_t layer, int64_t position) const {
  const int64_t block = s.blocks[static_cast<size_t>(position / block_size_)];
  return static_cast<size_t>(
      ((slot(layer) * n_blocks_ + block) * block_size_ + position % block_size_) * kv_width_);
}

void KvCache::block_rows(int32_t seq, int64_t layer, std::vector<const float*>& k,
                         std::vector<const float*>& v) {
  M2_CHECK(is_paged() && dtype_ == KvCacheDtype::kF32,
           "KV cache: block_rows needs a paged f32 cache");
  const SequenceKv& s = get(seq);
  k.resize(s.blocks.size());
  v.resize(s.blocks.size());
  for (size_t b = 0; b < s.blocks.size(); ++b) {
    const size_t offset = paged_offset(s, layer, static_cast<int64_t>(b) * block_size_);
    k[b] = k_pool_.get() + offset;
    v[b] = v_pool_.get() + offset;
  }
}

void KvCache::block_rows8(int32_t seq, int64_t layer, std::vector<const uint8_t*>& k,
                          std::vector<const uint8_t*>& v) {
  M2_CHECK(is_paged() && dtype_ == KvCacheDtype::kFp8E4M3,
           "KV cache: block_rows8 needs a paged FP8 cache");
  const SequenceKv& s = get(seq);
  k.resize(s.blocks.size());
  v.resize(s.blocks.size());
  for (size_t b = 0; b < s.blocks.size(); ++b) {
    const size_t offset = paged_offset(s, layer, static_cast<int64_t>(b) * block_size_);
    k[b] = k8_pool_.get() + offset;
    v[b] = v8_pool_.get() + offset;
  }
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
  if (is_paged()) {
    SequenceKv& s = get(seq);
    M2_CHECK(new_length <= s.capacity, "KV cache: sequence ", seq, " needs ", new_length,
             " positions but its blocks hold ", s.capacity);
    s.length = new_length;
    return;
  }
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
  SequenceKv& s = get(seq);
  if (is_paged()) return k_pool_.get() + paged_offset(s, layer, position);
  return s.k[slot(layer)].data() + position * kv_width_;
}

float* KvCache::values(int32_t seq, int64_t layer, int64_t position) {
  SequenceKv& s = get(seq);
  if (is_paged()) return v_pool_.get() + paged_offset(s, layer, position);
  return s.v[slot(layer)].data() + position * kv_width_;
}

uint8_t* KvCache::keys8(int32_t seq, int64_t layer, int64_t position) {
  SequenceKv& s = get(seq);
  if (is_paged()) return k8_pool_.get() + paged_offset(s, layer, position);
  return s.k8[slot(layer)].data() + position * kv_width_;
}

uint8_t* KvCache::values8(int32_t seq, int64_t layer, int64_t position) {
  SequenceKv& s = get(seq);
  if (is_paged()) return v8_pool_.get() + paged_offset(s, layer, position);
  return s.v8[slot(layer)].data() + position * kv_width_;
}

}  // namespace m2fp4
