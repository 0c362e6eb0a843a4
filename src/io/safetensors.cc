#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_depth.h"

namespace m2fp4 {
namespace {

// The Rust reference refuses headers above 100 MB; a real 96k-tensor header is ~10 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

uint64_t load_u64_le(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<uint64_t>(p[i]);
  return value;
}

void store_u64_le(uint64_t value, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}

bool is_nonnegative_integer(const nlohmann::json& j) {
  return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0);
}

// SAX handler that records the keys of the top-level object and stops at the first repeat.
// (nlohmann's callback parser could do this during the main parse, but it rescans the parent
// object at every closing brace: quadratic in the tensor count.)
class DuplicateKeyFinder : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::string duplicate;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return ++depth_, true; }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return ++depth_, true; }
  bool end_array() override { return --depth_, true; }
  bool key(string_t& key) override {
    if (depth_ != 1 || keys_.insert(key).second) return true;
    duplicate = key;
    return false;  // stops the parse
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  int depth_ = 0;
  std::unordered_set<std::string> keys_;
};

std::string first_duplicate_key(const char* text, uint64_t size) {
  DuplicateKeyFinder finder;
  nlohmann::json::sax_parse(text, text + size, &finder);
  return finder.duplicate;
}

// One header entry ({dtype, shape, data_offsets}) checked field by field; `where` prefixes
// every message ("FILE: tensor 'NAME'").
TensorInfo parse_entry(const std::string& where, const std::string& name,
                       const nlohmann::json& entry, uint64_t data_bytes) {
  M2_CHECK(entry.is_object(), where, ": entry is not a JSON object but ", entry.type_name());
  TensorInfo info;
  info.name = name;

  const auto dtype_it = entry.find("dtype");
  M2_CHECK(dtype_it != entry.end(), where, ": missing dtype");
  M2_CHECK(dtype_it->is_string(), where, ": dtype is not a string but ", dtype_it->type_name());
  try {
    info.dtype = parse_dtype(dtype_it->get<std::string>());
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }

  const auto shape_it = entry.find("shape");
  M2_CHECK(shape_it != entry.end(), where, ": missing shape");
  M2_CHECK(shape_it->is_array(), where, ": shape is not an array but ", shape_it->type_name());
  for (const nlohmann::json& dim : *shape_it) {
    M2_CHECK(dim.is_number_integer(), where, ": shape ", shape_it->dump(),
             " holds a non-integer dimension");
    if (dim.is_number_unsigned()) {
      const uint64_t u = dim.get<uint64_t>();
      M2_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
               ": dimension ", u, " is too large");
      info.shape.push_back(static_cast<int64_t>(u));
    } else {
      info.shape.push_back(dim.get<int64_t>());
    }
  }

  const auto offsets_it = entry.find("data_offsets");
  M2_CHECK(offsets_it != entry.end(), where, ": missing data_offsets");
  M2_CHECK(offsets_it->is_array() && offsets_it->size() == 2 &&
               is_nonnegative_integer((*offsets_it)[0]) && is_nonnegative_integer((*offsets_it)[1]),
           where, ": data_offsets ", offsets_it->dump(),
           " is not an array of two non-negative integers");
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();

  uint64_t expected = 0;
  try {
    expected = tensor_nbytes(info.dtype, info.shape);
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  M2_CHECK(info.begin <= info.end, where, ": data_offsets [", info.begin, ", ", info.end,
           "] have begin > end");
  M2_CHECK(info.end - info.begin == expected, where, ": ", dtype_name(info.dtype), " ",
           shape_string(info.shape), " needs ", expected, " bytes but data_offsets [", info.begin,
           ", ", info.end, "] cover ", info.end - info.begin);
  M2_CHECK(info.end <= data_bytes, where, ": data_offsets [", info.begin, ", ", info.end,
           "] end past the data section (", data_bytes, " bytes)");
  return info;
}

}  // namespace

int64_t TensorInfo::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

