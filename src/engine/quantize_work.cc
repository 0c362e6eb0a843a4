#include "engine/quantize_work.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "base/file.h"

namespace m2fp4 {
namespace fs = std::filesystem;

namespace {

constexpr const char* kWorkName = ".m2fp4-work";
constexpr int kStateVersion = 1;

nlohmann::json read_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), "); the work folder is damaged");
  }
}

void write_json(const std::string& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump() + "\n");
}

// The first key whose value differs between two fingerprints, for the error message.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  for (const auto& [key, value] : a.items()) {
    if (!b.contains(key) || b[key] != value) return key;
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) return key;
  }
  return "?";
}

std::string act_path(const std::string& dir, int64_t layer) {
  return dir + "/act-" + std::to_string(layer) + ".f32";
}

std::string stats_path(const std::string& dir, int64_t layer) {
  return dir + "/stats-" + std::to_string(layer) + ".json";
}

}  // namespace

QuantizeWork QuantizeWork::open(const std::string& out_dir, const nlohmann::json& fingerprint,
                                bool resume) {
  QuantizeWork w;
  w.out_dir_ = out_dir;
  w.dir_ = (fs::path(out_dir) / kWorkName).string();
  w.fingerprint_ = fingerprint;
  const std::string state_path = w.dir_ + "/state.json";
  const bool unfinished = file_exists(state_path);
  if (resume) {
    M2_CHECK(unfinished, "--resume: ", out_dir, " holds no unfinished quantize run (no ",
             state_path, ")");
    const nlohmann::json state = read_json(state_path);
    M2_CHECK(state.is_object() && state.value("version", 0) == kStateVersion, state_path,
             ": unknown state version; the work folder is from another m2fp4");
    const nlohmann::json& old = state["fingerprint"];
    if (old != fingerprint) {
      const std::string key = first_difference(old, fingerprint);
      fail("--resume: the unfinished run in ", out_dir, " used a different ", key, " (",
           old.contains(key) ? old[key].dump() : "none", " instead of ",
           fingerprint.contains(key) ? fingerprint[key].dump() : "none",
           "); rerun with the same options or remove ", out_dir);
    }
    M2_CHECK(state.contains("layers_done") && state["layers_done"].is_number_integer() &&
                 state["layers_done"].get<int64_t>() >= 0,
             state_path, ": bad layers_done");
    w.layers_done_ = state["layers_done"].get<int64_t>();
    w.complete_ = state.value("complete", false);
    w.resumed_ = true;
    return w;
  }
  M2_CHECK(!unfinished, out_dir,
           " holds an unfinished quantize run: continue it with --resume, or remove the folder");
  if (fs::exists(out_dir)) {
    M2_CHECK(fs::is_directory(out_dir), out_dir, " exists and is not a folder");
    // A leftover work folder without state (killed before its first state write) may go.
    for (const auto& entry : fs::directory_iterator(out_dir)) {
      M2_CHECK(entry.path().filename() == kWorkName, out_dir,
               " is not empty; quantize writes into a new or empty folder");
    }
    fs::remove_all(w.dir_);
  }
  std::error_code ec;
  fs::create_directories(w.staging_dir(), ec);
  M2_CHECK(fs::is_directory(w.staging_dir()), w.staging_dir(), ": cannot create: ", ec.message());
  w.save_state();
  return w;
}

void QuantizeWork::save_state() const {
  nlohmann::json state;
  state["version"] = kStateVersion;
  state["fingerprint"] = fingerprint_;
  state["layers_done"] = layers_done_;
  state["complete"] = complete_;
  write_json(dir_ + "/state.json", state);
}

bool QuantizeWork::has_tokens() const {
  return file_exists(dir_ + "/tokens.json");
}

void QuantizeWork::save_tokens(const std::vector<std::vector<int32_t>>& samples,
                               const std::string& source) {
  write_json(dir_ + "/tokens.json", nlohmann::json{{"source", source}, {"samples", samples}});
}

std::vector<std::vector<int32_t>> QuantizeWork::load_tokens(std::string* source) const {
  const std::string path = dir_ + "/tokens.json";
  const nlohmann::json j = read_json(path);
  try {
    if (source != nullptr) *source = j.at("source").get<std::string>();
    return j.at("samples").get<std::vector<std::vector<int32_t>>>();
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": bad calibration tokens (", e.what(), ")");
  }
}

