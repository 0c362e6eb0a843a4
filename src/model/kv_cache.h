// KV cache of many sequences, in one of two layouts behind the same accessors:
// - contiguous (run, eval, quantize): each sequence owns, per layer, [position][kv_width] rows
//   that grow on demand;
// - paged (the serving engine): one pool of fixed-size blocks of block_size positions (all
//   layers), allocated up front; a sequence's positions live in the blocks of its block table,
//   which the owner (the engine's block manager) assigns. Blocks may be shared by several
//   sequences (prefix caching): they are only read there.
#pragma once

#include <cstdint>
#include <memory>
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

  // A paged cache of n_blocks blocks of block_size positions; max_context bounds one sequence.
  // The pool's pages are committed by the OS as they are first written.
  static KvCache paged(const ModelConfig& config, int64_t n_blocks, int64_t block_size,
                       int64_t max_context, KvCacheDtype dtype = KvCacheDtype::kF32);
  // Bytes one block takes (keys and values of all layers).
  static int64_t block_bytes(const ModelConfig& config, int64_t block_size, KvCacheDtype dtype);

  KvCacheDtype dtype() const { return dtype_; }
  bool is_paged() const { return block_size_ > 0; }
  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return n_blocks_; }
  // Paged caches: the sequence's blocks (position p lives in blocks[p / block_size]) and how many
  // leading positions hold valid keys/values (resize() may only grow within the blocks).
  void assign(int32_t seq, const std::vector<int32_t>& blocks, int64_t length);

  int64_t n_layers() const { return n_layers_; }
  // The slot of model layer `layer` in this cache.
  int64_t slot(int64_t layer) const { return n_layers_ == 1 ? 0 : layer; }

  int64_t max_context() const { return max_context_; }
  int64_t kv_width() const { return kv_width_; }
  // Number of cached positions of a sequence (0 for an unknown one).
  int64_t length(int32_t seq) const;
  // Makes room for positions [0, new_length) and sets the sequence's length; positions past the
  // old length hold garbage until written. Throws if new_length exceeds max_context (or, paged,
  // the positions of the sequence's blocks).
  void resize(int32_t seq, int64_t new_length);
  void drop(int32_t seq);

  // kF32 caches.
  float* keys(int32_t seq, int64_t layer, int64_t position);
  float* values(int32_t seq, int64_t layer, int64_t position);
  // kFp8E4M3 caches.
  uint8_t* keys8(int32_t seq, int64_t layer, int64_t position);
  uint8_t* values8(int32_t seq, int64_t layer, int64_t position);

  // Paged caches: for each block of the sequence, the address of its first key / value row in
  // `layer` (rows of a block are kv_width apart); what the paged attention kernels read.
  void block_rows(int32_t seq, int64_t layer, std::vector<const float*>& k,
                  std::vector<const float*>& v);
  void block_rows8(int32_t seq, int64_t layer, std::vector<const uint8_t*>& k,
                   std::vector<const uint8_t*>& v);

 private:
  struct SequenceKv {
    int64_t length = 0;
    int64_t capacity = 0;
    std::vector<std::vector<float>> k;  // per layer: capacity x kv_width (kF32)
    std::vector<std::vector<float>> v;
    std::vector<std::vector<uint8_t>> k8;  // (kFp8E4M3)
    std::vector<std::vector<uint8_t>> v8;
    std::vector<int32_t> blocks;  // paged
  };
  SequenceKv& get(int32_t seq);
  // Paged: element offset of (layer slot, position) of a sequence in the pools.
  size_t paged_offset(const SequenceKv& s, int64_t layer, int64_t position) const;

  int64_t n_layers_;
  int64_t kv_width_;
  int64_t max_context_;
  KvCacheDtype dtype_;
  std::unordered_map<int32_t, SequenceKv> seqs_;
  // Paged layout: per layer slot, n_blocks x block_size x kv_width elements.
  int64_t block_size_ = 0;
  int64_t n_blocks_ = 0;
  std::unique_ptr<float[]> k_pool_, v_pool_;
  std::unique_ptr<uint8_t[]> k8_pool_, v8_pool_;
};

}  // namespace m2fp4