uint64_t tensor_nbytes(DType dtype, const std::vector<int64_t>& shape) {
  // Zero dimensions are skipped in the overflow bound so numel() over any accepted shape
  // (whatever the order of its dimensions) cannot overflow either.
  constexpr auto kLimit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t bound = dtype_size(dtype);
  bool empty = false;
  for (const int64_t dim : shape) {
    M2_CHECK(dim >= 0, "negative dimension ", dim, " in shape ", shape_string(shape));
    if (dim == 0) {
      empty = true;
      continue;
    }
    const auto d = static_cast<uint64_t>(dim);
    M2_CHECK(bound <= kLimit / d, "shape ", shape_string(shape),
             " is too large (its byte count overflows)");
    bound *= d;
  }
  return empty ? 0 : bound;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file,
                                           const std::string& path) {
  const uint64_t size = file.size();
  M2_CHECK(size >= 8, path, ": not a safetensors file: ", size,
           " bytes, shorter than the 8-byte header length");
  const std::byte* base = file.data();
  const uint64_t header_bytes = load_u64_le(base);
  M2_CHECK(header_bytes <= size - 8, path, ": header length ", header_bytes,
           " runs past the end of the file (", size, " bytes)");
  M2_CHECK(header_bytes <= kMaxHeaderBytes, path, ": header length ", header_bytes,
           " is absurdly large (limit ", kMaxHeaderBytes, " bytes)");
  const auto* text = reinterpret_cast<const char*>(base + 8);
  const uint64_t data_bytes = size - 8 - header_bytes;

  // A real header nests three deep; a deep one would overflow the stack in dump() below.
  check_json_depth(std::string_view(text, header_bytes), str_cat(path, ": header"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": header is not valid JSON: ", e.what());
  }
  M2_CHECK(header.is_object(), path, ": header is not a JSON object but ", header.type_name());

  // The parser keeps one of two equal keys silently; a second, DOM-free pass names the duplicate.
  if (const std::string duplicate = first_duplicate_key(text, header_bytes); !duplicate.empty()) {
    fail(path, ": tensor '", duplicate, "' appears twice in the header");
  }

  SafetensorsHeader result;
  result.data_offset = 8 + header_bytes;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_null()) continue;
      M2_CHECK(it->is_object(), path, ": __metadata__ is not a JSON object but ", it->type_name());
      for (auto m = it->begin(); m != it->end(); ++m) {
        M2_CHECK(m->is_string(), path, ": __metadata__ value of '", m.key(),
                 "' is not a string but ", m->type_name());
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(
        parse_entry(str_cat(path, ": tensor '", it.key(), "'"), it.key(), *it, data_bytes));
  }

  // File order; then neighbours must not share bytes (empty tensors occupy none).
  std::stable_sort(result.tensors.begin(), result.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& info : result.tensors) {
    if (info.begin == info.end) continue;
    if (previous != nullptr) {
      M2_CHECK(info.begin >= previous->end, path, ": tensors '", previous->name, "' [",
               previous->begin, ", ", previous->end, ") and '", info.name, "' [", info.begin, ", ",
               info.end, ") overlap");
    }
    previous = &info;
  }
  return result;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, LoadMode mode) {
  SafetensorsFile file;
  file.bytes_ = FileBytes::open(path, mode);
  SafetensorsHeader header =
      parse_safetensors_header({file.bytes_.data(), file.bytes_.size()}, path);
  file.tensors_ = std::move(header.tensors);
  file.metadata_ = std::move(header.metadata);
  for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_[file.tensors_[i].name] = i;
  file.data_section_ = file.bytes_.data() + header.data_offset;
  return file;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::view(const TensorInfo& info) const {
  return TensorView{&info, data_section_ + info.begin};
}

TensorView SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) fail("missing tensor ", name, " in ", path());
  return view(*info);
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), partial_path_(path + ".partial"), specs_(std::move(specs)) {
  // Offsets are contiguous in declaration order, and the header lists tensors in that order.
  // The text is assembled by hand: nlohmann's ordered_json looks keys up linearly (quadratic for
  // the ~96k tensors of the real model) and the plain json would reorder the entry fields; this
  // spells entries as the Rust reference does ({"dtype","shape","data_offsets"}, no spaces).
  std::string text = "{";
  if (!metadata.empty()) {
    text += "\"__metadata__\":";
    text += nlohmann::json(metadata).dump();
  }
  uint64_t offset = 0;
  std::unordered_set<std::string_view> declared;
  for (const TensorSpec& spec : specs_) {
    M2_CHECK(spec.name != "__metadata__", path_, ": a tensor cannot be named __metadata__");
    M2_CHECK(declared.insert(spec.name).second, path_, ": tensor '", spec.name,
             "' is declared twice");
    uint64_t bytes = 0;
    try {
      bytes = tensor_nbytes(spec.dtype, spec.shape);
    } catch (const Error& e) {
      fail(path_, ": tensor '", spec.name, "': ", e.what());
    }
    M2_CHECK(bytes <= std::numeric_limits<uint64_t>::max() - offset, path_,
             ": total size overflows at tensor '", spec.name, "'");
    if (text.size() > 1) text += ',';
    text += nlohmann::json(spec.name).dump();
    text += str_cat(":{\"dtype\":\"", dtype_name(spec.dtype),
                    "\",\"shape\":", nlohmann::json(spec.shape).dump(), ",\"data_offsets\":[",
                    offset, ",", offset + bytes, "]}");
    offset += bytes;
  }
  text += '}';
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned, as the
  // Rust reference does.
  text.append((8 - text.size() % 8) % 8, ' ');
  char length[8];
  store_u64_le(text.size(), length);

  out_.open(partial_path_, std::ios::binary | std::ios::trunc);
  if (!out_) fail(path_, ": cannot create ", partial_path_, ": ", std::strerror(errno));
  out_.write(length, 8);
  out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!out_) fail(path_, ": writing the header failed");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (finished_) return;
  if (out_.is_open()) out_.close();
  std::remove(partial_path_.c_str());
}