void QuantizeWork::save_activations(int64_t layer, const std::vector<float>& x) {
  write_file_atomic(act_path(dir_, layer),
                    std::string_view(reinterpret_cast<const char*>(x.data()), x.size() * 4));
}

std::vector<float> QuantizeWork::load_activations(int64_t layer, size_t expected_floats) const {
  const std::string path = act_path(dir_, layer);
  M2_CHECK(file_exists(path), path, " is missing; the work folder is damaged");
  M2_CHECK(fs::file_size(path) == expected_floats * 4, path, " has ", fs::file_size(path),
           " bytes, expected ", expected_floats * 4, "; the work folder is damaged");
  std::vector<float> x(expected_floats);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  M2_CHECK(f != nullptr, path, ": cannot open: ", std::strerror(errno));
  const size_t got = std::fread(x.data(), 4, expected_floats, f);
  std::fclose(f);
  M2_CHECK(got == expected_floats, path, ": short read");
  return x;
}

void QuantizeWork::save_layer_stats(const LayerCalibration& stats) {
  write_json(stats_path(dir_, stats.layer), stats.to_json());
}

LayerCalibration QuantizeWork::load_layer_stats(int64_t layer, int64_t n_experts) const {
  const std::string path = stats_path(dir_, layer);
  M2_CHECK(file_exists(path), path, " is missing; the work folder is damaged");
  return LayerCalibration::from_json(read_json(path), layer, n_experts, path.c_str());
}

void QuantizeWork::save_partial(const LayerCalibration& stats, int64_t samples_done) {
  write_json(dir_ + "/partial.json",
             nlohmann::json{{"samples_done", samples_done}, {"stats", stats.to_json()}});
}

std::optional<QuantizeWork::Partial> QuantizeWork::load_partial(int64_t layer,
                                                                int64_t n_experts) const {
  const std::string path = dir_ + "/partial.json";
  if (!file_exists(path)) return std::nullopt;
  const nlohmann::json j = read_json(path);
  if (!j.contains("stats") || !j["stats"].is_object() || j["stats"].value("layer", -1) != layer) {
    return std::nullopt;  // a checkpoint of an earlier layer
  }
  M2_CHECK(j.contains("samples_done") && j["samples_done"].is_number_integer(), path,
           ": bad samples_done");
  Partial p;
  p.samples_done = j["samples_done"].get<int64_t>();
  p.stats = LayerCalibration::from_json(j["stats"], layer, n_experts, path.c_str());
  return p;
}

void QuantizeWork::mark_layers_done(int64_t n) {
  layers_done_ = n;
  save_state();
  // Older activations and the checkpoint inside the finished layer are no longer needed.
  std::remove((dir_ + "/partial.json").c_str());
  for (int64_t l = 0; l < n; ++l) std::remove(act_path(dir_, l).c_str());
}

void QuantizeWork::mark_complete() {
  complete_ = true;
  save_state();
}

void QuantizeWork::publish() {
  M2_CHECK(complete_, "publish() before the checkpoint is complete");
  const fs::path staging(staging_dir());
  std::vector<fs::path> files;
  if (fs::is_directory(staging)) {
    for (const auto& entry : fs::directory_iterator(staging)) files.push_back(entry.path());
  }
  // config.json last: until it is in place, OUT does not load as a model.
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    const bool ca = a.filename() == "config.json", cb = b.filename() == "config.json";
    return ca != cb ? cb : a.filename() < b.filename();
  });
  for (const fs::path& f : files) {
    std::error_code ec;
    fs::rename(f, fs::path(out_dir_) / f.filename(), ec);
    M2_CHECK(!ec, "cannot move ", f.string(), " into ", out_dir_, ": ", ec.message());
  }
  // The state goes first: a work folder without state.json is never taken for a run to resume.
  std::remove((dir_ + "/state.json").c_str());
  std::error_code ec;
  fs::remove_all(dir_, ec);
  M2_CHECK(!ec, "cannot remove the work folder ", dir_, ": ", ec.message());
}

}  // namespace m2fp4
