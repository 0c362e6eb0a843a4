// Interoperability with the reference implementation, the PyPI `safetensors` package (Rust core)
// and huggingface_hub's shard splitter, run through M2FP4_PYTHON: files Python writes read back
// here byte for byte (and rewrite to the identical file), and files written here load in Python.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"

namespace m2fp4 {
namespace {

using test::TempDir;

class PythonInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(M2FP4_PYTHON)) {
      GTEST_SKIP() << "M2FP4_PYTHON (" << M2FP4_PYTHON
                   << ") does not exist; run scripts/install-deps.sh --python";
    }
  }

  // Runs `script` with the given arguments; its last output line must be JSON.
  nlohmann::json run_python(const std::string& script, const std::string& args) {
    const std::string script_path = dir_.file("script.py");
    test::write_all(script_path, script);
    const test::CommandResult result = test::run_command(
        std::string("'") + M2FP4_PYTHON + "' '" + script_path + "' " + args, dir_);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    const size_t last_line = result.output.find_last_of('\n', result.output.size() - 2);
    const std::string json_text =
        last_line == std::string::npos ? result.output : result.output.substr(last_line + 1);
    try {
      return nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception&) {
      ADD_FAILURE() << "Python printed no JSON:\n" << result.output;
      return nlohmann::json::object();
    }
  }

  TempDir dir_;
};

std::string hex_of(const TensorView& v) {
  return test::to_hex(v.data, v.nbytes());
}

std::vector<int64_t> shape_of(const nlohmann::json& j) {
  return j.get<std::vector<int64_t>>();
}

// Python writes two files: numpy dtypes through safetensors.numpy.save_file, and BF16/FP8
// (no numpy dtype) as raw bytes through safetensors.serialize_file. It prints what its own
// reader (safetensors.deserialize) sees.
constexpr const char* kPythonWrites = R"PY(
import json, sys
import numpy as np
import safetensors
from safetensors.numpy import save_file

out = sys.argv[1]
f32 = (np.arange(6, dtype=np.float32) * 0.5 - 1.25).reshape(2, 3)
save_file({
    "f32": f32,
    "f16": np.arange(4, dtype=np.float16) * np.float16(0.25) - np.float16(0.5),
    "f64": np.array([[1.5, -2.25]], dtype=np.float64),
    "i8": np.array([-128, -1, 0, 127], dtype=np.int8),
    "u8": np.arange(5, dtype=np.uint8) * 50,
    "i32": np.array([-2**31, 7, 2**31 - 1], dtype=np.int32),
    "i64": np.array([-2**63, 42], dtype=np.int64).reshape(1, 2, 1),
    "scalar": np.array(3.0, dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
}, out + "/numpy.safetensors", metadata={"format": "np"})

bf16 = (f32.view(np.uint32) >> 16).astype(np.uint16)  # exact: the values are short dyadics
raw = {
    "bf16": ("bfloat16", [2, 3], bf16.tobytes()),
    "f8_e4m3": ("float8_e4m3fn", [2, 2], bytes([0x38, 0xB8, 0x7E, 0x01])),
    "f8_e8m0": ("float8_e8m0fnu", [3], bytes([127, 0, 254])),
}
buffers = {k: np.frombuffer(v[2], dtype=np.uint8).copy() for k, v in raw.items()}
specs = {k: safetensors.TensorSpec(dtype=v[0], shape=v[1], data_ptr=buffers[k].ctypes.data,
                                   data_len=buffers[k].nbytes) for k, v in raw.items()}
safetensors.serialize_file(specs, out + "/raw.safetensors", metadata={"format": "pt"})

seen = {}
for name in ("numpy", "raw"):
    with open(out + "/" + name + ".safetensors", "rb") as f:
        for key, t in safetensors.deserialize(f.read()):
            seen[name + "/" + key] = {"dtype": t["dtype"], "shape": list(t["shape"]),
                                      "hex": bytes(t["data"]).hex()}
print(json.dumps(seen))
)PY";