void SafetensorsWriter::write(std::string_view name, std::span<const std::byte> data) {
  M2_CHECK(!finished_, path_, ": write of '", name, "' after finish()");
  M2_CHECK(next_ < specs_.size(), path_, ": write of '", name, "' but all ", specs_.size(),
           " declared tensors were already written");
  const TensorSpec& spec = specs_[next_];
  M2_CHECK(name == spec.name, path_, ": expected tensor '", spec.name,
           "' next (declaration order) but got '", name, "'");
  const uint64_t expected = tensor_nbytes(spec.dtype, spec.shape);
  M2_CHECK(data.size() == expected, path_, ": tensor '", spec.name, "' is declared as ",
           dtype_name(spec.dtype), " ", shape_string(spec.shape), " = ", expected,
           " bytes but got ", data.size(), " bytes");
  out_.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out_) fail(path_, ": writing tensor '", spec.name, "' failed: ", std::strerror(errno));
  ++next_;
}

void SafetensorsWriter::finish() {
  M2_CHECK(!finished_, path_, ": finish() called twice");
  M2_CHECK(next_ == specs_.size(), path_, ": finish() after ", next_, " of ", specs_.size(),
           " declared tensors; '", next_ < specs_.size() ? specs_[next_].name : "", "' is next");
  out_.flush();
  out_.close();
  if (!out_) fail(path_, ": flushing ", partial_path_, " failed");
  if (std::rename(partial_path_.c_str(), path_.c_str()) != 0) {
    fail(path_, ": cannot rename ", partial_path_, " into place: ", std::strerror(errno));
  }
  finished_ = true;
}

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const TensorData& t : tensors) specs.push_back(t.spec);
  SafetensorsWriter writer(path, std::move(specs), metadata);
  for (const TensorData& t : tensors) writer.write(t.spec.name, t.bytes);
  writer.finish();
}

}  // namespace m2fp4
