// Random-weight MiniMax-M2 checkpoints in the Hugging Face layout, for tests, demos and
// benchmarks (`m2fp4 make-tiny`). Same tensor names, shapes and dtypes as the real release.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace m2fp4 {

enum class CheckpointDType { kBF16, kF32, kFp8 };

CheckpointDType parse_checkpoint_dtype(const std::string& name);  // bf16 | f32 | fp8

// The presets of the architecture spec scaled down: "tiny" (hidden 64, 2 layers), "bench"
// (hidden 1024, 8 layers, 64 experts top-8) and "wide" (the real widths: hidden 3072, 48/8 heads
// of 128, expert FFN 1536, vocab 200064; 4 layers, 32 experts top-8).
ModelConfig preset_config(const std::string& preset);

// Writes config.json and the weights (model.safetensors, or shards + index when the weights pass
// max_shard_bytes; 0 = one file). kFp8 stores attention and expert matrices as E4M3 with F32
// weight_scale_inv per 128x128 block (the official release's layout); the router gate and bias are
// always F32, as released. Weights are generated and written one tensor at a time.
void write_random_checkpoint(const std::string& dir, const ModelConfig& config, uint64_t seed,
                             CheckpointDType dtype, uint64_t max_shard_bytes);

}  // namespace m2fp4
