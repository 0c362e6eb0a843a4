// Hugging Face checkpoint folders: sharded writing, index, opening and its errors.
#include "io/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "base/error.h"
#include "io/io_test_util.h"

namespace m2fp4 {
namespace {

using test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

std::vector<std::byte> pattern_bytes(size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 29 + seed * 13 + 1) & 0xFF);
  return out;
}

// Five F32 tensors of 16, 32, 8, 40 and 12 bytes.
std::vector<TensorData> five_tensors() {
  std::vector<TensorData> out;
  const std::vector<std::pair<std::string, int64_t>> sizes = {
      {"model.a", 4}, {"model.b", 8}, {"model.c", 2}, {"model.d", 10}, {"model.e", 3}};
  unsigned seed = 0;
  for (const auto& [name, n] : sizes) {
    out.push_back(TensorData{TensorSpec{name, DType::kF32, {n}},
                             pattern_bytes(static_cast<size_t>(n) * 4, ++seed)});
  }
  return out;
}

std::vector<std::string> write_checkpoint(const std::string& dir,
                                          const std::vector<TensorData>& tensors,
                                          uint64_t max_shard_bytes) {
  std::vector<TensorSpec> specs;
  for (const TensorData& t : tensors) specs.push_back(t.spec);
  CheckpointWriter writer(dir, specs, max_shard_bytes);
  const std::vector<std::string> files = writer.shard_files();
  for (const TensorData& t : tensors) writer.write(t.spec.name, t.bytes);
  writer.finish();
  return files;
}

