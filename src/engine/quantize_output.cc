#include "engine/quantize_output.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"

namespace m2fp4 {
namespace fs = std::filesystem;

namespace {

const std::map<std::string, std::string> kShardMetadata = {{"format", "pt"}};

}  // namespace

ShardedOutput::ShardedOutput(std::string dir, std::vector<TensorSpec> specs,
                             uint64_t max_shard_bytes)
    : dir_(std::move(dir)), specs_(std::move(specs)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  M2_CHECK(fs::is_directory(dir_), dir_, ": cannot create the folder: ", ec.message());
  // The same plan as CheckpointWriter: a new shard when the next tensor would pass the limit.
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const uint64_t bytes = tensor_nbytes(specs_[i].dtype, specs_[i].shape);
    M2_CHECK(index_.emplace(specs_[i].name, i).second, "tensor '", specs_[i].name,
             "' is declared twice");
    const bool start_new =
        shard_first_.empty() || (max_shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes);
    if (start_new) {
      shard_first_.push_back(i);
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    total_bytes_ += bytes;
    shard_of_.push_back(shard_first_.size() - 1);
  }
  M2_CHECK(!shard_first_.empty(), dir_, ": no tensors to write");
  const size_t n = shard_first_.size();
  for (size_t s = 0; s < n; ++s) {
    if (n == 1) {
      files_.push_back("model.safetensors");
    } else {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, n);
      files_.push_back(name);
    }
  }
  // Complete shards (renamed into place by a finished SafetensorsWriter) form a prefix; the
  // first missing one is where writing resumes. Anything after it, and partial files, go.
  size_t s = 0;
  while (s < n && file_exists(dir_ + "/" + files_[s])) ++s;
  shards_at_open_ = s;
  next_ = s < n ? shard_first_[s] : specs_.size();
  for (size_t t = s; t < n; ++t) {
    std::remove((dir_ + "/" + files_[t]).c_str());
    std::remove((dir_ + "/" + files_[t] + ".partial").c_str());
  }
}

ShardedOutput::~ShardedOutput() = default;  // a SafetensorsWriter not finished removes its file

size_t ShardedOutput::index_of(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  M2_CHECK(it != index_.end(), "tensor '", name, "' is not part of the export plan");
  return it->second;
}

bool ShardedOutput::wanted(std::string_view name) const {
  return index_of(name) >= next_;
}

void ShardedOutput::write(std::string_view name, std::span<const std::byte> data) {
  const size_t i = index_of(name);
  if (i < next_) return;  // in a shard already complete
  M2_CHECK(i == next_, "tensor '", name, "' written out of order: '",
           next_ < specs_.size() ? specs_[next_].name : std::string("(none)"), "' is next");
  const size_t s = shard_of_[i];
  if (writer_ == nullptr) {
    const size_t end = s + 1 < shard_first_.size() ? shard_first_[s + 1] : specs_.size();
    std::vector<TensorSpec> shard_specs(specs_.begin() + static_cast<ptrdiff_t>(shard_first_[s]),
                                        specs_.begin() + static_cast<ptrdiff_t>(end));
    writer_ = std::make_unique<SafetensorsWriter>(dir_ + "/" + files_[s], std::move(shard_specs),
                                                  kShardMetadata);
  }
  writer_->write(name, data);
  ++next_;
  if (next_ == specs_.size() || shard_of_[next_] != s) {
    writer_->finish();
    writer_.reset();
  }
}

void ShardedOutput::finish() {
  M2_CHECK(next_ == specs_.size(), dir_, ": finish() before tensor '",
           next_ < specs_.size() ? specs_[next_].name : "", "' was written");
  if (files_.size() > 1) {
    // Hugging Face's index, as CheckpointWriter writes it.
    nlohmann::json index;
    index["metadata"]["total_size"] = total_bytes_;
    nlohmann::json& weight_map = index["weight_map"];
    weight_map = nlohmann::json::object();
    for (size_t i = 0; i < specs_.size(); ++i) weight_map[specs_[i].name] = files_[shard_of_[i]];
    write_file_atomic(dir_ + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
}

}  // namespace m2fp4
