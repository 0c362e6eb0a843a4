// Typed weight tables of a MiniMax-M2 checkpoint. Matrices stay in their stored format (they
// point into the checkpoint's memory); small vectors (norms, routing bias, FP8 block scales) are
// decoded to f32 once at load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/cpu/weight_decode.h"
#include "kernels/weight.h"
#include "model/config.h"

namespace m2fp4 {

struct ExpertWeights {
  Weight w1;  // gate projection [intermediate, hidden], goes through SiLU
  Weight w3;  // up projection [intermediate, hidden]
  Weight w2;  // down projection [hidden, intermediate]
};

struct LayerWeights {
  std::vector<float> input_norm;           // [hidden]
  Weight q_proj, k_proj, v_proj, o_proj;   // [q_width, hidden] ... [hidden, q_width]
  std::vector<float> q_norm;               // [q_width]: one statistic over the whole projection
  std::vector<float> k_norm;               // [kv_width]
  std::vector<float> post_attention_norm;  // [hidden]
  Weight router_gate;                      // [n_experts, hidden], F32 or BF16, never quantized
  std::vector<float> router_bias;          // [n_experts] e_score_correction_bias (choice only)
  std::vector<ExpertWeights> experts;
  // FP8 KV-cache scales from the checkpoint (k = e4m3(k8) * k_scale); -1 where absent.
  float k_scale = -1.0f;
  float v_scale = -1.0f;

  // Decoded storage the weights above point into (FP8 block scales as f32, ...).
  std::vector<std::unique_ptr<std::vector<float>>> owned_f32;

  // One decoder layer's tables from a checkpoint (for flows that hold one layer at a time).
  static LayerWeights load(const Checkpoint& checkpoint, const ModelConfig& config, int64_t layer);
};

struct ModelWeights {
  Weight embed_tokens;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  Weight lm_head;                 // [vocab, hidden]

  // Owned decoded storage the tables above point into (FP8 scales as f32, ...).
  std::vector<std::unique_ptr<std::vector<float>>> owned_f32;

  // Builds the tables from a checkpoint, validating every tensor's presence, dtype and shape.
  // The checkpoint must outlive the returned weights.
  static ModelWeights load(const Checkpoint& checkpoint, const ModelConfig& config);

  // Bytes of weights one decode token reads: attention, router, top-k experts, lm_head.
  int64_t active_bytes_per_token(const ModelConfig& config) const;
  int64_t total_bytes() const;
};

}  // namespace m2fp4