TEST_F(PythonInterop, FilesWrittenByPythonReadBackExactly) {
  const nlohmann::json seen = run_python(kPythonWrites, "'" + dir_.path() + "'");
  ASSERT_EQ(seen.size(), 12u) << seen.dump();

  for (const char* name : {"numpy", "raw"}) {
    for (const LoadMode mode : {LoadMode::kRead, LoadMode::kMmap}) {
      const SafetensorsFile file =
          SafetensorsFile::open(dir_.file(std::string(name) + ".safetensors"), mode);
      size_t count = 0;
      for (const auto& [key, t] : seen.items()) {
        if (!key.starts_with(std::string(name) + "/")) continue;
        ++count;
        SCOPED_TRACE(key);
        const TensorView v = file.tensor(key.substr(key.find('/') + 1));
        EXPECT_EQ(dtype_name(v.dtype()), t.at("dtype").get<std::string>());
        EXPECT_EQ(v.shape(), shape_of(t.at("shape")));
        EXPECT_EQ(hex_of(v), t.at("hex").get<std::string>());
      }
      EXPECT_EQ(file.tensors().size(), count);
    }
  }

  // Values decoded here agree with the numbers Python started from.
  const SafetensorsFile numpy_file = SafetensorsFile::open(dir_.file("numpy.safetensors"));
  EXPECT_EQ(numpy_file.metadata(), (std::map<std::string, std::string>{{"format", "np"}}));
  const TensorView f32 = numpy_file.tensor("f32");
  const SafetensorsFile raw_file = SafetensorsFile::open(dir_.file("raw.safetensors"));
  const TensorView bf16 = raw_file.tensor("bf16");
  ASSERT_EQ(f32.numel(), 6);
  for (int i = 0; i < 6; ++i) {
    float value = 0;
    std::memcpy(&value, f32.data + 4 * i, 4);
    EXPECT_EQ(value, i * 0.5f - 1.25f);
    uint16_t bits = 0;
    std::memcpy(&bits, bf16.data + 2 * i, 2);
    EXPECT_EQ(bits, std::bit_cast<uint32_t>(i * 0.5f - 1.25f) >> 16);
  }
  int64_t i64[2];
  std::memcpy(i64, numpy_file.tensor("i64").data, 16);
  EXPECT_EQ(i64[0], INT64_MIN);
  EXPECT_EQ(i64[1], 42);
  EXPECT_EQ(test::to_hex(raw_file.tensor("f8_e8m0").data, 3), "7f00fe");

  // Rewriting a Python file here, tensors in its file order with its (single-key) metadata,
  // reproduces it byte for byte: same header text, padding and data layout as the Rust writer.
  for (const char* name : {"numpy", "raw"}) {
    SCOPED_TRACE(name);
    const std::string original = dir_.file(std::string(name) + ".safetensors");
    const SafetensorsFile file = SafetensorsFile::open(original);
    std::vector<TensorData> tensors;
    for (const TensorInfo& info : file.tensors()) {
      const TensorView v = file.view(info);
      tensors.push_back(TensorData{TensorSpec{info.name, info.dtype, info.shape},
                                   std::vector<std::byte>(v.data, v.data + v.nbytes())});
    }
    const std::string copy = dir_.file(std::string(name) + "-copy.safetensors");
    write_safetensors(copy, tensors, file.metadata());
    EXPECT_EQ(test::read_all(copy), test::read_all(original));
  }
}

// Python loads a file written here with safe_open (numpy framework where numpy has the dtype)
// and deserialize (raw bytes, every dtype) and prints what it found.
constexpr const char* kPythonReads = R"PY(
import json, sys
import numpy as np
from safetensors import safe_open, deserialize

