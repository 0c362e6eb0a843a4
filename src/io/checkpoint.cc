#include "io/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/json_depth.h"

namespace m2fp4 {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

nlohmann::json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  check_json_depth(text, path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

// weight_map of model.safetensors.index.json, checked to be {name: plain file name}.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const nlohmann::json index = parse_json_file(index_path);
  M2_CHECK(index.is_object(), index_path, ": not a JSON object");
  const auto it = index.find("weight_map");
  M2_CHECK(it != index.end(), index_path, ": no weight_map");
  M2_CHECK(it->is_object(), index_path, ": weight_map is not a JSON object but ", it->type_name());
  M2_CHECK(!it->empty(), index_path, ": weight_map is empty");
  std::map<std::string, std::string> weight_map;
  for (auto entry = it->begin(); entry != it->end(); ++entry) {
    M2_CHECK(entry->is_string(), index_path, ": weight_map entry '", entry.key(),
             "' is not a file name string");
    const std::string file = entry->get<std::string>();
    // Shards live beside the index; a path would let an index read files elsewhere.
    M2_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..",
             index_path, ": weight_map entry '", entry.key(), "' names '", file,
             "', not a file name in the folder");
    weight_map[entry.key()] = file;
  }
  return weight_map;
}

// "00003" for "model-00001-of-00003.safetensors"; empty for names without that suffix.
std::string shard_count_of(const std::string& file) {
  constexpr std::string_view kSuffix = ".safetensors";
  const size_t of = file.rfind("-of-");
  if (of == std::string::npos || !file.ends_with(kSuffix)) return "";
  const std::string count = file.substr(of + 4, file.size() - kSuffix.size() - of - 4);
  const bool digits = !count.empty() && count.find_first_not_of("0123456789") == std::string::npos;
  return digits ? count : "";
}

// The lone *.safetensors of a folder without index or model.safetensors.
std::string find_single_file(const std::string& dir) {
  std::vector<std::string> found;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
      found.push_back(entry.path().filename().string());
    }
  }
  std::sort(found.begin(), found.end());
  M2_CHECK(!found.empty(), dir, ": no ", kSingleName, ", ", kIndexName,
           " or other .safetensors file");
  if (found.size() > 1) {
    std::string list;
    for (const std::string& name : found) list += (list.empty() ? "" : ", ") + name;
    fail(dir, ": several .safetensors files (", list, ") but no ", kIndexName,
         " to say which tensors are where");
  }
  const std::string total = shard_count_of(found[0]);
  uint64_t shard_count = 0;
  std::from_chars(total.data(), total.data() + total.size(), shard_count);
  if (shard_count > 1) {
    fail(dir, ": only ", found[0], " is present, one shard of ", total, ", and no ", kIndexName);
  }
  return found[0];
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir, LoadMode mode) {
  M2_CHECK(fs::is_directory(dir), dir, ": not a directory");
  Checkpoint ckpt;
  ckpt.dir_ = dir;

  const std::string config_path = join(dir, "config.json");
  if (file_exists(config_path)) {
    ckpt.config_ = parse_json_file(config_path);
    M2_CHECK(ckpt.config_.is_object(), config_path, ": not a JSON object");
  }

  const std::string index_path = join(dir, kIndexName);
  if (file_exists(index_path)) {
    const std::map<std::string, std::string> weight_map = read_weight_map(index_path);
    std::vector<std::string> shard_names;
    {
      std::set<std::string> distinct;
      for (const auto& [name, file] : weight_map) distinct.insert(file);
      shard_names.assign(distinct.begin(), distinct.end());
    }
    std::map<std::string, size_t> shard_index;
    for (const std::string& file : shard_names) {
      const std::string path = join(dir, file);
      M2_CHECK(file_exists(path), "shard ", file, " named in ", kIndexName, " is missing (", path,
               ")");
      shard_index[file] = ckpt.shards_.size();
      ckpt.shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(path, mode)));
    }
    for (const auto& [name, file] : weight_map) {
      const size_t s = shard_index.at(file);
      const TensorInfo* info = ckpt.shards_[s]->find(name);
      M2_CHECK(info != nullptr, "tensor ", name, " is mapped to ", file, " by ", kIndexName,
               " but that shard does not contain it (", dir, ")");
      ckpt.where_[name] = {s, info};
    }
    // Tensors a shard holds beyond the weight_map are readable too, unless two shards hold one.
    std::map<std::string, size_t> extra_owner;
    for (size_t s = 0; s < ckpt.shards_.size(); ++s) {
      for (const TensorInfo& info : ckpt.shards_[s]->tensors()) {
        if (weight_map.count(info.name) != 0) continue;
        const auto [it, inserted] = extra_owner.emplace(info.name, s);
        M2_CHECK(inserted, "tensor ", info.name, " is in both ", shard_names[it->second], " and ",
                 shard_names[s], " and not in ", kIndexName, " (", dir, ")");
        ckpt.where_[info.name] = {s, &info};
      }
    }
    return ckpt;
  }

  const std::string single =
      file_exists(join(dir, kSingleName)) ? std::string(kSingleName) : find_single_file(dir);
  ckpt.shards_.push_back(
      std::make_unique<SafetensorsFile>(SafetensorsFile::open(join(dir, single), mode)));
  for (const TensorInfo& info : ckpt.shards_[0]->tensors()) ckpt.where_[info.name] = {0, &info};
  return ckpt;
}

