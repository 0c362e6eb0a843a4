// The engine parts of `m2fp4 quantize`: the export plan, the resumable shard writer (checked
// against CheckpointWriter's bytes), calibration data parsing and the work folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "engine/quantize_calibration.h"
#include "engine/quantize_output.h"
#include "engine/quantize_plan.h"
#include "engine/quantize_work.h"
#include "io/checkpoint.h"
#include "model/random_checkpoint.h"

namespace m2fp4 {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("m2fp4-qpipe-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::byte> bytes_for(const TensorSpec& spec, int salt) {
  std::vector<std::byte> b(tensor_nbytes(spec.dtype, spec.shape));
  for (size_t i = 0; i < b.size(); ++i) b[i] = std::byte((i * 7 + salt) & 0xFF);
  return b;
}

std::vector<TensorSpec> some_specs() {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 9; ++i) {
    specs.push_back({"t" + std::to_string(i), i % 2 ? DType::kU8 : DType::kF32, {10 + i, 16}});
  }
  return specs;
}

TEST(ShardedOutput, WritesWhatCheckpointWriterWrites) {
  TempDir a, b;
  const std::vector<TensorSpec> specs = some_specs();
  {
    CheckpointWriter w(a.str(), specs, 2000);
    for (size_t i = 0; i < specs.size(); ++i) w.write(specs[i].name, bytes_for(specs[i], int(i)));
    w.finish();
  }
  ShardedOutput out(b.str(), specs, 2000);
  ASSERT_GT(out.files().size(), 2u);
  for (size_t i = 0; i < specs.size(); ++i) out.write(specs[i].name, bytes_for(specs[i], int(i)));
  out.finish();
  for (const std::string& f : out.files()) EXPECT_EQ(slurp(b / f), slurp(a / f)) << f;
  EXPECT_EQ(slurp(b / "model.safetensors.index.json"), slurp(a / "model.safetensors.index.json"));
}

TEST(ShardedOutput, OneShardHasNoIndex) {
  TempDir a;
  const std::vector<TensorSpec> specs = some_specs();
  ShardedOutput out(a.str(), specs, 0);
  ASSERT_EQ(out.files(), std::vector<std::string>{"model.safetensors"});
  for (size_t i = 0; i < specs.size(); ++i) out.write(specs[i].name, bytes_for(specs[i], 3));
  out.finish();
  EXPECT_FALSE(file_exists(a / "model.safetensors.index.json"));
  EXPECT_TRUE(file_exists(a / "model.safetensors"));
}

TEST(ShardedOutput, ResumesAtTheFirstIncompleteShard) {
  TempDir a, ref;
  const std::vector<TensorSpec> specs = some_specs();
  size_t stop = 0;
  {
    ShardedOutput out(a.str(), specs, 2000);
    // Write until the middle of the third shard, then "die" (no finish, writer destroyed).
    for (size_t i = 0; i < specs.size(); ++i) {
      out.write(specs[i].name, bytes_for(specs[i], int(i)));
      if (file_exists(a / out.files()[1])) {
        stop = i + 1;
        break;
      }
    }
    ASSERT_GT(stop, 0u);
    out.write(specs[stop].name, bytes_for(specs[stop], int(stop)));  // part of shard 3
  }
  ShardedOutput resumed(a.str(), specs, 2000);
  EXPECT_EQ(resumed.shards_complete_at_open(), 2u);
  EXPECT_EQ(resumed.next_index(), stop);
  EXPECT_FALSE(resumed.wanted(specs[0].name));
  EXPECT_TRUE(resumed.wanted(specs[stop].name));
  // A producer may replay everything: finished tensors are skipped, the rest written in order.
  for (size_t i = 0; i < specs.size(); ++i) {
    resumed.write(specs[i].name, bytes_for(specs[i], int(i)));
  }
  resumed.finish();
  ShardedOutput fresh(ref.str(), specs, 2000);
  for (size_t i = 0; i < specs.size(); ++i) fresh.write(specs[i].name, bytes_for(specs[i], int(i)));
  fresh.finish();
  for (const std::string& f : fresh.files()) EXPECT_EQ(slurp(a / f), slurp(ref / f)) << f;
  EXPECT_THROW(fresh.write("nope", {}), Error);
}

TEST(ShardedOutput, OutOfOrderIsAnError) {
  TempDir a;
  const std::vector<TensorSpec> specs = some_specs();
  ShardedOutput out(a.str(), specs, 0);
  EXPECT_THROW(out.write(specs[2].name, bytes_for(specs[2], 0)), Error);
  EXPECT_THROW(out.finish(), Error);
}

