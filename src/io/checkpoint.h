// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json ("weight_map": tensor name -> shard file).
#pragma once

#include <memory>
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
  const nlohmann::json& config() const { return config_; }  // throws if absent

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
  // max_shard_bytes == 0: one model.safetensors.
  CheckpointWriter(const std::string& dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes);
  ~CheckpointWriter();
  void write(std::string_view name, std::span<const std::byte> data);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace m2fp4