const nlohmann::json& Checkpoint::config() const {
  M2_CHECK(has_config(), dir_, ": no config.json");
  return config_;
}

bool Checkpoint::has(std::string_view name) const {
  return where_.find(std::string(name)) != where_.end();
}

TensorView Checkpoint::tensor(std::string_view name) const {
  const auto it = where_.find(std::string(name));
  if (it == where_.end()) fail("missing tensor ", name, " in ", dir_);
  return shards_[it->second.first]->view(*it->second.second);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, place] : where_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, place] : where_) total += place.second->nbytes();
  return total;
}

struct CheckpointWriter::Impl {
  std::string dir;
  std::map<std::string, std::string> metadata;
  std::vector<std::vector<TensorSpec>> shard_specs;
  std::vector<std::string> shard_files;
  uint64_t total_size = 0;
  size_t shard = 0;     // shard being written
  size_t in_shard = 0;  // tensors of it written so far
  std::unique_ptr<SafetensorsWriter> writer;
  std::vector<std::string> written;  // completed files, removed if finish() never comes
  bool finished = false;
};

CheckpointWriter::CheckpointWriter(const std::string& dir, std::vector<TensorSpec> specs,
                                   uint64_t max_shard_bytes,
                                   const std::map<std::string, std::string>& metadata)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.dir = dir;
  im.metadata = metadata;
  std::error_code ec;
  fs::create_directories(dir, ec);
  M2_CHECK(fs::is_directory(dir), dir, ": cannot create the folder: ", ec.message());

  std::set<std::string> declared;
  uint64_t shard_bytes = 0;
  for (TensorSpec& spec : specs) {
    M2_CHECK(declared.insert(spec.name).second, dir, ": tensor '", spec.name,
             "' is declared twice");
    uint64_t bytes = 0;
    try {
      bytes = tensor_nbytes(spec.dtype, spec.shape);
    } catch (const Error& e) {
      fail(dir, ": tensor '", spec.name, "': ", e.what());
    }
    const bool start_new =
        im.shard_specs.empty() || (max_shard_bytes > 0 && !im.shard_specs.back().empty() &&
                                   shard_bytes + bytes > max_shard_bytes);
    if (start_new) {
      im.shard_specs.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    im.total_size += bytes;
    im.shard_specs.back().push_back(std::move(spec));
  }
  if (im.shard_specs.empty()) im.shard_specs.emplace_back();  // a file with no tensors

  const size_t n = im.shard_specs.size();
  for (size_t i = 0; i < n; ++i) {
    if (n == 1) {
      im.shard_files.push_back(kSingleName);
    } else {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
      im.shard_files.push_back(name);
    }
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (impl_ == nullptr || impl_->finished) return;
  impl_->writer.reset();  // removes its partial file
  for (const std::string& path : impl_->written) std::remove(path.c_str());
}

const std::vector<std::string>& CheckpointWriter::shard_files() const {
  return impl_->shard_files;
}

void CheckpointWriter::write(std::string_view name, std::span<const std::byte> data) {
  Impl& im = *impl_;
  M2_CHECK(!im.finished, im.dir, ": write of '", name, "' after finish()");
  M2_CHECK(im.shard < im.shard_specs.size() && !im.shard_specs[im.shard].empty(), im.dir,
           ": write of '", name, "' but every declared tensor was already written");
  if (im.writer == nullptr) {
    im.writer = std::make_unique<SafetensorsWriter>(join(im.dir, im.shard_files[im.shard]),
                                                    im.shard_specs[im.shard], im.metadata);
  }
  im.writer->write(name, data);
  if (++im.in_shard == im.shard_specs[im.shard].size()) {
    im.writer->finish();
    im.written.push_back(join(im.dir, im.shard_files[im.shard]));
    im.writer.reset();
    ++im.shard;
    im.in_shard = 0;
  }
}

void CheckpointWriter::finish() {
  Impl& im = *impl_;
  M2_CHECK(!im.finished, im.dir, ": finish() called twice");
  if (im.shard_specs.size() == 1 && im.shard_specs[0].empty()) {
    SafetensorsWriter empty(join(im.dir, kSingleName), {}, im.metadata);
    empty.finish();
    im.written.push_back(join(im.dir, kSingleName));
    im.shard = 1;
  }
  M2_CHECK(im.shard == im.shard_specs.size(), im.dir, ": finish() before tensor '",
           im.shard < im.shard_specs.size() ? im.shard_specs[im.shard][im.in_shard].name : "",
           "' was written");
  if (im.shard_files.size() > 1) {
    // Hugging Face's layout: {"metadata": {"total_size": bytes}, "weight_map": {name: file}},
    // keys sorted, indent 2.
    nlohmann::json index;
    index["metadata"]["total_size"] = im.total_size;
    nlohmann::json& weight_map = index["weight_map"];
    weight_map = nlohmann::json::object();
    for (size_t s = 0; s < im.shard_specs.size(); ++s) {
      for (const TensorSpec& spec : im.shard_specs[s]) weight_map[spec.name] = im.shard_files[s];
    }
    write_file_atomic(join(im.dir, kIndexName), index.dump(2) + "\n");
  }
  im.finished = true;
}

}  // namespace m2fp4