std::vector<std::string> folder_listing(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ShardedRoundTrip : public ::testing::TestWithParam<LoadMode> {};

TEST_P(ShardedRoundTrip, ShardsFollowDeclarationOrderAndTheLimit) {
  TempDir dir;
  const std::vector<TensorData> tensors = five_tensors();
  // Limit 48: {a 16 + b 32 = 48}, {c 8 + d 40 = 48}, {e 12}.
  const std::vector<std::string> files = write_checkpoint(dir.path(), tensors, 48);
  EXPECT_THAT(files,
              ElementsAre("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                          "model-00003-of-00003.safetensors"));
  EXPECT_THAT(folder_listing(dir.path()),
              ElementsAre("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                          "model-00003-of-00003.safetensors", "model.safetensors.index.json"));
  // Hugging Face's layout: json.dumps(index, indent=2, sort_keys=True) + "\n".
  EXPECT_EQ(test::read_all(dir.file("model.safetensors.index.json")),
            R"({
  "metadata": {
    "total_size": 108
  },
  "weight_map": {
    "model.a": "model-00001-of-00003.safetensors",
    "model.b": "model-00001-of-00003.safetensors",
    "model.c": "model-00002-of-00003.safetensors",
    "model.d": "model-00002-of-00003.safetensors",
    "model.e": "model-00003-of-00003.safetensors"
  }
}
)");
  // Each shard holds exactly its tensors and the default {"format": "pt"} metadata.
  const SafetensorsFile second = SafetensorsFile::open(dir.file(files[1]));
  ASSERT_EQ(second.tensors().size(), 2u);
  EXPECT_EQ(second.tensors()[0].name, "model.c");
  EXPECT_EQ(second.tensors()[1].name, "model.d");
  EXPECT_EQ(second.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));

  const Checkpoint ckpt = Checkpoint::open(dir.path(), GetParam());
  EXPECT_EQ(ckpt.dir(), dir.path());
  EXPECT_EQ(ckpt.shards().size(), 3u);
  EXPECT_FALSE(ckpt.has_config());
  EXPECT_THAT(ckpt.names(), ElementsAre("model.a", "model.b", "model.c", "model.d", "model.e"));
  EXPECT_EQ(ckpt.total_bytes(), 108u);
  for (const TensorData& t : tensors) {
    SCOPED_TRACE(t.spec.name);
    ASSERT_TRUE(ckpt.has(t.spec.name));
    const TensorView v = ckpt.tensor(t.spec.name);
    EXPECT_EQ(v.dtype(), DType::kF32);
    EXPECT_EQ(v.shape(), t.spec.shape);
    EXPECT_EQ(std::vector<std::byte>(v.data, v.data + v.nbytes()), t.bytes);
  }
  EXPECT_FALSE(ckpt.has("model.z"));
  EXPECT_THAT([&] { ckpt.tensor("model.z"); },
              ThrowsMessage<Error>(HasSubstr("missing tensor model.z in " + dir.path())));
}

TEST_P(ShardedRoundTrip, SingleFileWithoutLimit) {
  TempDir dir;
  const std::vector<TensorData> tensors = five_tensors();
  EXPECT_THAT(write_checkpoint(dir.path(), tensors, 0), ElementsAre("model.safetensors"));
  EXPECT_THAT(folder_listing(dir.path()), ElementsAre("model.safetensors"));
  const Checkpoint ckpt = Checkpoint::open(dir.path(), GetParam());
  EXPECT_EQ(ckpt.shards().size(), 1u);
  EXPECT_EQ(ckpt.names().size(), 5u);
  const TensorView d = ckpt.tensor("model.d");
  EXPECT_EQ(std::vector<std::byte>(d.data, d.data + d.nbytes()), tensors[3].bytes);
}

INSTANTIATE_TEST_SUITE_P(LoadModes, ShardedRoundTrip,
                         ::testing::Values(LoadMode::kRead, LoadMode::kMmap, LoadMode::kCopy),
                         [](const auto& info) {
                           return info.param == LoadMode::kRead   ? "Read"
                                  : info.param == LoadMode::kMmap ? "Mmap"
                                                                  : "Copy";
                         });

TEST(CheckpointWriter, EverythingFittingInOneShardGivesModelSafetensors) {
  TempDir dir;
  EXPECT_THAT(write_checkpoint(dir.path(), five_tensors(), 1000), ElementsAre("model.safetensors"));
  EXPECT_THAT(folder_listing(dir.path()), ElementsAre("model.safetensors"));
}

TEST(CheckpointWriter, OversizedTensorGetsAShardOfItsOwn) {
  TempDir dir;
  // Limit 20 with 16, 32, 8, 40, 12 bytes: {a}, {b}, {c}, {d}, {e} (c + d and d + e pass 20).
  const std::vector<std::string> files = write_checkpoint(dir.path(), five_tensors(), 20);
  ASSERT_EQ(files.size(), 5u);
  EXPECT_EQ(files[4], "model-00005-of-00005.safetensors");
  const Checkpoint ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt.shards().size(), 5u);
  EXPECT_EQ(ckpt.total_bytes(), 108u);
}

TEST(CheckpointWriter, NoTensorsGivesAnEmptyModelSafetensors) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), {}, 0);
  writer.finish();
  const Checkpoint ckpt = Checkpoint::open(dir.path());
  EXPECT_TRUE(ckpt.names().empty());
}

TEST(CheckpointWriter, CreatesTheFolder) {
  TempDir dir;
  const std::string out = dir.file("nested/out");
  write_checkpoint(out, five_tensors(), 0);
  EXPECT_TRUE(std::filesystem::exists(out + "/model.safetensors"));
}

TEST(CheckpointWriter, DestroyedBeforeFinishRemovesEveryFile) {
  TempDir dir;
  const std::vector<TensorData> tensors = five_tensors();
  {
    std::vector<TensorSpec> specs;
    for (const TensorData& t : tensors) specs.push_back(t.spec);
    CheckpointWriter writer(dir.path(), specs, 48);
    for (int i = 0; i < 3; ++i) writer.write(tensors[i].spec.name, tensors[i].bytes);
    // Shard 1 is complete, shard 2 half written, no index yet.
    EXPECT_TRUE(std::filesystem::exists(dir.file("model-00001-of-00003.safetensors")));
    EXPECT_FALSE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  }
  EXPECT_TRUE(folder_listing(dir.path()).empty());
}