TEST(CalibrationJsonl, ParsesTextAndMessagesAndNamesBadLines) {
  const auto r = parse_calibration_jsonl(
      "{\"text\": \"a\"}\n\n  \n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\r\n",
      "f.jsonl");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].line, 1);
  EXPECT_FALSE(r[0].is_messages);
  EXPECT_EQ(r[0].text, "a");
  EXPECT_EQ(r[1].line, 4);
  EXPECT_TRUE(r[1].is_messages);
  auto error_of = [](const std::string& text) {
    try {
      parse_calibration_jsonl(text, "f.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("{\"text\": \"a\"}\n{\"text\": oops}\n").rfind("f.jsonl:2: not valid JSON", 0),
            0u);
  EXPECT_EQ(error_of("[1, 2]\n").rfind("f.jsonl:1: expected a JSON object", 0), 0u);
  EXPECT_EQ(error_of("\n{\"text\": 5}\n").rfind("f.jsonl:2: \"text\" must be a string", 0), 0u);
  EXPECT_EQ(error_of("{\"messages\": []}\n").rfind("f.jsonl:1: \"messages\" must be", 0), 0u);
  EXPECT_EQ(error_of("{\"messages\": [{\"content\": \"x\"}]}").rfind("f.jsonl:1: every message", 0),
            0u);
  EXPECT_EQ(error_of("{\"prompt\": \"x\"}").rfind("f.jsonl:1: expected a \"messages\"", 0), 0u);
}

TEST(CalibrationSamples, SyntheticIdsAreDeterministicAndInRange) {
  const auto a = synthetic_calibration_tokens(3, 50, 97);
  EXPECT_EQ(a, synthetic_calibration_tokens(3, 50, 97));
  EXPECT_NE(a, synthetic_calibration_tokens(4, 50, 97));
  for (int32_t id : a) EXPECT_TRUE(id >= 0 && id < 97);
  // splitmix64 from state 0x6D326670342D6361 ^ 0: first output mod 1000003, worked by hand with
  // the published splitmix64 constants.
  uint64_t z = 0x6D326670342D6361ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  EXPECT_EQ(synthetic_calibration_tokens(0, 1, 1000003)[0], static_cast<int32_t>(z % 1000003));
  EXPECT_FALSE(builtin_calibration_texts().empty());
  for (const std::string& t : builtin_calibration_texts()) EXPECT_FALSE(t.empty());
}

TEST(CalibrationSamples, TruncatesAndNeedsATokenizerForFiles) {
  TempDir d;
  CalibrationOptions o;
  o.max_samples = 3;
  o.max_seq = 5;
  const CalibrationSet s = load_calibration(d.str(), 11, o);  // no tokenizer.json: synthetic
  ASSERT_EQ(s.samples.size(), 3u);
  for (const auto& ids : s.samples) EXPECT_EQ(ids.size(), 5u);
  EXPECT_NE(s.source.find("synthetic"), std::string::npos);
  o.calib_file = d / "c.jsonl";
  write_file_atomic(o.calib_file, "{\"text\": \"x\"}\n");
  EXPECT_THROW(load_calibration(d.str(), 11, o), Error);
}

TEST(QuantizeWork, NewRunResumeAndRefusals) {
  TempDir d;
  const std::string out = d / "out";
  const nlohmann::json fp = {{"recipe", "nvfp4"}, {"source", "/x"}};
  EXPECT_THROW(QuantizeWork::open(out, fp, true), Error);  // --resume without a run
  {
    QuantizeWork w = QuantizeWork::open(out, fp, false);
    EXPECT_FALSE(w.resumed());
    EXPECT_EQ(w.layers_done(), 0);
    w.save_tokens({{1, 2, 3}, {4}}, "built-in");
    LayerCalibration c(0, 2);
    c.k_amax = 0.3f;
    w.save_layer_stats(c);
    w.save_activations(1, {1.5f, -2.0f});
    w.save_partial(LayerCalibration(1, 2), 4);
    w.mark_layers_done(1);
  }
  EXPECT_THROW(QuantizeWork::open(out, fp, false), Error);  // unfinished run, no --resume
  nlohmann::json other = fp;
  other["recipe"] = "mxfp4";
  try {
    QuantizeWork::open(out, other, true);
    FAIL() << "accepted a different fingerprint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("recipe"), std::string::npos) << e.what();
  }
  QuantizeWork w = QuantizeWork::open(out, fp, true);
  EXPECT_TRUE(w.resumed());
  EXPECT_EQ(w.layers_done(), 1);
  std::string source;
  EXPECT_EQ(w.load_tokens(&source), (std::vector<std::vector<int32_t>>{{1, 2, 3}, {4}}));
  EXPECT_EQ(source, "built-in");
  EXPECT_EQ(w.load_layer_stats(0, 2).k_amax, 0.3f);
  EXPECT_EQ(w.load_activations(1, 2), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_THROW(w.load_activations(1, 3), Error);
  // Marking layers done drops any amax checkpoint saved before the mark.
  EXPECT_FALSE(w.load_partial(1, 2).has_value());
  w.save_partial(LayerCalibration(1, 2), 8);
  EXPECT_EQ(w.load_partial(1, 2)->samples_done, 8);
  EXPECT_FALSE(w.load_partial(2, 2).has_value());
  write_file_atomic(w.staging_dir() + "/config.json", "{}");
  write_file_atomic(w.staging_dir() + "/model.safetensors", "x");
  w.mark_complete();
  w.publish();
  EXPECT_TRUE(file_exists(out + "/config.json"));
  EXPECT_TRUE(file_exists(out + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/.m2fp4-work"));
  EXPECT_THROW(QuantizeWork::open(out, fp, false), Error);  // not empty now
}

TEST(ExportPlan, TinyModelItemsFusedGroupsAndIgnore) {
  TempDir d;
  const ModelConfig c = preset_config("tiny");
  write_random_checkpoint(d.str(), c, 5, CheckpointDType::kBF16, 0);
  const Checkpoint ckpt = Checkpoint::open(d.str(), LoadMode::kMmap);
  const ModelConfig config = ModelConfig::from_json(ckpt.config());
  const int64_t L = config.num_hidden_layers, E = config.num_local_experts;

  const ExportPlan p = plan_export(ckpt, config, QuantRecipe::kNvfp4ExpertsFp8Kv,
                                   ExportLayout::kModelopt, IgnorePatterns());
  EXPECT_EQ(p.modules.size(), static_cast<size_t>(L * (5 + 3 * E) + 1));
  EXPECT_EQ(p.quantized_count(), L * 3 * E);
  EXPECT_EQ(p.items.front().outputs[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(p.items.back().outputs[0].name, "lm_head.weight");
  EXPECT_EQ(p.items.back().outputs[0].dtype, DType::kBF16);
  int kv_items = 0;
  for (const ExportItem& item : p.items) kv_items += item.kind == ExportItemKind::kKvScales;
  EXPECT_EQ(kv_items, L);
  const std::vector<TensorSpec> specs = p.specs();
  auto has = [&](const std::string& name) {
    for (const TensorSpec& s : specs) {
      if (s.name == name) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("model.layers.1.block_sparse_moe.experts.3.w2.weight_scale_2"));
  EXPECT_TRUE(has("model.layers.1.block_sparse_moe.experts.3.w2.input_scale"));
  EXPECT_TRUE(has("model.layers.0.self_attn.k_proj.k_scale"));
  EXPECT_TRUE(has("model.layers.0.self_attn.q_proj.weight"));  // kept bf16
  EXPECT_FALSE(has("model.layers.0.self_attn.q_proj.weight_scale"));
  const QuantConfigInputs in = p.config_inputs();
  EXPECT_EQ(in.unquantized_modules.back(), "lm_head");
  EXPECT_EQ(in.unquantized_modules.front(), "model.layers.0.self_attn.q_proj");
  // w1 and w3 of an expert share a group key; w2 has none.
  for (const LinearModule& m : p.modules) {
    if (m.kind == LinearKind::kExpertW13) {
      EXPECT_FALSE(m.fused_group.empty());
    }
    if (m.kind == LinearKind::kExpertW2) {
      EXPECT_TRUE(m.fused_group.empty());
    }
  }

  const ExportPlan ig = plan_export(ckpt, config, QuantRecipe::kNvfp4, ExportLayout::kModelopt,
                                    IgnorePatterns({"re:model\\.layers\\.0\\.self_attn\\..*"}));
  EXPECT_EQ(ig.quantized_count(), L * (4 + 3 * E) - 4);
  EXPECT_THROW(plan_export(ckpt, config, QuantRecipe::kNvfp4, ExportLayout::kModelopt,
                           IgnorePatterns({"*.experts.0.w3"})),
               Error);  // w1/w3 split
  // mxfp4-16 has a modelopt layout too: every linear but lm_head and the routers, as in CT.
  const ExportPlan mx =
      plan_export(ckpt, config, QuantRecipe::kMxfp4x16, ExportLayout::kModelopt, IgnorePatterns());
  EXPECT_EQ(mx.quantized_count(), plan_export(ckpt, config, QuantRecipe::kMxfp4x16,
                                              ExportLayout::kCompressedTensors, IgnorePatterns())
                                      .quantized_count());
}

}  // namespace
}  // namespace m2fp4
