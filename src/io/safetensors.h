// safetensors files: validated reading (into memory or mapped) and streaming writing.
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
// [begin, end]}, "__metadata__": {str: str}}, then the data section; offsets are relative to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/file.h"
#include "io/dtype.h"

namespace m2fp4 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Bytes of a dtype x shape tensor; throws m2fp4::Error on a negative dimension or an overflow.
uint64_t tensor_nbytes(DType dtype, const std::vector<int64_t>& shape);
// "[2, 3]": shapes in messages.
std::string shape_string(const std::vector<int64_t>& shape);

// A view of one tensor's stored bytes; valid while the owning file/checkpoint lives.
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;

  DType dtype() const { return info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t numel() const { return info->numel(); }
  uint64_t nbytes() const { return info->nbytes(); }
  const std::string& name() const { return info->name; }
};

// What a safetensors header declares, checked against the file it came from.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order (by data offset)
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data section starts in the file
};

// Reads and validates the header of a whole file's bytes (length within the file, JSON nested at
// most kMaxJsonDepth deep, known dtypes, byte counts matching dtype x shape, offsets in range and
// not overlapping); throws m2fp4::Error naming `path` and the problem.
SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file,
                                           const std::string& path);

class SafetensorsFile {
 public:
  // Reads and validates the header (length within the file, JSON, known dtypes, byte counts
  // matching dtype x shape, offsets in range and not overlapping); throws m2fp4::Error naming
  // the file and the problem.
  static SafetensorsFile open(const std::string& path, LoadMode mode = LoadMode::kRead);

  const std::string& path() const { return bytes_.path(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(std::string_view name) const;
  TensorView view(const TensorInfo& info) const;
  // Throws "missing tensor NAME in FILE".
  TensorView tensor(std::string_view name) const;

 private:
  FileBytes bytes_;
  const std::byte* data_section_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};

// Streaming writer: all tensors are declared up front (the header comes first in the file),
// then their bytes are written one tensor at a time, in declaration order, so a layer can be
// produced, written and freed before the next. The file appears under its final name only
// when finish() succeeds; a writer destroyed before that removes its partial file.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends the next declared tensor; `name` and the byte count must match the declaration.
  void write(std::string_view name, std::span<const std::byte> data);
  // Checks every tensor was written, flushes and renames into place.
  void finish();

 private:
  std::string path_;
  std::string partial_path_;
  std::vector<TensorSpec> specs_;
  size_t next_ = 0;
  std::ofstream out_;
  bool finished_ = false;
};

// Convenience: writes a whole file from in-memory tensors (declaration order = given order).
struct TensorData {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace m2fp4