path = sys.argv[1]
found = {"tensors": {}}
with safe_open(path, framework="numpy") as f:
    found["metadata"] = f.metadata()
    keys = sorted(f.keys())
    with open(path, "rb") as raw:
        for key, t in deserialize(raw.read()):
            entry = {"dtype": t["dtype"], "shape": list(t["shape"]), "hex": bytes(t["data"]).hex()}
            if t["dtype"] in ("F32", "F16", "F64", "I8", "U8", "I32", "I64"):
                array = f.get_tensor(key)
                entry["numpy_hex"] = array.tobytes().hex()
                entry["numpy_shape"] = list(array.shape)
                entry["values"] = array.reshape(-1).tolist()
            found["tensors"][key] = entry
found["keys"] = keys
print(json.dumps(found))
)PY";

TEST_F(PythonInterop, FilesWrittenHereLoadInPython) {
  const std::vector<DType> dtypes = {DType::kF32,    DType::kF16, DType::kBF16, DType::kF8E4M3,
                                     DType::kF8E8M0, DType::kU8,  DType::kI8,   DType::kI32,
                                     DType::kI64,    DType::kF64};
  std::vector<TensorData> tensors;
  for (size_t k = 0; k < dtypes.size(); ++k) {
    const std::vector<int64_t> shape = {2, static_cast<int64_t>(k % 3) + 1};
    std::vector<std::byte> bytes(tensor_nbytes(dtypes[k], shape));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 7 + k * 31);
    tensors.push_back(
        TensorData{TensorSpec{"t." + std::string(dtype_name(dtypes[k])), dtypes[k], shape}, bytes});
  }
  // Known numbers for the numeric check (float32 and int64 through numpy).
  const std::vector<float> floats = {0.5f, -3.25f, 1e-8f, 65504.0f, -0.0f, 1.0f / 3.0f};
  std::vector<std::byte> float_bytes(24);
  std::memcpy(float_bytes.data(), floats.data(), 24);
  tensors.push_back(TensorData{TensorSpec{"floats", DType::kF32, {3, 2}}, float_bytes});
  const std::vector<int64_t> ints = {INT64_MIN, -1, INT64_MAX};
  std::vector<std::byte> int_bytes(24);
  std::memcpy(int_bytes.data(), ints.data(), 24);
  tensors.push_back(TensorData{TensorSpec{"ints", DType::kI64, {3}}, int_bytes});
  tensors.push_back(TensorData{TensorSpec{"scalar", DType::kF64, {}}, std::vector<std::byte>(8)});
  tensors.push_back(TensorData{TensorSpec{"empty", DType::kBF16, {4, 0}}, {}});

  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"producer", "m2fp4"}};
  const std::string path = dir_.file("cpp.safetensors");
  write_safetensors(path, tensors, metadata);

  const nlohmann::json found = run_python(kPythonReads, "'" + path + "'");
  EXPECT_EQ(found.at("metadata").get<decltype(metadata)>(), metadata);
  EXPECT_EQ(found.at("keys").size(), tensors.size());
  for (const TensorData& t : tensors) {
    SCOPED_TRACE(t.spec.name);
    ASSERT_TRUE(found.at("tensors").contains(t.spec.name));
    const nlohmann::json& entry = found.at("tensors").at(t.spec.name);
    EXPECT_EQ(entry.at("dtype").get<std::string>(), dtype_name(t.spec.dtype));
    EXPECT_EQ(shape_of(entry.at("shape")), t.spec.shape);
    EXPECT_EQ(entry.at("hex").get<std::string>(), test::to_hex(t.bytes.data(), t.bytes.size()));
    if (entry.contains("numpy_hex")) {
      EXPECT_EQ(entry.at("numpy_hex").get<std::string>(),
                test::to_hex(t.bytes.data(), t.bytes.size()));
      EXPECT_EQ(shape_of(entry.at("numpy_shape")), t.spec.shape);
    }
  }
  EXPECT_EQ(found["tensors"]["floats"]["values"].get<std::vector<float>>(), floats);
  EXPECT_EQ(found["tensors"]["ints"]["values"].get<std::vector<int64_t>>(), ints);
}

