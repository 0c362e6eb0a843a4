// The MiniMax-M2 forward pass, batched: one call takes tokens of any number of sequences with
// their positions (prefill of many tokens and decode of one token per sequence are the same code).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/thread_pool.h"
#include "io/checkpoint.h"
#include "kernels/cpu/matmul.h"
#include "model/config.h"
#include "model/forward_profile.h"
#include "model/kv_cache.h"
#include "model/observer.h"
#include "model/weights.h"

namespace m2fp4 {

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<uint8_t> want_logits;  // 1: return this token's logits

  void add(int32_t token, int32_t position, int32_t seq_id, bool logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    want_logits.push_back(logits ? 1 : 0);
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  void clear() { *this = Batch{}; }
};

// A checkpoint opened and its weights tabled, ready to run.
struct LoadedModel {
  Checkpoint checkpoint;
  ModelConfig config;
  ModelWeights weights;

  static std::unique_ptr<LoadedModel> open(const std::string& dir, LoadMode mode = LoadMode::kRead);
};

// How the MoE block spreads a batch's routed experts over the pool's threads. Both give
// bit-identical results (every output row is computed by the same kernel either way).
enum class MoeSchedule : uint8_t {
  // Expert tasks while every expert has few tokens (decode steps), the row split otherwise.
  kAuto,
  // The w1/w3 of all routed experts in one parallel region with their rows split across the
  // threads, SiLU on the calling thread, then all w2 in a second region.
  kRowSplit,
  // One task per routed expert (gather its tokens, w1/w3, SiLU, w2 on one thread), costliest
  // first, claimed dynamically: one parallel region per layer, and a thread the host deschedules
  // holds up at most the expert it is on.
  kExpertTasks,
};

struct ModelOptions {
  // NVFP4 W4A4 emulation: the input of every NVFP4 linear with a calibrated input scale is
  // quantized to NVFP4 (per token and 16 channels) before the matmul, reproducing the numerics
  // the checkpoint was made for on FP4 tensor cores. Off: weight-only (W4A16, as Marlin).
  bool nvfp4_w4a4 = false;
  MoeSchedule moe_schedule = MoeSchedule::kAuto;
};

class MiniMaxM2 {
 public:
  MiniMaxM2(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool,
            ModelOptions options = {});
  ~MiniMaxM2();

  // Runs the batch through every layer, appending its keys/values to `cache`, and writes the
  // logits of the tokens with want_logits (in batch order) to `logits` as [n, vocab].
  // Each sequence's tokens must have consecutive positions starting at most at its cached length
  // (a lower start overwrites the tail: the cache is truncated there).
  void forward(const Batch& batch, KvCache& cache, std::vector<float>& logits,
               ForwardObserver* observer = nullptr);

  // The pieces of forward(), for flows that hold one layer at a time (quantization):
  // validate the batch and reserve its cache positions; embed; one decoder layer on the residual
  // stream x [n, hidden] with the given layer's weights (a single-layer KvCache serves any
  // layer); final norm + lm_head.
  void prepare(const Batch& batch, KvCache& cache) const;
  void embed(const Batch& batch, std::vector<float>& x) const;
  void decoder_layer(int64_t layer, const LayerWeights& weights, const Batch& batch, KvCache& cache,
                     std::vector<float>& x, ForwardObserver* observer);
  void final_logits(const Batch& batch, const std::vector<float>& x, std::vector<float>& logits);

  const ModelConfig& config() const { return config_; }
  // Accumulates phase times and weight bytes of every later forward into `profile` (nullptr:
  // off). The profile must outlive the forwards.
  void set_profile(ForwardProfile* profile) { profile_ = profile; }
  // The FP8 KV-cache scales used for a layer (quant-formats.md §4.3: the checkpoint's, 1.0 when
  // both are absent, the larger when one is).
  std::pair<float, float> kv_scales(const LayerWeights& layer) const;

 private:
  struct Scratch;
  // matmul_batch with W4A4 emulation applied to the jobs' inputs where it is enabled; `experts`
  // says which byte count of the profile the weights go to.
  void run_linear(std::vector<MatmulJob>& jobs, bool experts = false);
  // Points the inputs of the jobs that W4A4 emulation applies to at NVFP4-quantized copies kept
  // in `buffers` (cleared first; they must live until the matmuls end).
  void quantize_w4a4_inputs(std::vector<MatmulJob>& jobs,
                            std::deque<std::vector<float>>& buffers) const;
  void attention_block(int64_t layer, const LayerWeights& L, const Batch& batch, KvCache& cache,
                       ForwardObserver* observer);
  void moe_block(int64_t layer, const LayerWeights& L, ForwardObserver* observer);
  // The MoE's expert tasks (MoeSchedule::kExpertTasks): expert e's tokens are rows
  // offset[e]..offset[e+1] of the expert buffers, routed[e] their (token, weight) pairs.
  void run_expert_tasks(const LayerWeights& L, const std::vector<int64_t>& offset,
                        const std::vector<std::vector<std::pair<int32_t, float>>>& routed,
                        const std::vector<double>& cost);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  ThreadPool& pool_;
  ModelOptions options_;
  std::unique_ptr<Scratch> s_;
  ForwardProfile* profile_ = nullptr;
};

}  // namespace m2fp4