TEST(CheckpointWriter, WriteErrorsAreReported) {
  TempDir dir;
  const std::vector<TensorData> tensors = five_tensors();
  std::vector<TensorSpec> specs;
  for (const TensorData& t : tensors) specs.push_back(t.spec);
  CheckpointWriter writer(dir.path(), specs, 48);
  EXPECT_THAT([&] { writer.write("model.b", tensors[1].bytes); },
              ThrowsMessage<Error>(HasSubstr("expected tensor 'model.a' next")));
  writer.write("model.a", tensors[0].bytes);
  EXPECT_THAT([&] { writer.finish(); },
              ThrowsMessage<Error>(HasSubstr("finish() before tensor 'model.b' was written")));
  for (size_t i = 1; i < tensors.size(); ++i) writer.write(tensors[i].spec.name, tensors[i].bytes);
  EXPECT_THAT([&] { writer.write("model.f", tensors[0].bytes); },
              ThrowsMessage<Error>(HasSubstr("every declared tensor was already written")));
  writer.finish();
}

TEST(CheckpointWriter, DuplicateDeclarationAcrossShardsIsRejected) {
  TempDir dir;
  EXPECT_THAT(
      [&] {
        CheckpointWriter w(dir.path(),
                           {TensorSpec{"x", DType::kF32, {4}}, TensorSpec{"y", DType::kF32, {4}},
                            TensorSpec{"x", DType::kF32, {4}}},
                           16);
      },
      ThrowsMessage<Error>(HasSubstr("tensor 'x' is declared twice")));
}

class CheckpointOpen : public ::testing::Test {
 protected:
  void SetUp() override { files_ = write_checkpoint(dir_.path(), five_tensors(), 48); }
  std::string index_path() const { return dir_.file("model.safetensors.index.json"); }

  TempDir dir_;
  std::vector<std::string> files_;
};

TEST_F(CheckpointOpen, ShardNamedInTheIndexIsMissing) {
  std::filesystem::remove(dir_.file(files_[1]));
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr("shard model-00002-of-00003.safetensors named in "
                                             "model.safetensors.index.json is missing")));
}

TEST_F(CheckpointOpen, IndexMapsATensorToAShardThatLacksIt) {
  nlohmann::json index = nlohmann::json::parse(test::read_all(index_path()));
  index["weight_map"]["model.ghost"] = files_[2];
  test::write_all(index_path(), index.dump(2));
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(
                  HasSubstr("tensor model.ghost is mapped to model-00003-of-00003.safetensors by "
                            "model.safetensors.index.json but that shard does not contain it")));
}

TEST_F(CheckpointOpen, IndexNotJson) {
  test::write_all(index_path(), "{\"weight_map\": ");
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr(index_path() + ": not valid JSON")));
}

TEST_F(CheckpointOpen, IndexWithoutWeightMap) {
  test::write_all(index_path(), R"({"metadata": {}})");
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr(index_path() + ": no weight_map")));
  test::write_all(index_path(), R"({"weight_map": {"model.a": 3}})");
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr("weight_map entry 'model.a' is not a file name")));
}

TEST_F(CheckpointOpen, IndexNamingAPathOutsideTheFolderIsRefused) {
  test::write_all(index_path(), R"({"weight_map": {"model.a": "../elsewhere.safetensors"}})");
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr("not a file name in the folder")));
}

TEST_F(CheckpointOpen, TensorsBeyondTheWeightMapAreStillReadable) {
  // An index that forgets model.d: it is still found in its shard, which model.c names. (A shard
  // the index never names is not opened: the index decides the files.)
  nlohmann::json index = nlohmann::json::parse(test::read_all(index_path()));
  index["weight_map"].erase("model.d");
  test::write_all(index_path(), index.dump());
  const Checkpoint ckpt = Checkpoint::open(dir_.path());
  EXPECT_TRUE(ckpt.has("model.d"));
  EXPECT_EQ(ckpt.names().size(), 5u);
}

TEST_F(CheckpointOpen, UnmappedTensorInTwoShardsIsAmbiguous) {
  // model.b (shard 1) is dropped from the index and a tensor of that name added to shard 2.
  nlohmann::json index = nlohmann::json::parse(test::read_all(index_path()));
  index["weight_map"].erase("model.b");
  test::write_all(index_path(), index.dump());
  const auto shard2 = five_tensors();
  write_safetensors(dir_.file(files_[1]), {shard2[2], shard2[3], shard2[1]});
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr(
                  "tensor model.b is in both model-00001-of-00003.safetensors and "
                  "model-00002-of-00003.safetensors and not in model.safetensors.index.json")));
}

