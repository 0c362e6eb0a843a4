// The quantized checkpoint's safetensors shards, written in a resumable way: the shard plan (which
// tensor goes to which file) is fixed by the declared tensors and the shard size exactly as
// CheckpointWriter plans it (same file names, same index), each shard appears under its final
// name only once complete, and a new run over the same folder finds the complete shards and
// continues with the first tensor of the first missing one. A killed run therefore loses at most
// one shard, and the files written are byte-identical whichever run wrote them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/safetensors.h"

namespace m2fp4 {

class ShardedOutput {
 public:
  // Shards of at most max_shard_bytes (0: one file) in declaration order; one shard is written as
  // model.safetensors without an index, several as model-0000i-of-0000N.safetensors plus
  // model.safetensors.index.json. Partial files left by a killed run are removed.
  ShardedOutput(std::string dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes);
  ~ShardedOutput();
  ShardedOutput(const ShardedOutput&) = delete;
  ShardedOutput& operator=(const ShardedOutput&) = delete;

  // True unless the tensor is in a shard already complete on disk (so its producer can skip it).
  bool wanted(std::string_view name) const;
  // Index of the first tensor still to be written.
  size_t next_index() const { return next_; }
  size_t index_of(std::string_view name) const;

  // Writes the next tensor (declaration order). Tensors already on disk are accepted and
  // ignored, so a producer may also replay them.
  void write(std::string_view name, std::span<const std::byte> data);
  // Checks every tensor was written and writes the index (several shards).
  void finish();

  const std::vector<std::string>& files() const { return files_; }
  size_t shards_complete_at_open() const { return shards_at_open_; }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  std::string dir_;
  std::vector<TensorSpec> specs_;
  std::vector<size_t> shard_of_;     // per tensor
  std::vector<size_t> shard_first_;  // first tensor of each shard
  std::vector<std::string> files_;
  std::unordered_map<std::string, size_t> index_;
  std::unique_ptr<SafetensorsWriter> writer_;
  size_t next_ = 0;
  size_t shards_at_open_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace m2fp4
