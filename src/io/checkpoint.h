// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json ("weight_map": tensor name -> shard file).
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "io/safetensors.h"

namespace m2fp4 {

class Checkpoint {
 public:
  // Opens every shard (a shard named in the index but absent is an error, as is a tensor the
  // index maps to a shard that lacks it). config.json is parsed if present.
  static Checkpoint open(const std::string& dir, LoadMode mode = LoadMode::kRead);

  const std::string& dir() const { return dir_; }
  bool has_config() const { return !config_.is_null(); }
  const nlohmann::json& config() const;  // throws if absent

  bool has(std::string_view name) const;
  TensorView tensor(std::string_view name) const;  // throws "missing tensor NAME"
  std::vector<std::string> names() const;          // sorted
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  uint64_t total_bytes() const;

 private:
  std::string dir_;
  nlohmann::json config_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, std::pair<size_t, const TensorInfo*>> where_;
};

// Writes tensors into one file or several shards plus model.safetensors.index.json, streaming:
// declare all tensors first (so headers and the index can be written), then write them in order.
class CheckpointWriter {
 public:
  // Tensors go to shards in declaration order; a new shard starts when the next tensor would take
  // the current one past max_shard_bytes (a tensor larger than that gets a shard of its own).
  // Shards are model-00001-of-0000N.safetensors plus model.safetensors.index.json, written by
  // finish(); max_shard_bytes == 0, or everything fitting in one shard, gives one
  // model.safetensors and no index (as Hugging Face does). Each shard carries `metadata`
  // (transformers refuses files whose metadata lacks "format"). The folder is created if needed.
  // A writer destroyed before finish() removes every file it wrote, so a failed export never
  // leaves a folder that loads as a smaller model.
  CheckpointWriter(const std::string& dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                   const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  // Shard file names in order, known from the declarations (before any write).
  const std::vector<std::string>& shard_files() const;
  void write(std::string_view name, std::span<const std::byte> data);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m2fp4