TEST_F(CheckpointOpen, ConfigIsParsedAndBadConfigIsNamed) {
  test::write_all(dir_.file("config.json"), R"({"hidden_size": 64})");
  const Checkpoint ckpt = Checkpoint::open(dir_.path());
  ASSERT_TRUE(ckpt.has_config());
  EXPECT_EQ(ckpt.config().at("hidden_size").get<int>(), 64);

  test::write_all(dir_.file("config.json"), R"({"hidden_size": )");
  EXPECT_THAT([&] { Checkpoint::open(dir_.path()); },
              ThrowsMessage<Error>(HasSubstr(dir_.file("config.json") + ": not valid JSON")));
}

TEST(CheckpointOpenFolder, ConfigAbsentThrowsOnAccess) {
  TempDir dir;
  write_checkpoint(dir.path(), five_tensors(), 0);
  const Checkpoint ckpt = Checkpoint::open(dir.path());
  EXPECT_FALSE(ckpt.has_config());
  EXPECT_THAT([&] { ckpt.config(); },
              ThrowsMessage<Error>(HasSubstr(dir.path() + ": no config.json")));
}

TEST(CheckpointOpenFolder, LoneSafetensorsFileOfAnotherName) {
  TempDir dir;
  write_safetensors(dir.file("weights.safetensors"),
                    {TensorData{TensorSpec{"w", DType::kU8, {2}}, pattern_bytes(2, 1)}});
  const Checkpoint ckpt = Checkpoint::open(dir.path());
  EXPECT_THAT(ckpt.names(), ElementsAre("w"));
}

TEST(CheckpointOpenFolder, ModelSafetensorsWinsOverOtherFiles) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"),
                    {TensorData{TensorSpec{"main", DType::kU8, {2}}, pattern_bytes(2, 1)}});
  write_safetensors(dir.file("other.safetensors"),
                    {TensorData{TensorSpec{"other", DType::kU8, {2}}, pattern_bytes(2, 1)}});
  EXPECT_THAT(Checkpoint::open(dir.path()).names(), ElementsAre("main"));
}

TEST(CheckpointOpenFolder, NothingToOpen) {
  TempDir dir;
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(HasSubstr(dir.path() + ": no model.safetensors")));
  EXPECT_THAT([&] { Checkpoint::open(dir.file("absent")); },
              ThrowsMessage<Error>(HasSubstr(dir.file("absent") + ": not a directory")));
}

TEST(CheckpointOpenFolder, SeveralFilesWithoutIndex) {
  TempDir dir;
  for (const char* name : {"a.safetensors", "b.safetensors"}) {
    write_safetensors(dir.file(name),
                      {TensorData{TensorSpec{name, DType::kU8, {1}}, pattern_bytes(1, 1)}});
  }
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(
                  HasSubstr("several .safetensors files (a.safetensors, b.safetensors) but no "
                            "model.safetensors.index.json")));
}

TEST(CheckpointOpenFolder, LoneShardOfSeveralWithoutIndex) {
  TempDir dir;
  write_checkpoint(dir.path(), five_tensors(), 48);
  std::filesystem::remove(dir.file("model.safetensors.index.json"));
  std::filesystem::remove(dir.file("model-00002-of-00003.safetensors"));
  std::filesystem::remove(dir.file("model-00003-of-00003.safetensors"));
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(HasSubstr("only model-00001-of-00003.safetensors is present, "
                                             "one shard of 00003")));
}

TEST(CheckpointOpenFolder, BadShardErrorNamesTheShard) {
  TempDir dir;
  write_checkpoint(dir.path(), five_tensors(), 48);
  test::write_all(dir.file("model-00002-of-00003.safetensors"), "tiny");
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(HasSubstr("model-00002-of-00003.safetensors: not a "
                                             "safetensors file: 4 bytes")));
}

}  // namespace
}  // namespace m2fp4