// huggingface_hub's splitter assigns the same tensors to shards of the same names; every
// weight_map entry loads from its shard with safe_open; the index text is what transformers
// writes (json.dumps(indent=2, sort_keys=True) + "\n") and total_size is the sum of the bytes.
constexpr const char* kPythonChecksShards = R"PY(
import json, os, sys
import numpy as np
from safetensors import safe_open
from huggingface_hub.serialization import split_state_dict_into_shards_factory

folder, max_shard = sys.argv[1], int(sys.argv[2])
declared = json.loads(sys.argv[3])  # [[name, numel], ...] of float32 tensors, declaration order
state = {name: np.zeros(n, dtype=np.float32) for name, n in declared}
split = split_state_dict_into_shards_factory(
    state, get_storage_size=lambda t: t.nbytes, filename_pattern="model{suffix}.safetensors",
    max_shard_size=max_shard)
with open(os.path.join(folder, "model.safetensors.index.json")) as f:
    text = f.read()
index = json.loads(text)
total = 0
hexes = {}
for name, shard in index["weight_map"].items():
    with safe_open(os.path.join(folder, shard), framework="numpy") as f:
        array = f.get_tensor(name)
        total += array.nbytes
        hexes[name] = array.tobytes().hex()
print(json.dumps({
    "hub_weight_map": split.tensor_to_filename,
    "hub_total_size": split.metadata["total_size"],
    "weight_map": index["weight_map"],
    "total_size": index["metadata"]["total_size"],
    "summed_size": total,
    "text_is_canonical": text == json.dumps(index, indent=2, sort_keys=True) + "\n",
    "hex": hexes,
}))
)PY";

TEST_F(PythonInterop, ShardedCheckpointMatchesHuggingFace) {
  const std::vector<std::pair<std::string, int64_t>> declared = {
      {"model.layers.0.w", 6}, {"model.embed", 5}, {"model.layers.1.w", 7},
      {"lm_head", 2},          {"model.norm", 9},  {"model.layers.2.w", 1}};
  const uint64_t max_shard = 40;
  std::vector<TensorSpec> specs;
  std::vector<std::vector<std::byte>> data;
  nlohmann::json declared_json = nlohmann::json::array();
  for (const auto& [name, n] : declared) {
    specs.push_back(TensorSpec{name, DType::kF32, {n}});
    std::vector<std::byte> bytes(static_cast<size_t>(n) * 4);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i + 3 * n);
    data.push_back(std::move(bytes));
    declared_json.push_back({name, n});
  }
  const std::string out = dir_.file("ckpt");
  {
    CheckpointWriter writer(out, specs, max_shard);
    for (size_t i = 0; i < specs.size(); ++i) writer.write(specs[i].name, data[i]);
    writer.finish();
  }
  const nlohmann::json found =
      run_python(kPythonChecksShards,
                 "'" + out + "' " + std::to_string(max_shard) + " '" + declared_json.dump() + "'");
  EXPECT_EQ(found.at("weight_map"), found.at("hub_weight_map"));
  EXPECT_EQ(found.at("total_size"), found.at("hub_total_size"));
  EXPECT_EQ(found.at("total_size"), found.at("summed_size"));
  EXPECT_TRUE(found.at("text_is_canonical").get<bool>());
  std::set<std::string> shard_names;
  for (const auto& [name, shard] : found.at("weight_map").items()) shard_names.insert(shard);
  EXPECT_EQ(shard_names.size(), 4u);  // 24 | 20 | 28 + 8 | 36 + 4 bytes under a 40-byte limit
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(found.at("hex").at(specs[i].name).get<std::string>(),
              test::to_hex(data[i].data(), data[i].size()))
        << specs[i].name;
  }
}

}  // namespace
}  // namespace m2fp4
