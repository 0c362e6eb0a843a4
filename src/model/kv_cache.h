// Per-sequence KV cache, contiguous (paging comes with serving): for each sequence and layer,
// keys and values of every position, [position][kv_width] f32.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/config.h"

namespace m2fp4 {

// What the cache stores: f32, or E4M3 bytes with per-layer scales (vLLM --kv-cache-dtype fp8).
enum class KvCacheDtype { kF32, kFp8E4M3 };

// "auto" (f32 here), "fp8" or "fp8_e4m3", as vLLM spells them.
KvCacheDtype parse_kv_cache_dtype(const std::string& name);

class KvCache {
 public:
  // max_context: the most positions one sequence may hold (a longer prompt is an error).
  // n_layers: layers held; a single-layer cache (n_layers = 1) serves whichever layer runs, for
  // flows that hold one layer at a time (quantization); default: all of the model's layers.
  KvCache(const ModelConfig& config, int64_t max_context, int64_t n_layers = 0,
          KvCacheDtype dtype = KvCacheDtype::kF32);

  KvCacheDtype dtype() const { return dtype_; }

  int64_t n_layers() const { return n_layers_; }
  // The slot of model layer `layer` in this cache.
  int64_t slot(int64_t layer) const { return n_layers_ == 1 ? 0 : layer; }

  int64_t max_context() const { return max_context_; }
  int64_t kv_width() const { return kv_width_; }
  // Number of cached positions of a sequence (0 for an unknown one).
  int64_t length(int32_t seq) const;
  // Makes room for positions [0, new_length) and sets the sequence's length; positions past the
  // old length hold garbage until written. Throws if new_length exceeds max_context.
  void resize(int32_t seq, int64_t new_length);
  void drop(int32_t seq);

  // kF32 caches.
  float* keys(int32_t seq, int64_t layer, int64_t position);
  float* values(int32_t seq, int64_t layer, int64_t position);
  // kFp8E4M3 caches.
  uint8_t* keys8(int32_t seq, int64_t layer, int64_t position);
  uint8_t* values8(int32_t seq, int64_t layer, int64_t position);

 private:
  struct SequenceKv {
    int64_t length = 0;
    int64_t capacity = 0;
    std::vector<std::vector<float>> k;  // per layer: capacity x kv_width (kF32)
    std::vector<std::vector<float>> v;
    std::vector<std::vector<uint8_t>> k8;  // (kFp8E4M3)
    std::vector<std::vector<uint8_t>> v8;
  };
  SequenceKv& get(int32_t seq);

  int64_t n_layers_;
  int64_t kv_width_;
  int64_t max_context_;
  KvCacheDtype dtype_;
  std::unordered_map<int32_t, SequenceKv> seqs_;
};

}  // namespace m2fp4
