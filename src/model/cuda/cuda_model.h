// The MiniMax-M2 forward on one CUDA device: weights uploaded once in their stored formats,
// activations and the KV cache in device memory, every kernel on one stream, and the decode step
// (one token) captured once into a CUDA graph and replayed. Same contract as MiniMaxM2::forward
// for batches of one sequence. Plain C++ over kernels/cuda/cuda_kernels.h: it compiles without
// nvcc and then fails at construction with "built without CUDA".
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/minimax_m2.h"
#include "model/weights.h"

namespace m2fp4 {

struct CudaModelOptions {
  int64_t max_context = 4096;  // KV cache rows allocated up front (one sequence)
  KvCacheDtype kv_dtype = KvCacheDtype::kF32;
  bool use_graphs = true;  // capture the decode step into a CUDA graph
};

class CudaMiniMaxM2 {
 public:
  // Throws "built without CUDA" / "no CUDA device: ..." when there is no device, and a clear
  // error for options the GPU path does not implement (W4A4 emulation).
  CudaMiniMaxM2(const ModelConfig& config, const ModelWeights& weights, ModelOptions options,
                CudaModelOptions cuda_options);
  ~CudaMiniMaxM2();
  CudaMiniMaxM2(const CudaMiniMaxM2&) = delete;
  CudaMiniMaxM2& operator=(const CudaMiniMaxM2&) = delete;

  // Runs the batch (tokens of ONE sequence, consecutive positions starting at most at its cached
  // length; a batch of another sequence starting at position 0 replaces the cached one) and
  // writes the logits of the want_logits tokens, [n, vocab], as MiniMaxM2::forward.
  void forward(const Batch& batch, std::vector<float>& logits);

  int64_t length() const { return length_; }
  int64_t graph_captures() const;
  int64_t weight_bytes() const;

 private:
  struct State;
  void validate(const Batch& batch) const;
  void ensure_capacity(int64_t n_tokens, int64_t n_out);
  void enqueue_step(int64_t n_tokens, int64_t n_out);

  const ModelConfig& config_;
  ModelOptions options_;
  CudaModelOptions cuda_options_;
  int32_t seq_ = -1;
  int64_t length_ = 0;
  std::unique_ptr<State> s_;
};

}  // namespace m2fp4
